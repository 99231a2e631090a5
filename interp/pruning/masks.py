"""Which weights to prune: set-difference masks, plain top-k masks, random controls, overlaps.

A ``PruningMask`` holds one bool tensor per decoder weight (``True`` = prune), in the
``[d_out, d_in]`` layout of the scores.

- ``set_difference(harm, benign, p, q)``: per weight matrix, the top ``q`` fraction of the harm
  scores minus the top ``p`` fraction of the benign scores (``int(q * numel)`` and
  ``int(p * numel)`` weights, as in Wei et al. 2024);
- ``top_k_mask(scores, fraction, scope)``: the largest scores per row, per matrix or globally;
- ``random_mask(like, seed)``: as many weights per matrix as ``like``, placed uniformly at random.

>>> mask = set_difference(harm_scores, benign_scores, p=0.01, q=0.01)   # doctest: +SKIP
>>> mask.fraction, mask.overlap(random_mask(mask)).enrichment              # doctest: +SKIP
"""

import math
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path

import torch
from einops import rearrange
from jaxtyping import Bool, Float
from torch import Tensor

from interp.errors import InterpError
from interp.io import ResultFormat, read_result, write_result
from interp.pruning.scores import ImportanceScores, layer_module_grid, tensor_shape

FORMAT = ResultFormat(
    kind="pruning_mask",
    version=1,
    name="pruning-mask file",
    meta_file="",
    tensors_file="mask.safetensors",
    create="set_difference(harm, benign, p, q).save(PATH) (`interp prune ... --out DIR` writes DIR/masks/)",
    load="PruningMask.load(PATH)",
    aliases={"interp-pruning-mask": 1},
)
SCOPES = ("row", "matrix", "global")

Scores = ImportanceScores | Mapping[str, Float[Tensor, "d_out d_in"]]


@dataclass(frozen=True)
class MaskOverlap:
    """How much two masks overlap, and what chance alone would give.

    ``chance_n_both`` is the expected intersection if each mask's pruned weights were spread
    uniformly at random within each matrix (per-matrix counts kept): sum over matrices of
    n_a * n_b / numel.
    """

    n_a: int
    n_b: int
    n_both: int
    n_total: int
    chance_n_both: float

    def __post_init__(self) -> None:
        if not 0 <= self.n_both <= min(self.n_a, self.n_b) or max(self.n_a, self.n_b) > self.n_total:
            raise InterpError(f"inconsistent overlap counts: {self}.")

    @property
    def jaccard(self) -> float:
        union = self.n_a + self.n_b - self.n_both
        return self.n_both / union if union else 0.0

    @property
    def chance_jaccard(self) -> float:
        union = self.n_a + self.n_b - self.chance_n_both
        return self.chance_n_both / union if union else 0.0

    @property
    def overlap_coefficient(self) -> float:
        """|A and B| / min(|A|, |B|)."""
        smaller = min(self.n_a, self.n_b)
        return self.n_both / smaller if smaller else 0.0

    @property
    def enrichment(self) -> float:
        """Observed over chance intersection (1 = chance; inf when chance expects none but some overlap)."""
        if self.chance_n_both == 0:
            return math.inf if self.n_both else 1.0
        return self.n_both / self.chance_n_both

    def to_dict(self) -> dict[str, float]:
        return {
            "n_a": self.n_a,
            "n_b": self.n_b,
            "n_both": self.n_both,
            "n_total": self.n_total,
            "chance_n_both": self.chance_n_both,
            "jaccard": self.jaccard,
            "chance_jaccard": self.chance_jaccard,
            "overlap_coefficient": self.overlap_coefficient,
            "enrichment": self.enrichment,
        }


@dataclass(frozen=True)
class PruningMask:
    """``True`` marks a weight to zero. One ``[d_out, d_in]`` bool tensor per decoder weight key."""

    masks: Mapping[str, Bool[Tensor, "d_out d_in"]]
    description: str = ""
    model_id: str = ""  # the model whose scores made it, where known (named when it is applied to another)

    def __post_init__(self) -> None:
        if not self.masks:
            raise InterpError("a pruning mask needs at least one weight matrix.")
        for key, mask in self.masks.items():
            if not isinstance(mask, Tensor) or mask.dtype != torch.bool or mask.dim() != 2:
                shape = tuple(mask.shape) if isinstance(mask, Tensor) else type(mask).__name__
                raise InterpError(
                    f"the mask of {key} must be a 2-D bool tensor, got {shape} {getattr(mask, 'dtype', '')}."
                )

    @property
    def keys(self) -> tuple[str, ...]:
        return tuple(self.masks)

    def __getitem__(self, key: str) -> Bool[Tensor, "d_out d_in"]:
        return self.masks[key]

    def counts(self) -> dict[str, int]:
        """Pruned weights per matrix."""
        return {key: int(mask.sum()) for key, mask in self.masks.items()}

    def sizes(self) -> dict[str, int]:
        return {key: mask.numel() for key, mask in self.masks.items()}

    @property
    def n_pruned(self) -> int:
        return sum(self.counts().values())

    @property
    def n_total(self) -> int:
        return sum(self.sizes().values())

    @property
    def fraction(self) -> float:
        """Share of the covered weights that are pruned."""
        return self.n_pruned / self.n_total

    def overlap(self, other: "PruningMask") -> MaskOverlap:
        """Intersection with ``other`` and its chance level (same per-matrix counts, random placement)."""
        _check_same_layout(self.masks, other.masks, "the two masks")
        n_both = sum(int((self.masks[key] & other.masks[key].to(self.masks[key].device)).sum()) for key in self.keys)
        chance = sum(int(self.masks[k].sum()) * int(other.masks[k].sum()) / self.masks[k].numel() for k in self.keys)
        return MaskOverlap(
            n_a=self.n_pruned, n_b=other.n_pruned, n_both=n_both, n_total=self.n_total, chance_n_both=chance
        )

    def save(self, path: str | Path) -> Path:
        """One safetensors file of bool tensors (a directory gets ``mask.safetensors``)."""
        return write_result(
            path,
            FORMAT,
            {"description": self.description, "model_id": self.model_id},
            provenance=None,
            tensors=dict(self.masks),
        )

    @classmethod
    def load(cls, path: str | Path) -> "PruningMask":
        saved = read_result(path, FORMAT)
        assert saved.tensors is not None  # a single-file format always has its tensors
        return cls(
            saved.tensors.load_all(), str(saved.meta.get("description", "")), str(saved.meta.get("model_id", ""))
        )

    def figure(self):
        """Share of each weight matrix that is pruned, per layer and module (a heatmap)."""
        from interp.plots import layer_module_heatmap

        layers, modules, grid = layer_module_grid(
            {key: 100.0 * count / self.masks[key].numel() for key, count in self.counts().items()}
        )
        described = f": {self.description}" if self.description else ""
        title = f"Pruned weights per matrix ({100 * self.fraction:.3g}% of {self.n_total:,}){described}"
        return layer_module_heatmap(grid, layers, modules, title=title, colorbar_title="% pruned")


def _model_id(scores: Scores) -> str:
    return scores.provenance.model_id if isinstance(scores, ImportanceScores) and scores.provenance is not None else ""


def _as_mapping(scores: Scores) -> Mapping[str, Tensor]:
    return scores.scores if isinstance(scores, ImportanceScores) else scores


def check_fraction(name: str, value: float) -> float:
    """``value`` as a float when it is a fraction in (0, 1]; otherwise a clear error (with a hint for percentages)."""
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not (0 < value <= 1):
        raise InterpError(
            f"{name} must be a fraction in (0, 1] (0.01 = the top 1% of each matrix), got {value!r}."
            + (
                " Did you mean a percentage? Divide it by 100."
                if isinstance(value, (int, float)) and 1 < value <= 100
                else ""
            )
        )
    return float(value)


def _check_same_layout(a: Mapping[str, Tensor], b: Mapping[str, Tensor], what: str) -> None:
    if set(a) != set(b):
        only_a, only_b = sorted(set(a) - set(b)), sorted(set(b) - set(a))
        raise InterpError(
            f"{what} cover different weights (only in the first: {only_a[:3]}, only in the second: {only_b[:3]}); "
            "compute both on the same model."
        )
    for key in a:
        if tensor_shape(a, key) != tensor_shape(b, key):
            raise InterpError(
                f"{what} disagree on the shape of {key}: {tensor_shape(a, key)} vs {tensor_shape(b, key)}."
            )


def _top_indices(values: Float[Tensor, " n"], k: int) -> Tensor:
    if k <= 0:
        return torch.empty(0, dtype=torch.long, device=values.device)
    return torch.topk(values, k, largest=True, sorted=False).indices


def set_difference(harm: Scores, benign: Scores, p: float, q: float) -> PruningMask:
    """Per matrix: the top ``q`` of ``harm`` scores that are not in the top ``p`` of ``benign`` scores.

    Args:
        harm: scores on the behaviour to remove (e.g. triggered harmful responses), ``[d_out, d_in]`` per key.
        benign: scores on the behaviour to keep (benign answers, reasoning, copying), same keys and shapes.
        p: fraction of each matrix protected by its benign score, in (0, 1].
        q: fraction of each matrix selected by its harm score, in (0, 1].

    Top 2 of 4 harm scores are weights 0 and 1; the top 1 benign score protects weight 0:

    >>> harm = {"blocks.0.mlp.out": torch.tensor([[4.0, 3.0], [2.0, 1.0]])}
    >>> benign = {"blocks.0.mlp.out": torch.tensor([[9.0, 0.0], [0.0, 0.5]])}
    >>> set_difference(harm, benign, p=0.25, q=0.5)["blocks.0.mlp.out"]
    tensor([[False,  True],
            [False, False]])
    """
    p, q = check_fraction("p", p), check_fraction("q", q)
    harm_map, benign_map = _as_mapping(harm), _as_mapping(benign)
    _check_same_layout(harm_map, benign_map, "the harm and benign scores")
    masks = {}
    for key in harm_map:
        harm_values = rearrange(harm_map[key].float(), "d_out d_in -> (d_out d_in)")
        benign_values = rearrange(benign_map[key].float(), "d_out d_in -> (d_out d_in)").to(harm_values.device)
        n = harm_values.numel()
        flat = torch.zeros(n, dtype=torch.bool, device=harm_values.device)
        flat[_top_indices(harm_values, int(q * n))] = True
        flat[_top_indices(benign_values, int(p * n))] = False
        masks[key] = rearrange(flat, "(d_out d_in) -> d_out d_in", d_out=harm_map[key].shape[0])
    method = f" ({harm.method})" if isinstance(harm, ImportanceScores) else ""
    return PruningMask(
        masks, f"set difference{method}: top q={q:g} harm minus top p={p:g} benign, per matrix", _model_id(harm)
    )


def top_k_mask(scores: Scores, fraction: float, scope: str = "matrix") -> PruningMask:
    """The largest ``fraction`` of scores per ``scope``: ``"row"`` (per output row), ``"matrix"`` or ``"global"``.

    >>> mask = top_k_mask(harm_scores, 0.01, scope="global")   # doctest: +SKIP
    """
    fraction = check_fraction("fraction", fraction)
    if scope not in SCOPES:
        raise InterpError(f"unknown scope {scope!r}; use one of {', '.join(SCOPES)}.")
    score_map = _as_mapping(scores)
    masks: dict[str, Tensor] = {}
    if scope == "global":
        keys = list(score_map)
        flat = torch.cat([rearrange(score_map[key].float().cpu(), "d_out d_in -> (d_out d_in)") for key in keys])
        chosen = torch.zeros(flat.numel(), dtype=torch.bool)
        chosen[_top_indices(flat, int(fraction * flat.numel()))] = True
        start = 0
        for key in keys:
            rows, cols = tensor_shape(score_map, key)
            masks[key] = rearrange(chosen[start : start + rows * cols], "(d_out d_in) -> d_out d_in", d_out=rows)
            start += rows * cols
        return PruningMask(masks, f"top {fraction:g} of all scores (global)", _model_id(scores))
    for key in score_map:
        values = score_map[key].float()
        mask = torch.zeros(values.shape, dtype=torch.bool, device=values.device)
        if scope == "row":
            k = int(fraction * values.shape[1])
            if k > 0:
                mask.scatter_(1, torch.topk(values, k, dim=1).indices, True)
        else:
            flat = rearrange(mask, "d_out d_in -> (d_out d_in)")
            flat[_top_indices(rearrange(values, "d_out d_in -> (d_out d_in)"), int(fraction * values.numel()))] = True
        masks[key] = mask
    return PruningMask(masks, f"top {fraction:g} of scores per {scope}", _model_id(scores))


def random_mask(like: PruningMask, seed: int = 0) -> PruningMask:
    """A control: as many pruned weights per matrix as ``like``, placed uniformly at random."""
    generator = torch.Generator().manual_seed(seed)
    masks = {}
    for key, reference in like.masks.items():
        count = int(reference.sum())
        flat = torch.zeros(reference.numel(), dtype=torch.bool)
        flat[torch.randperm(reference.numel(), generator=generator)[:count]] = True
        masks[key] = rearrange(flat, "(d_out d_in) -> d_out d_in", d_out=reference.shape[0]).to(reference.device)
    return PruningMask(masks, f"random control (seed {seed}) matching: {like.description}", like.model_id)
