"""Patching metrics: functions of the logits, read at each row's own last position.

A metric is any callable ``metric(logits) -> Tensor`` with ``logits [batch, pos, d_vocab]``
that returns one value per row (``[batch]``) or one scalar. Patching calls it once per
patched cell on the ``n_prompts`` rows of that cell, and averages a per-row result over the
prompts (``reduce_metric``). The metrics here also take ``last``, the index of each row's
last real token (default: the final position), so they work on right-padded batches too.

>>> logits = torch.zeros(2, 3, 5); logits[:, -1, 1] = 2.0
>>> logit_diff(answer=1, wrong=4)(logits).tolist()
[2.0, 2.0]
>>> round(float(probability(answer=1)(logits)[0]), 3)
0.649
>>> float(kl_divergence(logits)(logits).abs().max())
0.0
"""

import math
import re
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

import torch
from jaxtyping import Float, Int
from torch import Tensor

from interp.errors import InterpError

Metric = Callable[..., Tensor]
TokenSpec = int | str | Sequence[int | str] | Tensor  # a sequence may mix ids and strings


# ---- helpers -----------------------------------------------------------------------------------


def last_logits(
    logits: Float[Tensor, "batch pos d_vocab"], last: Int[Tensor, " batch"] | None = None
) -> Float[Tensor, "batch d_vocab"]:
    """Each row's logits at its own last position (``last``; default: the final position)."""
    if logits.ndim != 3:
        raise InterpError(f"metrics expect logits [batch, pos, d_vocab], got shape {tuple(logits.shape)}.")
    if last is None:
        return logits[:, -1, :]
    last = torch.as_tensor(last, device=logits.device).long()
    if last.shape != (logits.shape[0],):
        raise InterpError(
            f"'last' has shape {tuple(last.shape)} but the logits have {logits.shape[0]} rows; give one index per row."
        )
    return logits[torch.arange(logits.shape[0], device=logits.device), last]


def token_ids(tokens: TokenSpec, tokenizer: Any = None) -> Int[Tensor, " n"]:
    """Token ids as a 1-D tensor: ints pass through, strings are encoded and must be one token each.

    >>> token_ids(5).tolist(), token_ids([3, 4]).tolist()
    ([5], [3, 4])
    """
    if isinstance(tokens, Tensor):
        ids = tokens.detach().long().reshape(-1)
        if ids.numel() == 0:
            raise InterpError("got an empty tensor of token ids; give at least one token.")
        return ids
    items = [tokens] if isinstance(tokens, (int, str)) else list(tokens)
    if not items:
        raise InterpError("got an empty list of tokens; give one token, or one per prompt.")
    id_list: list[int] = []
    for item in items:
        if isinstance(item, str):
            id_list.append(_single_token(item, tokenizer))
        elif isinstance(item, int) or (hasattr(item, "__index__") and not isinstance(item, bool)):
            id_list.append(int(item))
        else:
            raise InterpError(f"a token must be an int id or a string, got {type(item).__name__} ({item!r}).")
    return torch.tensor(id_list, dtype=torch.long)


def per_prompt_token_ids(
    spec: TokenSpec, tokenizer: Any, n_prompts: int, vocab: int, what: str, reads: str
) -> Int[Tensor, " prompt"]:
    """One token id per prompt from ``spec``: one token for all prompts, or one per prompt (strings or ids).

    ``what`` names the argument in messages ("target", "answer"); ``reads`` says why it must be one
    token ("the lens follows one token").

    >>> per_prompt_token_ids(7, None, 3, 10, "target", "the lens follows one token").tolist()
    [7, 7, 7]
    """
    items = [spec] * n_prompts if isinstance(spec, (str, int)) else list(spec)
    if len(items) != n_prompts:
        raise InterpError(
            f"got {len(items)} {what}{'s' if what == 'target' else ' tokens'} for {n_prompts} prompts; "
            "give one per prompt, or one for all."
        )
    ids = []
    for item in items:
        if isinstance(item, str):
            ids.append(one_token(item, tokenizer, what, reads))
        elif isinstance(item, int) or (hasattr(item, "__index__") and not isinstance(item, bool)):
            ids.append(int(item))
        else:
            raise InterpError(f"a {what} token must be an int id or a string, got {type(item).__name__} ({item!r}).")
    bad = [i for i in ids if not 0 <= i < vocab]
    if bad:
        raise InterpError(f"{what} token id {bad[0]} is outside the vocabulary (0..{vocab - 1}).")
    return torch.tensor(ids, dtype=torch.long)


ID_HINT = "pass a token id instead (id:123, or an int in Python)"
TOKEN_ID = re.compile(r"id:(\d{1,12})")  # a token given by its id where only text fits (a command-line flag, TOML text)


def one_token(
    text: str, tokenizer: Any, what: str = "token", reads: str = "a metric reads one next-token logit"
) -> int:
    """The id of ``text`` if it is exactly one token the tokenizer knows; an InterpError saying why not otherwise.

    Refused: an empty string, text of several tokens (naming them), and text the tokenizer can only
    read as its unknown token (a word-level vocabulary maps every unknown word to ``<unk>``).
    ``"id:123"`` is the token id 123 (how a command-line flag or a TOML string names an id).
    """
    by_id = TOKEN_ID.fullmatch(text)
    if by_id:
        return int(by_id.group(1))
    if tokenizer is None:
        raise InterpError(f"{what} {text!r} is a string, so pass tokenizer=model.tokenizer (or give its integer id).")
    if not text:
        raise InterpError(f"the {what} is an empty string, which is no token; give a token like ' the', or {ID_HINT}.")
    ids = tokenizer.encode(text, add_special_tokens=False)
    if len(ids) != 1:
        pieces = [tokenizer.decode([token]) for token in ids]
        raise InterpError(
            f"{what} {text!r} is {len(ids)} tokens ({pieces}); {reads}. Use {pieces[0]!r} if that is what you "
            f"mean (mind the leading space: ' Paris' vs 'Paris'), or {ID_HINT}."
        )
    unknown = getattr(tokenizer, "unk_token_id", None)
    if unknown is not None and ids[0] == unknown and text != getattr(tokenizer, "unk_token", None):
        raise InterpError(
            f"{what} {text!r} is not in the vocabulary: the tokenizer reads it as its unknown token "
            f"{tokenizer.unk_token!r}; give a word it knows, or {ID_HINT}."
        )
    return int(ids[0])


def _single_token(text: str, tokenizer: Any) -> int:
    return one_token(text, tokenizer)


def _per_row(ids: Tensor, logits: Tensor, what: str, metric: str) -> Int[Tensor, " batch"]:
    """``ids`` as one id per row of ``logits [batch, d_vocab]``, each checked against the logits' vocabulary width."""
    rows, vocab = logits.shape
    bad = ids[(ids < 0) | (ids >= vocab)]
    if bad.numel():
        raise InterpError(
            f"{metric} has {what} token id {int(bad[0])}, outside the vocabulary of these logits (0..{vocab - 1}); "
            "give ids of this model's tokenizer (or strings with tokenizer=model.tokenizer)."
        )
    ids = ids.to(logits.device)
    if ids.numel() == 1:
        return ids.expand(rows)
    if ids.numel() != rows:
        raise InterpError(
            f"the metric has {ids.numel()} {what} tokens but the logits have {rows} rows; "
            "give one token, or one per prompt."
        )
    return ids


def metric_name(metric: Metric) -> str:
    """A readable name for a metric (its ``name`` attribute, function name or class name)."""
    return str(getattr(metric, "name", None) or getattr(metric, "__name__", None) or type(metric).__name__)


def reduce_metric(metric: Metric, logits: Float[Tensor, "batch pos d_vocab"]) -> Float[Tensor, ""]:
    """``metric(logits)`` as one scalar: a ``[batch]`` result is averaged over the rows.

    Raises an InterpError naming the shape when the metric returns anything else, and naming the
    metric when its value is NaN or infinite (a patched run must never be scored by NaN).
    """
    value = metric(logits)
    if not isinstance(value, Tensor):
        if isinstance(value, (int, float)):
            value = torch.tensor(float(value), device=logits.device)
            _check_finite(metric, value)
            return value
        raise InterpError(
            f"metric {metric_name(metric)} returned {type(value).__name__}; it must return a tensor "
            "(a scalar, or one value per prompt)."
        )
    rows = logits.shape[0]
    if value.ndim == 0 or value.shape == (rows,):
        _check_finite(metric, value)
        return value if value.ndim == 0 else value.mean()
    raise InterpError(
        f"metric {metric_name(metric)} returned shape {tuple(value.shape)} for logits of shape {tuple(logits.shape)}; "
        f"it must return a scalar or one value per prompt ({rows},). Read one position per row, e.g. logits[:, -1]."
    )


def _check_finite(metric: Metric, value: Tensor) -> None:
    bad = ~torch.isfinite(value.detach())
    if bool(bad.any()):
        rows = f" (rows {bad.reshape(-1).nonzero().reshape(-1)[:6].tolist()})" if value.ndim else ""
        raise InterpError(
            f"metric {metric_name(metric)} returned {float(value.detach().reshape(-1)[bad.reshape(-1)][0])}{rows}; "
            "it must be finite. Check the metric for a division by zero or log(0), and the model's logits for "
            "NaN (e.g. float16 overflow)."
        )


# ---- metrics -----------------------------------------------------------------------------------


@dataclass(frozen=True, eq=False)
class LogitDiff:
    """``logit[answer] - logit[wrong]`` at each row's last position."""

    answer: Int[Tensor, " n"]
    wrong: Int[Tensor, " n"]
    name: str = "logit_diff"
    spelled: tuple[tuple[str, int], ...] = ()  # the (text, id) pairs it was built from: checked against a model

    def __call__(
        self, logits: Float[Tensor, "batch pos d_vocab"], last: Int[Tensor, " batch"] | None = None
    ) -> Float[Tensor, " batch"]:
        final = last_logits(logits, last)
        rows = torch.arange(final.shape[0], device=final.device)
        answer = _per_row(self.answer, final, "answer", self.name)
        wrong = _per_row(self.wrong, final, "wrong", self.name)
        return final[rows, answer] - final[rows, wrong]


@dataclass(frozen=True, eq=False)
class Probability:
    """Softmax probability of ``answer`` at each row's last position."""

    answer: Int[Tensor, " n"]
    name: str = "probability"
    spelled: tuple[tuple[str, int], ...] = ()  # the (text, id) pairs it was built from: checked against a model

    def __call__(
        self, logits: Float[Tensor, "batch pos d_vocab"], last: Int[Tensor, " batch"] | None = None
    ) -> Float[Tensor, " batch"]:
        final = last_logits(logits, last).float()
        rows = torch.arange(final.shape[0], device=final.device)
        answer = _per_row(self.answer, final, "answer", self.name)
        return final.softmax(-1)[rows, answer]


@dataclass(frozen=True, eq=False)
class KLDivergence:
    """``KL(reference || patched)`` of the next-token distributions at each row's last position."""

    reference: Float[Tensor, "batch d_vocab"]
    name: str = "kl_divergence"

    def __call__(
        self, logits: Float[Tensor, "batch pos d_vocab"], last: Int[Tensor, " batch"] | None = None
    ) -> Float[Tensor, " batch"]:
        final = last_logits(logits, last).float()
        if final.shape != self.reference.shape:
            raise InterpError(
                f"kl_divergence has reference logits of shape {tuple(self.reference.shape)} but got "
                f"{tuple(final.shape)} (rows x d_vocab); build it from logits of the same prompts."
            )
        reference = self.reference.to(final.device).float().log_softmax(-1)
        return (reference.exp() * (reference - final.log_softmax(-1))).sum(-1)


@dataclass(frozen=True, eq=False)
class Normalized:
    """``(metric - corrupt) / (clean - corrupt)``: 0 = the corrupt run's value, 1 = the clean run's."""

    metric: Metric
    clean: float
    corrupt: float

    def __post_init__(self) -> None:
        if not math.isfinite(self.clean) or not math.isfinite(self.corrupt):
            raise InterpError(f"normalization needs finite baselines, got clean={self.clean}, corrupt={self.corrupt}.")
        if self.clean == self.corrupt:
            raise InterpError(
                f"{metric_name(self.metric)} is {self.clean:.6g} on both the clean and the corrupt run, "
                "so normalizing divides by zero. Use prompts on which the model's behaviour differs."
            )

    @property
    def name(self) -> str:
        return f"normalized {metric_name(self.metric)}"

    @classmethod
    def from_logits(
        cls,
        metric: Metric,
        clean_logits: Float[Tensor, "batch pos d_vocab"],
        corrupt_logits: Float[Tensor, "batch pos d_vocab"],
    ) -> "Normalized":
        """Baselines from the clean and corrupt runs' logits (each reduced to a scalar)."""
        return cls(metric, float(reduce_metric(metric, clean_logits)), float(reduce_metric(metric, corrupt_logits)))

    def __call__(self, logits: Float[Tensor, "batch pos d_vocab"], *args: Any) -> Tensor:
        return (self.metric(logits, *args) - self.corrupt) / (self.clean - self.corrupt)


def logit_diff(answer: TokenSpec, wrong: TokenSpec, tokenizer: Any = None) -> LogitDiff:
    """Logit difference ``answer - wrong`` (one token, or one per prompt; strings need ``tokenizer``).

    >>> logit_diff(answer=[3, 4], wrong=[5, 6])(torch.randn(2, 7, 10)).shape
    torch.Size([2])
    """
    answer_ids, wrong_ids = token_ids(answer, tokenizer), token_ids(wrong, tokenizer)
    return LogitDiff(answer_ids, wrong_ids, spelled=_spelled(answer, answer_ids) + _spelled(wrong, wrong_ids))


def probability(answer: TokenSpec, tokenizer: Any = None) -> Probability:
    """Probability of ``answer`` (one token, or one per prompt)."""
    answer_ids = token_ids(answer, tokenizer)
    return Probability(answer_ids, spelled=_spelled(answer, answer_ids))


def _spelled(tokens: TokenSpec, ids: Tensor) -> tuple[tuple[str, int], ...]:
    """The (text, id) pairs of the tokens given as text (what another tokenizer could read differently)."""
    items = [tokens] if isinstance(tokens, (int, str)) else [] if isinstance(tokens, Tensor) else list(tokens)
    return tuple(sorted({(item, int(token)) for item, token in zip(items, ids.tolist()) if isinstance(item, str)}))


def check_tokenizer(metric: Metric, tokenizer: Any) -> None:
    """Raise if ``metric`` was built from text with another tokenizer than ``tokenizer`` (its ids would be others').

    A metric built from ids, or one that reads no token (KL), passes.
    """
    inner = metric.metric if isinstance(metric, Normalized) else metric
    if tokenizer is None:
        return
    for text, token in getattr(inner, "spelled", ()):
        try:
            here = one_token(text, tokenizer)
        except InterpError:
            here = None
        if here != token:
            found = "no single token" if here is None else f"id {here}"
            raise InterpError(
                f"the metric {metric_name(metric)} was built with another tokenizer: {text!r} is id {token} there "
                f"but {found} for this model; build it with tokenizer=model.tokenizer."
            )


def kl_divergence(
    reference_logits: Float[Tensor, "batch pos d_vocab"] | Float[Tensor, "batch d_vocab"],
    last: Int[Tensor, " batch"] | None = None,
) -> KLDivergence:
    """KL divergence from the reference run's next-token distribution (e.g. the clean logits)."""
    reference = reference_logits if reference_logits.ndim == 2 else last_logits(reference_logits, last)
    return KLDivergence(reference.detach())


def normalized(
    metric: Metric,
    clean: float | Float[Tensor, "batch pos d_vocab"],
    corrupt: float | Float[Tensor, "batch pos d_vocab"],
) -> Normalized:
    """``metric`` rescaled so the corrupt run scores 0 and the clean run 1.

    ``clean`` / ``corrupt`` are the baseline values, or the runs' logits to compute them from.
    """
    if isinstance(clean, Tensor) and clean.ndim == 3:
        clean = float(reduce_metric(metric, clean))
    if isinstance(corrupt, Tensor) and corrupt.ndim == 3:
        corrupt = float(reduce_metric(metric, corrupt))
    return Normalized(metric, float(clean), float(corrupt))


__all__ = [
    "KLDivergence",
    "LogitDiff",
    "Metric",
    "Normalized",
    "Probability",
    "kl_divergence",
    "last_logits",
    "logit_diff",
    "metric_name",
    "normalized",
    "probability",
    "reduce_metric",
    "token_ids",
]
