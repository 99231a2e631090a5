"""The model's own completions of a set of requests: generated once, saved with provenance, resumable.

Harm pruning on a real chat model scores the weights on what *that model* writes: its greedy
answers to harmful requests (the behaviour to remove) and to benign ones (the behaviour to keep).
``generate_completions`` writes them as JSONL, one record per request (the request's own fields,
``text`` = the formatted prompt, ``instruction`` = the request, ``response`` = the answer), next to
``provenance.json`` (model, weights hash, generation settings, library versions, completions per
second). Batches are appended as they finish; a rerun with the same settings continues after the
last finished batch, a rerun with other settings is refused.

>>> completions = generate_completions(model, advbench, "runs/completions/harmful")   # doctest: +SKIP
>>> completions.records[0]["response"][:40], completions.completions_per_second          # doctest: +SKIP
"""

import json
import os
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from interp import defaults
from interp.data import PromptSet
from interp.directories import exclusive_lock
from interp.errors import InterpError
from interp.io import atomic_write_json, read_jsonl
from interp.model import model_id
from interp.model.weights import weights_hash
from interp.progress import tqdm
from interp.provenance import Provenance, hash_json

RECORDS = "completions.jsonl"
PROVENANCE = "provenance.json"


@dataclass(frozen=True)
class Completions:
    """Records with ``text`` (the formatted prompt), ``instruction`` and ``response``, and how they were made."""

    records: tuple[Mapping[str, Any], ...]
    provenance: Mapping[str, Any]

    @property
    def completions_per_second(self) -> float:
        return float(self.provenance["extra"]["completions_per_second"])

    @classmethod
    def load(cls, directory: str | Path) -> "Completions":
        directory = Path(directory)
        path, provenance = directory / RECORDS, directory / PROVENANCE
        if not path.is_file() or not provenance.is_file():
            raise InterpError(
                f"{directory} holds no completions ({RECORDS} and {PROVENANCE}); "
                "make them with generate_completions(model, prompts, out)."
            )
        record = json.loads(provenance.read_text(encoding="utf-8"))
        records = read_jsonl(path, torn_tail=True)
        if record["extra"].get("finished") is not True or len(records) != record["extra"]["n"]:
            raise InterpError(
                f"{directory}: the completions are unfinished ({len(records)} of {record['extra']['n']}); "
                "rerun generate_completions with the same settings to finish them."
            )
        return cls(records=tuple(records), provenance=record)


def generate_completions(
    model,
    prompts: PromptSet | Sequence[str],
    out: str | Path,
    *,
    chat_template: bool = True,
    max_new_tokens: int = defaults.PRUNE_MAX_NEW_TOKENS,
    batch_size: int = defaults.PRUNE_EVAL_BATCH_SIZE,
    model_name: str | None = None,
    progress: bool = True,
) -> Completions:
    """Greedy completions of ``prompts`` (KV cache, batched) written to ``out``; resumes an unfinished run.

    Args:
        model: a TransformerBridge (``interp.load_model``).
        prompts: the requests (a ``PromptSet`` keeps its records' fields, e.g. ``label`` and ``split``).
        out: a directory; ``completions.jsonl`` and ``provenance.json`` are written there.
        chat_template: format each request as a user turn of the tokenizer's chat template, with the
            generation prompt (``text`` then ends where the answer starts).
        max_new_tokens: the longest answer, in tokens (an answer also ends at the EOS token).
        batch_size: prompts per generation batch.
        model_name: the name recorded in the provenance (default: the model's own id).
    """
    from interp.pruning.evaluate import generate_responses

    requests = prompts if isinstance(prompts, PromptSet) else PromptSet.from_texts(list(prompts))
    if not len(requests):
        raise InterpError("no prompts to complete; give at least one request.")
    if batch_size < 1 or max_new_tokens < 1:
        raise InterpError(f"batch_size and max_new_tokens must be at least 1 (got {batch_size} and {max_new_tokens}).")
    formatted = requests.apply_chat_template(model.tokenizer) if chat_template else requests
    settings = {"n": len(requests), "chat_template": chat_template, "max_new_tokens": max_new_tokens, "greedy": True,
                "prompts_hash": hash_json(formatted.texts)}  # fmt: skip
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    with exclusive_lock(out, what="completions directory"):
        weights = weights_hash(model)
        records, elapsed = _resume(out, settings, weights)
        started = time.perf_counter()
        with open(out / RECORDS, "a", encoding="utf-8") as sink:
            for begin in tqdm(range(len(records), len(requests), batch_size), desc="completions", disable=not progress,
                              initial=len(records) // batch_size, total=-(-len(requests) // batch_size)):  # fmt: skip
                rows = list(range(begin, min(begin + batch_size, len(requests))))
                texts = [formatted.texts[row] for row in rows]
                responses = generate_responses(model, texts, max_new_tokens=max_new_tokens, batch_size=len(texts))
                for row, text, response in zip(rows, texts, responses):
                    record = {
                        **requests.records[row],
                        "text": text,
                        "instruction": requests.texts[row],
                        "response": response,
                    }
                    sink.write(json.dumps(record, ensure_ascii=False) + "\n")
                    records.append(record)
                sink.flush()
                os.fsync(sink.fileno())
                _write_provenance(
                    out,
                    model_name or model_id(model),
                    weights,
                    settings,
                    len(records),
                    elapsed + time.perf_counter() - started,
                    finished=False,
                )
        seconds = elapsed + time.perf_counter() - started
        _write_provenance(out, model_name or model_id(model), weights, settings, len(records), seconds, finished=True)
    return Completions.load(out)


def _resume(out: Path, settings: Mapping[str, Any], weights: str) -> tuple[list[dict[str, Any]], float]:
    """The finished records of an earlier run with the same settings and weights (a torn last line dropped), and its
    seconds."""
    path = out / RECORDS
    if not path.exists():
        return [], 0.0
    saved = _saved_extra(out)
    recorded = {key: saved.get(key) for key in settings}
    if not saved or recorded != dict(settings) or saved.get("weights_hash") != weights:
        raise InterpError(
            f"{out} holds completions made with other prompts, settings or weights; "
            "pass another output directory or delete it."
        )
    data = path.read_bytes()
    records = read_jsonl(data, what=str(path), torn_tail=True)
    if data and not data.endswith(b"\n"):
        path.write_bytes(data[: data.rfind(b"\n") + 1])  # drop the torn line before appending
    return records, float(saved.get("seconds", 0.0))


def _saved_extra(out: Path) -> dict[str, Any]:
    path = out / PROVENANCE
    if not path.exists():
        return {}
    record = json.loads(path.read_text(encoding="utf-8"))
    return {**record["extra"], "weights_hash": record["weights_hash"]}


def _write_provenance(
    out: Path, name: str, weights: str, settings: Mapping[str, Any], n_done: int, seconds: float, finished: bool
) -> None:
    extra = {**settings, "n_done": n_done, "seconds": round(seconds, 3), "finished": finished,
             "completions_per_second": round(n_done / seconds, 4) if seconds > 0 else 0.0}  # fmt: skip
    provenance = Provenance(model_id=name, weights_hash=weights, dataset_hash=settings["prompts_hash"], extra=extra)
    atomic_write_json(out / PROVENANCE, provenance.to_dict())
