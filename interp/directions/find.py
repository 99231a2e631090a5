"""``find_directions``: candidate refusal directions at every layer and post-instruction position, scored and selected.

The refusal score of a prompt is the log-odds that the answer starts with a refusal token,
read at the first generated position (the formatted prompt's last token)::

    p = sum_{t in refusal tokens} softmax(logits)[t],    score = log(p / (1 - p))

The refusal tokens are the first tokens of ``REFUSAL_STARTS`` ("I", "Sorry", "As", as in
Arditi et al.'s code for Llama/Gemma chat models). A candidate ``r[pos, layer]`` (difference of
the mean ``resid_pre`` of harmful and benign training prompts at that layer and position) gets

- ``ablation_score``: mean refusal score of held-out harmful prompts with ``r`` ablated everywhere
  (low: ablating it stops refusal);
- ``addition_score``: mean refusal score of held-out benign prompts with ``r`` added at its layer
  (high: adding it induces refusal);
- ``kl``: mean KL(original ‖ ablated) of the next-token distribution on held-out benign prompts.

Selection (Arditi et al. 2024, section C): among candidates with ``layer < max_layer_fraction * n_layers``,
``kl <= max_kl`` and ``addition_score > 0``, the lowest ``ablation_score``; filters that no candidate
passes are dropped in the order addition, KL, and the result's ``selection`` says which held.
"""

import dataclasses
import math
from collections.abc import Callable, Sequence

import torch
from jaxtyping import Float
from torch import Tensor

from interp import defaults
from interp.data import PromptSet, iter_batches, pad_token_id, tokenize_prompts
from interp.directions.interventions import ablated, added
from interp.directions.prompts import chat_format, check_suffix, post_instruction_tokens, split_instructions
from interp.directions.result import DirectionResult
from interp.errors import InterpError
from interp.model import model_id
from interp.model.weights import weights_hash
from interp.progress import tqdm
from interp.provenance import Provenance, hash_json
from interp.sites import layer_sites
from interp.store import capture_activations, run_and_capture
from interp.store.readout import Readout

REFUSAL_STARTS = defaults.DIRECTION_REFUSAL_STARTS
MAX_KL = defaults.DIRECTION_MAX_KL
MAX_LAYER_FRACTION = defaults.DIRECTION_MAX_LAYER_FRACTION


def as_prompts(prompts: PromptSet | Sequence[str], what: str) -> PromptSet:
    if isinstance(prompts, PromptSet):
        return prompts
    if isinstance(prompts, str) or not isinstance(prompts, Sequence):
        raise InterpError(f"{what} must be a PromptSet or a list of instruction strings, got {type(prompts).__name__}.")
    if not prompts:
        raise InterpError(f"{what} is empty; a difference of means needs prompts of both classes (harmful and benign).")
    return PromptSet.from_texts(list(prompts))


def split_by_label(prompts: PromptSet, positive: str = "harmful") -> tuple[PromptSet, PromptSet]:
    """(positive-label prompts, the others) of one labelled prompt set; raises unless both classes are there."""
    labels = [str(label) for label in prompts.labels]
    pos = [i for i, label in enumerate(labels) if label == positive]
    neg = [i for i, label in enumerate(labels) if label != positive]
    if not pos or not neg:
        present = sorted(set(labels))
        raise InterpError(f"all {len(prompts)} prompts are {'not ' if not pos else ''}{positive!r} "
                          f"(labels: {present}); a direction needs two classes. Add prompts of the other class, "
                          "or name the positive label with positive=.")  # fmt: skip
    return prompts.select(pos), prompts.select(neg)


def refusal_token_ids(tokenizer, starts: Sequence[str]) -> tuple[tuple[int, ...], tuple[str, ...]]:
    """The first token of each refusal start (deduplicated) and its token string."""
    ids: list[int] = []
    for text in starts:
        encoded = tokenizer(text, add_special_tokens=False)["input_ids"]
        if not encoded:
            raise InterpError(f"refusal start {text!r} tokenizes to nothing; give words such as 'I', 'Sorry'.")
        if encoded[0] not in ids:
            ids.append(int(encoded[0]))
    return tuple(ids), tuple(tokenizer.convert_ids_to_tokens(ids))


def refusal_scores(log_probs: Float[Tensor, "prompt vocab"], ids: Sequence[int]) -> Float[Tensor, " prompt"]:
    """log(p / (1 - p)) with p the probability of the refusal tokens."""
    log_p = torch.logsumexp(log_probs[:, list(ids)].double(), dim=-1).clamp(max=-1e-12)
    return log_p - torch.log(-torch.expm1(log_p))


def last_log_probs(model, token_lists: Sequence[Tensor], batch_size: int) -> Float[Tensor, "prompt vocab"]:
    """Log-probabilities of the next token after each prompt (right-padded batches, each row's own last token)."""
    pieces = []
    device = model.cfg.device
    with torch.inference_mode():
        for batch in iter_batches(token_lists, batch_size, pad_token_id(model)):
            logits = model(batch.tokens.to(device), attention_mask=batch.attention_mask.to(device))
            rows = torch.arange(len(batch.lengths), device=logits.device)
            pieces.append(torch.log_softmax(logits[rows, batch.last_positions.to(logits.device)].float(), dim=-1).cpu())
    return torch.cat(pieces)


def readout_log_probs(
    model, token_lists: Sequence[Tensor], batch_size: int, readout: Readout
) -> Float[Tensor, "prompt vocab"]:
    """``last_log_probs`` with the forward stopped at the last block's output: only each row's last position is
    unembedded.

    The unembedding at every position is a quarter of a forward of a model with a large vocabulary
    (Qwen2.5-0.5B: 136 M of 494 M multiply-adds per token); a refusal score reads one position.
    """
    final = f"blocks.{model.cfg.n_layers - 1}.hook_resid_post"
    pieces = []
    with torch.inference_mode():
        for batch in iter_batches(token_lists, batch_size, pad_token_id(model)):
            resid = run_and_capture(model, batch, [final], "last", batch.tokens.shape[1], torch.float32)[final]
            pieces.append(torch.log_softmax(readout(resid), dim=-1).cpu())
    return torch.cat(pieces)


def scorer(model) -> tuple[Callable[[Sequence[Tensor], int], Tensor], str]:
    """The next-token log-probabilities used to score candidates, and which path computes them.

    The readout path (last block's output at the last position through the final norm and the
    unembedding) when the readout reproduces the model's logits (checked by ``Readout.from_model``),
    else the full logits.
    """
    readout = Readout.from_model(model)
    if readout.faithful:
        return (
            lambda tokens, size: readout_log_probs(model, tokens, size, readout)
        ), f"readout at the last position (max |logit difference| {readout.verified_max_abs_diff:.1e})"
    return (
        lambda tokens, size: last_log_probs(model, tokens, size)
    ), f"full logits (the readout reproduces them only to {readout.verified_max_abs_diff:.1e})"


def kl_divergence(base: Tensor, other: Tensor) -> Float[Tensor, " prompt"]:
    """KL(base ‖ other) per row of log-probabilities."""
    return (base.exp() * (base - other)).sum(-1).double()


def find_directions(
    model,
    harmful: PromptSet | Sequence[str],
    benign: PromptSet | Sequence[str],
    val_harmful: PromptSet | Sequence[str] | None = None,
    val_benign: PromptSet | Sequence[str] | None = None,
    positions: Sequence[int] | None = None,
    layers: Sequence[int] | None = None,
    candidates: Sequence[tuple[int, int]] | None = None,
    refusal_starts: Sequence[str] = REFUSAL_STARTS,
    max_kl: float = MAX_KL,
    max_layer_fraction: float = MAX_LAYER_FRACTION,
    chat_template: bool = True,
    batch_size: int = defaults.DIRECTION_BATCH_SIZE,
    progress: bool = True,
) -> DirectionResult:
    """Difference-of-means candidates at every layer and position, each scored on held-out prompts; the best selected.

    Args:
        harmful, benign: instructions (raw user text; wrapped in the chat template unless
            ``chat_template=False``). Without ``val_*`` they are split by their ``split`` field
            (``train`` / ``heldout``), else every 4th is held out.
        positions: negative offsets from the prompt's end (default: every post-instruction
            template token, or ``(-1,)`` without a template).
        layers: the layers whose candidates are scored (default: all); directions are computed at all.
        candidates: instead, the ``(position, layer)`` pairs to score (e.g. a coarse sweep first).
        refusal_starts, max_kl, max_layer_fraction: the refusal score's tokens and the selection's filters.

    Returns a DirectionResult: ``directions[pos, layer]``, the three scores per candidate, the choice.
    """
    harmful, benign = as_prompts(harmful, "harmful"), as_prompts(benign, "benign")
    if val_harmful is None:
        harmful, val_harmful = split_instructions(harmful)
    if val_benign is None:
        benign, val_benign = split_instructions(benign)
    val_harmful, val_benign = as_prompts(val_harmful, "val_harmful"), as_prompts(val_benign, "val_benign")
    n_layers = int(model.cfg.n_layers)
    tokenizer = model.tokenizer
    use_template = chat_template and bool(getattr(tokenizer, "chat_template", None))
    if chat_template and not use_template:
        raise InterpError(
            "the tokenizer has no chat template; pass chat_template=False (--no-chat-template) to use the "
            "instructions as they are."
        )
    fmt = (lambda prompts: chat_format(tokenizer, prompts)) if use_template else (lambda prompts: prompts)
    suffix = post_instruction_tokens(tokenizer) if use_template else ()
    positions = tuple(
        int(p) for p in (positions if positions is not None else (range(-len(suffix), 0) if suffix else (-1,)))
    )
    if not positions or any(p >= 0 for p in positions):
        raise InterpError(
            f"positions {list(positions)}: give negative offsets from the end, e.g. -1 for the last token."
        )
    layers = tuple(range(n_layers)) if layers is None else tuple(sorted({int(layer) for layer in layers}))
    if not layers or not all(0 <= layer < n_layers for layer in layers):
        raise InterpError(f"layers {list(layers)}: give layers between 0 and {n_layers - 1}.")
    sets = {
        name: fmt(prompts)
        for name, prompts in (
            ("harmful", harmful),
            ("benign", benign),
            ("val_harmful", val_harmful),
            ("val_benign", val_benign),
        )
    }
    tokens = {name: tokenize_prompts(model, prompts) for name, prompts in sets.items()}
    if use_template:
        check_suffix(model, [ids for lists in tokens.values() for ids in lists], -min(positions))
    labels = _position_labels(model, tokens["harmful"][0], positions)

    # 1. candidates: mean resid_pre of harmful minus benign training prompts, [pos, layer, d_model]
    hooks = layer_sites("resid_pre", n_layers)
    means = []
    for name in ("harmful", "benign"):
        acts = capture_activations(
            model, sets[name], hooks=hooks, positions=list(positions), batch_size=batch_size, dtype=torch.float32
        )
        means.append(torch.stack([acts[hook].double().mean(0) for hook in hooks], dim=1))  # [pos, layer, d]
    directions = (means[0] - means[1]).float()

    # 2. scores of each candidate on the held-out prompts
    ids, token_strings = refusal_token_ids(tokenizer, refusal_starts)
    log_probs, scoring = scorer(model)
    base_harmful = log_probs(tokens["val_harmful"], batch_size)
    base_benign = log_probs(tokens["val_benign"], batch_size)
    shape = (len(positions), n_layers)
    ablation, addition, kl = (torch.full(shape, math.nan, dtype=torch.float64) for _ in range(3))
    if candidates is None:
        candidates = [(p, layer) for p in range(len(positions)) for layer in layers]
    else:
        bad = [pair for pair in candidates if pair[0] not in positions or not 0 <= pair[1] < n_layers]
        if bad:
            raise InterpError(
                f"candidates {bad[:3]} are not (position, layer) pairs with positions in {list(positions)} and "
                f"layers 0..{n_layers - 1}."
            )
        candidates = [(positions.index(position), int(layer)) for position, layer in candidates]
        layers = tuple(sorted({layer for _, layer in candidates}))
    for p, layer in tqdm(candidates, desc="scoring candidates", disable=not progress):
        vector = directions[p, layer]
        if float(vector.norm()) == 0.0:
            continue
        with ablated(model, vector):
            ablation[p, layer] = refusal_scores(log_probs(tokens["val_harmful"], batch_size), ids).mean()
            kl[p, layer] = kl_divergence(base_benign, log_probs(tokens["val_benign"], batch_size)).mean()
        with added(model, vector, layer=layer):
            addition[p, layer] = refusal_scores(log_probs(tokens["val_benign"], batch_size), ids).mean()
    chosen, selection = select(ablation, addition, kl, max_kl, int(max_layer_fraction * n_layers))

    counts = {name: len(prompts) for name, prompts in sets.items()}
    provenance = Provenance(
        model_id=model_id(model), weights_hash=weights_hash(model), hooks=hooks,
        dataset_hash=hash_json({name: prompts.texts for name, prompts in sets.items()}),
        extra={"directions": {"positions": list(positions), "layers_scored": list(layers),
                              "refusal_starts": list(refusal_starts), "max_kl": max_kl,
                              "max_layer_fraction": max_layer_fraction, "chat_template": use_template, "counts": counts,
                              "scoring": scoring}},
    )  # fmt: skip
    return DirectionResult(
        directions=directions, positions=positions, position_labels=labels, ablation_score=ablation.float(),
        addition_score=addition.float(), kl=kl.float(),
        baseline_harmful=float(refusal_scores(base_harmful, ids).mean()),
        baseline_benign=float(refusal_scores(base_benign, ids).mean()),
        refusal_tokens=token_strings, chosen_position=chosen[0], chosen_layer=chosen[1], selection=selection,
        max_kl=float(max_kl), max_layer=int(max_layer_fraction * n_layers), counts=counts, provenance=provenance,
    )  # fmt: skip


def merge_scores(first: DirectionResult, second: DirectionResult) -> DirectionResult:
    """``second`` with the candidate scores that ``first`` has and ``second`` lacks, and the selection redone.

    For a sweep run in parts (e.g. a few layers per call, each saved, so that a stopped run resumes):
    both parts must come from the same training prompts (the same candidate directions).
    """
    if first.directions.shape != second.directions.shape or not torch.allclose(
        first.directions, second.directions, atol=1e-5
    ):
        raise InterpError("the two direction results hold different candidates (other training prompts or model); "
                          "merge only parts of one sweep.")  # fmt: skip
    fields = {}
    for name in ("ablation_score", "addition_score", "kl"):
        mine, theirs = getattr(first, name), getattr(second, name)
        fields[name] = torch.where(torch.isnan(theirs), mine, theirs)
    (position, layer), selection = select(
        fields["ablation_score"], fields["addition_score"], fields["kl"], second.max_kl, second.max_layer
    )
    return dataclasses.replace(
        second,
        ablation_score=fields["ablation_score"],
        addition_score=fields["addition_score"],
        kl=fields["kl"],
        chosen_position=position,
        chosen_layer=layer,
        selection=selection,
    )


def select(
    ablation: Tensor, addition: Tensor, kl: Tensor, max_kl: float, max_layer: int
) -> tuple[tuple[int, int], str]:
    """The (position index, layer) of the lowest ablation score under the filters, and which filters held."""
    scored = torch.isfinite(ablation)
    if not scored.any():
        raise InterpError(
            "no candidate was scored (every difference of means is zero); check that the two prompt sets differ."
        )
    layer_ok = torch.arange(ablation.shape[1])[None, :] < max_layer
    filters = [
        (f"layer < {max_layer}", layer_ok),
        (f"KL <= {max_kl:g}", kl <= max_kl),
        ("addition score > 0", addition > 0),
    ]
    for keep in (3, 2, 1, 0):
        mask = scored.clone()
        for _, condition in filters[:keep]:
            mask &= condition
        if mask.any():
            index = int(torch.where(mask, ablation, torch.full_like(ablation, math.inf)).flatten().argmin())
            held = [name for name, _ in filters[:keep]]
            dropped = [name for name, _ in filters[keep:]]
            text = "filters: " + (", ".join(held) or "none")
            if dropped:
                text += "; no candidate passed " + ", ".join(dropped) + " as well, so dropped"
            return (index // ablation.shape[1], index % ablation.shape[1]), text
    raise AssertionError("unreachable: some candidate is scored")


def _position_labels(model, ids: Tensor, positions: Sequence[int]) -> tuple[str, ...]:
    tokens = model.tokenizer.convert_ids_to_tokens(ids.tolist())
    return tuple(f"{p} {tokens[p]!r}" for p in positions)
