"""Rollouts: N continuations from every prefix of a chain of thought, stored as JSONL.

For sentence ``i`` the engine samples N continuations from the prefix before it (prefix
``i``) and, for the last sentence, also from the whole chain (prefix ``n``), so that every
sentence has both "resampled" and "kept" rollouts. Optionally it also forces an answer right
after each prefix (forced-answer importance). The prefix is encoded once per batch: the
local backend runs it through the model a single time and expands its KV cache to the N
samples; the vLLM backend asks for ``n`` samples of one prompt (shared prefix, prefix cache).

Each rollout is one JSON line in ``DIR/rollouts.jsonl``::

    {"kind": "resample", "prefix": 3, "rollout": 0, "seed": ..., "resampled_sentence": "...",
     "continuation": "...", "answer": "42", "is_correct": true}

``DIR/run.json`` holds the prompt, the chain, its sentences, every prefix's context text
(full text of a rollout = ``contexts[prefix] + continuation``) and the settings. A run that
is interrupted resumes where it stopped: finished batches are skipped, and a batch cut
mid-write is generated again with the same seed.
"""

import hashlib
import time
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, Protocol, cast

import numpy as np
from jaxtyping import Int
from torch import Tensor

from interp.errors import InterpError
from interp.model import compat
from interp.model.internals import source_name
from interp.model.plain_view import PlainViewCache, accepts
from interp.provenance import library_versions, warn_if_other_versions
from interp.resampling.config import DEFAULT_SAMPLING, SamplingConfig
from interp.resampling.io import append_jsonl, check_rollout_records, read_jsonl, read_run_manifest
from interp.resampling.resilience_result import RESILIENCE_FORMAT, ResilienceResult  # noqa: F401
from interp.resampling.text import (
    ExtractorSpec,
    Sentence,
    extract_boxed,
    grade,
    make_extractor,
    sentence_spans,
    split_sentences,
)

FORMAT_VERSION = 1
KINDS = ("resample", "forced")


@dataclass(frozen=True)
class Chain:
    """A prompt and its base chain of thought, split into sentences.

    ``contexts[p]`` is the text a rollout from prefix ``p`` continues: the prompt plus the
    chain up to sentence ``p`` (trailing whitespace removed, as in the reference), for
    ``p = 0 .. n``; ``contexts[n]`` ends after the last sentence.

    >>> c = Chain.from_text("Q: 1+1? <think>\\n", "One plus one. That is 2.</think> \\\\boxed{2}")
    >>> c.sentences, c.contexts[1]
    (('One plus one.', 'That is 2.'), 'Q: 1+1? <think>\\nOne plus one.')
    """

    prompt: str
    solution: str
    sentences: tuple[str, ...]
    contexts: tuple[str, ...]

    def __post_init__(self):
        if len(self.contexts) != len(self.sentences) + 1:
            raise InterpError(
                f"a chain of {len(self.sentences)} sentences needs {len(self.sentences) + 1} "
                f"contexts, got {len(self.contexts)}"
            )

    @classmethod
    def from_text(cls, prompt: str, solution: str) -> "Chain":
        spans: list[Sentence] = sentence_spans(solution)
        if not spans:
            raise InterpError(
                "the chain of thought has no sentences (empty, whitespace, or nothing between "
                f"<think> and </think>: {solution[:80]!r}); pass the model's reasoning text as "
                "the solution, or omit it to let the model write one"
            )
        contexts = [prompt + solution[: spans[0].start]]
        contexts += [(prompt + solution[: s.start]).rstrip() for s in spans[1:]]
        contexts.append((prompt + solution[: spans[-1].end]).rstrip())
        return cls(prompt, solution, tuple(s.text for s in spans), tuple(contexts))

    @property
    def n_sentences(self) -> int:
        return len(self.sentences)


class Backend(Protocol):
    """What the engine needs from a generator: N sampled continuations of one context."""

    def generate(
        self, context: str, n: int, *, temperature: float, top_p: float, max_new_tokens: int, seed: int
    ) -> list[str]: ...

    def count_tokens(self, text: str) -> int: ...

    @property
    def max_context(self) -> int | None: ...

    def describe(self) -> dict: ...


def _derive_seed(seed: int, kind: str, prefix: int, batch: int) -> int:
    key = f"{seed}:{kind}:{prefix}:{batch}".encode()
    return int.from_bytes(hashlib.sha256(key).digest()[:4], "little") & 0x7FFFFFFF


class LocalBackend:
    """Generates with a loaded model on this machine, sharing the prefix computation.

    The context is run through the model once; its KV cache is repeated for the ``n``
    samples, and one batched ``generate`` call draws them all. A ``TransformerBridge`` generates
    through a plain Hugging Face model that shares its weight tensors (``interp.model.plain_view``), unless
    hooks are attached or the view is refused; then it goes through the bridge and warns once
    per reason. ``last_path`` says which ran: ``"plain-view"``, ``"bridge"`` or ``"hf"`` (a
    bare Hugging Face model). New keys and values are written in place into spare room of the
    cache (``resampling.kv_cache``), not concatenated each step.

    Args:
        model: a transformer_lens ``TransformerBridge`` (its ``original_model`` and
            ``tokenizer`` are used) or a Hugging Face causal LM.
        tokenizer: needed when ``model`` is a bare Hugging Face model.
        fast: generate a bridge's rollouts through the plain view (False: always through the bridge).
    """

    def __init__(self, model: Any, tokenizer: Any = None, fast: bool = True):
        compat.install()
        hf = getattr(model, "original_model", model)
        tok = tokenizer if tokenizer is not None else getattr(model, "tokenizer", None)
        if tok is None:
            raise InterpError(
                "LocalBackend needs a tokenizer: pass a TransformerBridge (it carries one) or "
                "LocalBackend(hf_model, tokenizer)"
            )
        if not hasattr(hf, "generate"):
            raise InterpError(
                f"{type(hf).__name__} cannot generate; pass a causal LM (TransformerBridge or "
                "a transformers *ForCausalLM model)"
            )
        self.model = hf
        self.tokenizer = tok
        self.model_id = source_name(hf)
        self.fast = fast
        self.last_path = ""
        self._views = PlainViewCache(hf, model)

    @property
    def max_context(self) -> int | None:
        n = getattr(self.model.config, "max_position_embeddings", None)
        if n:
            return int(n)
        m = getattr(self.tokenizer, "model_max_length", None)
        return int(m) if m and m < 10**9 else None

    def describe(self) -> dict:
        from interp.model.weights import weights_hash

        return {
            "backend": "local",
            "model": self.model_id,
            "weights_hash": weights_hash(self.model),
            "max_context": self.max_context,
        }

    def encode(self, text: str) -> list[int]:
        bos = getattr(self.tokenizer, "bos_token", None)
        add_special = not (bos and text.startswith(bos))
        return list(self.tokenizer(text, add_special_tokens=add_special)["input_ids"])

    def count_tokens(self, text: str) -> int:
        return len(self.encode(text))

    def generate(
        self, context: str, n: int, *, temperature: float, top_p: float, max_new_tokens: int, seed: int
    ) -> list[str]:
        """``n`` continuations of ``context`` (``temperature`` 0: greedy)."""
        ids = self.encode(context)
        new = self._generate_ids(ids, n, temperature=temperature, top_p=top_p, max_new_tokens=max_new_tokens, seed=seed)
        return self._decode_continuations(ids[-1], new)

    def generate_tokens(
        self, context: str, n: int, *, temperature: float, top_p: float, max_new_tokens: int, seed: int
    ) -> Int[Tensor, "batch pos"]:
        """The new token ids of ``n`` continuations of ``context``, padded after an end of sequence."""
        return self._generate_ids(
            self.encode(context), n, temperature=temperature, top_p=top_p, max_new_tokens=max_new_tokens, seed=seed
        )

    def _generate_ids(
        self, ids: list[int], n: int, *, temperature: float, top_p: float, max_new_tokens: int, seed: int
    ) -> Int[Tensor, "batch pos"]:
        """``generate_tokens`` on the context's token ids (encoded once by the caller)."""
        import torch

        from interp.resampling.kv_cache import roomy_cache

        if not ids:
            raise InterpError("cannot sample from an empty context; give a non-empty prompt")
        max_new = _clamp_new_tokens(len(ids), max_new_tokens, self.max_context)
        device = next(self.model.parameters()).device
        input_ids = torch.tensor([ids], device=device)
        model, self.last_path = self._views.generator(input_ids, self.fast, who="LocalBackend generates")
        pad = self.tokenizer.pad_token_id
        if pad is None:
            pad = self.tokenizer.eos_token_id
        sampling = (
            dict(do_sample=True, temperature=temperature, top_p=top_p) if temperature > 0 else dict(do_sample=False)
        )
        with torch.inference_mode(), torch.random.fork_rng(devices=[device] if device.type == "cuda" else []):
            torch.manual_seed(seed)
            kwargs = {}
            if input_ids.shape[1] > 1:  # encode the shared prefix once, then repeat its cache
                cache = roomy_cache(model.config, input_ids.shape[1], max_new)  # written in place, not concatenated
                keep = {"logits_to_keep": 1} if accepts(model, "logits_to_keep") else {}  # only the cache is needed
                model(input_ids[:, :-1], use_cache=True, **keep, **{compat.cache_kwarg(): cache})
                cache.batch_repeat_interleave(n)
                kwargs[compat.cache_kwarg()] = cache
            generate = cast(Callable[..., Tensor], model.generate)  # a causal LM's: token ids (no return_dict)
            out = generate(
                input_ids.expand(n, -1),
                attention_mask=torch.ones(n, input_ids.shape[1], dtype=torch.long, device=device),
                max_new_tokens=max_new,
                pad_token_id=pad,
                **sampling,
                **kwargs,
            )
        return out[:, input_ids.shape[1] :]

    def _decode_continuations(self, last_context_id: int, new) -> list[str]:
        """Decode new tokens as they continue the context, so the joining space is kept.

        Decoded alone, the first new token loses the space a word-level (or SentencePiece)
        tokenizer puts before it ("is" + "19" -> "is19"); decoded after the context's last token,
        and that token's text removed, it keeps it.
        """
        import torch

        anchor = self.tokenizer.decode([last_context_id], skip_special_tokens=True)
        anchored = torch.cat([new.new_full((new.shape[0], 1), last_context_id), new], dim=1)
        texts = []
        for plain, joined in zip(
            self.tokenizer.batch_decode(new, skip_special_tokens=True),
            self.tokenizer.batch_decode(anchored, skip_special_tokens=True),
        ):
            texts.append(joined[len(anchor) :] if anchor and joined.startswith(anchor) else plain)
        return texts


def _clamp_new_tokens(n_prompt: int, max_new_tokens: int, max_context: int | None) -> int:
    if max_context is None:
        return max_new_tokens
    if n_prompt >= max_context:
        raise InterpError(
            f"the context is {n_prompt} tokens, the model's context window is {max_context}: "
            "no room to generate; shorten the prompt or the chain (drop late sentences), or use "
            "a model with a longer context"
        )
    return min(max_new_tokens, max_context - n_prompt)


@dataclass(frozen=True)
class RolloutRun:
    """A run directory: its manifest (``run.json``) and its rollout records."""

    directory: Path
    manifest: dict
    records: tuple[dict, ...] = field(repr=False)

    @classmethod
    def load(cls, directory) -> "RolloutRun":
        directory = Path(directory)
        manifest_path = directory / "run.json"
        if not manifest_path.exists():
            raise InterpError(
                f"{directory} holds no rollout run (no run.json); run `interp resample --model M "
                f"--problem FILE --out {directory}` first"
            )
        manifest = read_run_manifest(manifest_path)
        log = directory / "rollouts.jsonl"
        return cls(
            directory, manifest, tuple(_dedupe(check_rollout_records(read_jsonl(log), log, len(manifest["sentences"]))))
        )

    @property
    def chain(self) -> Chain:
        m = self.manifest
        return Chain(m["prompt"], m["solution"], tuple(m["sentences"]), tuple(m["contexts"]))

    @property
    def config(self) -> SamplingConfig:
        return SamplingConfig(**self.manifest["config"])

    def by_prefix(self, kind: str = "resample") -> list[list[dict]]:
        """Records of ``kind`` grouped by prefix ``0 .. n``, each sorted by rollout index."""
        groups: list[list[dict]] = [[] for _ in range(len(self.manifest["sentences"]) + 1)]
        for r in self.records:
            if r["kind"] == kind and 0 <= r["prefix"] < len(groups):
                groups[r["prefix"]].append(r)
        return [sorted(g, key=lambda r: r["rollout"]) for g in groups]

    def full_text(self, record: dict) -> str:
        """The whole text of a rollout: its prefix's context plus its continuation."""
        ctx = self.manifest["contexts"][record["prefix"]]
        if record["kind"] == "forced":
            ctx += self.manifest["config"]["forced_suffix"]
        return ctx + record["continuation"]

    def is_complete(self) -> bool:
        cfg = self.config
        kinds = KINDS if cfg.forced else KINDS[:1]
        return all(len(g) >= cfg.count(k) for k in kinds for g in self.by_prefix(k))


def _dedupe(records: list[dict]) -> list[dict]:
    seen, out = set(), []
    for r in records:
        key = (r.get("kind"), r.get("prefix"), r.get("rollout"))
        if key not in seen:
            seen.add(key)
            out.append(r)
    return out


_COMPARED = ("prompt", "solution", "sentences", "gt_answer", "answer_spec", "config")


def run_rollouts(
    backend: Backend,
    chain: Chain,
    out_dir,
    *,
    config: SamplingConfig = DEFAULT_SAMPLING,
    gt_answer: str | None = None,
    answer: ExtractorSpec = None,
    progress: bool = True,
    extra_provenance: dict | None = None,
) -> RolloutRun:
    """Sample rollouts from every prefix of ``chain`` into ``out_dir``; resumes a partial run.

    Args:
        backend: a :class:`LocalBackend`, :class:`VLLMBackend` or anything with ``generate``.
        chain: the prompt and base chain (:meth:`Chain.from_text`).
        out_dir: run directory (``run.json`` + ``rollouts.jsonl``).
        config: sampling settings.
        gt_answer: the correct answer (None: accuracy metrics are 0, KL metrics still work).
        answer: answer extractor: None / "boxed", a regex, or a callable ``text -> str|None``.

    Returns:
        The run, with every record on disk.
    """
    from interp.io import atomic_write_json
    from interp.progress import tqdm

    out_dir = Path(out_dir)
    extractor = make_extractor(answer)
    forced_extractor = _forced_extractor(extractor, config.forced_suffix)
    answer_spec = (
        answer
        if isinstance(answer, str) or answer is None
        else f"callable:{getattr(answer, '__name__', type(answer).__name__)}"
    )
    manifest = {
        "format_version": FORMAT_VERSION,
        "prompt": chain.prompt,
        "solution": chain.solution,
        "sentences": list(chain.sentences),
        "contexts": list(chain.contexts),
        "gt_answer": gt_answer,
        "answer_spec": answer_spec,
        "config": asdict(config),
        "backend": backend.describe(),
        "versions": library_versions(),
        "workarounds": compat.active_workarounds(),
        "created": time.strftime("%Y-%m-%dT%H:%M:%S"),
        **(extra_provenance or {}),
    }
    _check_contexts_fit(backend, chain, config)
    out_dir.mkdir(parents=True, exist_ok=True)
    manifest_path = out_dir / "run.json"
    if manifest_path.exists():
        old = read_run_manifest(manifest_path)
        diff = [k for k in _COMPARED if old.get(k) != manifest.get(k)]
        if diff:
            raise InterpError(
                f"{out_dir} already holds a run with different {', '.join(diff)}; resume it with "
                "the same problem and settings, or choose a new --out directory"
            )
        warn_if_other_versions(old.get("versions", {}), what=f"rollout run in {out_dir}")
        manifest = old
    else:
        atomic_write_json(manifest_path, manifest)

    log = out_dir / "rollouts.jsonl"
    done = {(r["kind"], r["prefix"], r["rollout"]) for r in read_jsonl(log)}
    kinds = KINDS if config.forced else KINDS[:1]
    jobs = []
    for kind in kinds:
        total = config.count(kind)
        for p in range(chain.n_sentences + 1):
            for b, lo in enumerate(range(0, total, config.batch_size)):
                idx = range(lo, min(lo + config.batch_size, total))
                if not all((kind, p, r) in done for r in idx):
                    jobs.append((kind, p, b, idx))
    n_todo = sum(len(j[3]) for j in jobs)
    bar = tqdm(total=n_todo, desc="rollouts", unit="rollout", disable=not progress or not jobs)
    for kind, p, b, idx in jobs:
        seed = _derive_seed(config.seed, kind, p, b)
        context = chain.contexts[p]
        if kind == "forced":
            context = context + config.forced_suffix
        texts = backend.generate(
            context,
            len(idx),
            temperature=config.temperature,
            top_p=config.top_p,
            max_new_tokens=config.max_new_tokens if kind == "resample" else config.forced_max_new_tokens,
            seed=seed,
        )
        records = []
        for r, text in zip(idx, texts):
            if (kind, p, r) in done:
                continue
            if kind == "forced":
                graded = grade(config.forced_suffix + text, forced_extractor, gt_answer)
            else:
                graded = grade(text, extractor, gt_answer)
            first = split_sentences(text)
            records.append(
                {
                    "kind": kind,
                    "prefix": p,
                    "rollout": r,
                    "seed": seed,
                    "resampled_sentence": first[0] if first else "",
                    "continuation": text,
                    "answer": graded.answer,
                    "is_correct": graded.is_correct,
                }
            )
        append_jsonl(log, records)
        bar.update(len(idx))
    bar.close()
    return RolloutRun.load(out_dir)


def _forced_extractor(extractor, suffix: str):
    """A forced answer sits in the box the suffix opens; fall back to the user's extractor."""
    if "\\boxed{" not in suffix or extractor is extract_boxed:
        return extractor

    def boxed_then_user(text: str):
        return extract_boxed(text) or extractor(text)

    return boxed_then_user


def _check_contexts_fit(backend: Backend, chain: Chain, config: SamplingConfig) -> None:
    """Fail before sampling anything if some prefix does not fit the model's context."""
    limit = backend.max_context
    if limit is None:
        return
    longest = chain.contexts[-1] + (config.forced_suffix if config.forced else "")
    if backend.count_tokens(longest) < limit:
        return
    for p, ctx in enumerate(chain.contexts):
        if backend.count_tokens(ctx + (config.forced_suffix if config.forced else "")) >= limit:
            where = f"sentence {p}" if p < chain.n_sentences else "the end of the chain"
            raise InterpError(
                f"the prefix before {where} is {backend.count_tokens(ctx)} tokens, at or over the "
                f"model's context window of {limit}: no room to generate. Shorten the chain to its "
                f"first {max(p - 1, 0)} sentences or the prompt, or use a longer-context model"
            )


# --------------------------------------------------------------------------- resilience


def resilience(
    backend: Backend,
    context: str,
    target: str,
    embed,
    *,
    threshold: float = 0.6,
    max_iterations: int = 20,
    n_candidates: int = 8,
    temperature: float = 0.6,
    top_p: float = 0.95,
    max_new_tokens: int = 512,
    seed: int = 0,
) -> ResilienceResult:
    """Resample ``target`` away repeatedly until its idea stops reappearing downstream.

    Each iteration samples ``n_candidates`` continuations of ``context``, keeps the first one
    whose first sentence differs in meaning from ``target`` (cosine ``< threshold``), and
    looks for a later sentence similar to ``target`` (cosine ``>= threshold``). If there is
    one, the idea came back: the count goes up and that reappearance is resampled next
    (``context`` grows to just before it). If no candidate avoids the idea at all, that also
    counts as a reappearance.

    Args:
        context: the text before the target sentence.
        target: the sentence whose idea is tracked.
        embed: ``list[str] -> array [n, dim]`` (e.g. :func:`load_embedder`).
    """
    from interp.resampling.metrics import cosine_similarity

    target_emb = np.asarray(embed([target]))
    count = 0
    steps: list[dict[str, Any]] = []
    for it in range(max_iterations):
        conts = backend.generate(
            context,
            n_candidates,
            temperature=temperature,
            top_p=top_p,
            max_new_tokens=max_new_tokens,
            seed=_derive_seed(seed, "resilience", it, 0),
        )
        chosen = None
        for text in conts:
            spans = sentence_spans(text)
            if not spans:
                continue
            if cosine_similarity(np.asarray(embed([spans[0].text])), target_emb)[0, 0] < threshold:
                chosen = (text, spans)
                break
        if chosen is None:
            count += 1
            steps.append({"iteration": it, "replacement": None, "reappeared": True, "sentence": None})
            continue
        text, spans = chosen
        later = spans[1:]
        hit = None
        if later:
            sims = cosine_similarity(np.asarray(embed([s.text for s in later])), target_emb)[:, 0]
            above = np.nonzero(sims >= threshold)[0]
            hit = later[int(above[0])] if above.size else None
        steps.append(
            {
                "iteration": it,
                "replacement": spans[0].text,
                "reappeared": hit is not None,
                "sentence": hit.text if hit else None,
            }
        )
        if hit is None:
            return ResilienceResult(target, count, True, tuple(steps))
        count += 1
        context = (context + text[: hit.start]).rstrip()
    return ResilienceResult(target, count, False, tuple(steps))


def sentence_contexts(chain: Chain) -> Sequence[str]:
    """The context before each sentence (what :func:`resilience` takes for sentence ``i``)."""
    return chain.contexts[:-1]
