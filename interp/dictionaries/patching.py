"""Exact feature patching: activation patching of one dictionary feature at one position (a feature is a site).

For clean and corrupt prompts of one token length, each (position, feature) cell runs the target prompts (denoising:
the corrupt ones) with that feature's activation at that position set to its value in the source run. At the
dictionary's write site::

    x_target[pos] += (c_source[pos, f] - c_target[pos, f]) * W_dec[f]

with the codes ``c`` read from the read site of each unpatched run (as ``feature_attribution`` defines them), and ::

    values[pos, f] = metric(patched target run) - metric(target run)        (each averaged over the prompts)

the exact effect that ``feature_attribution`` estimates to first order (``attribution`` holds that estimate for the
same cells). Two more rows per position:

- ``error[pos]``: the rest of the site patched: with ``e = x - c @ W_dec`` (the dictionary's error, its decoder bias
  and a transcoder's skip connection), ``x_target[pos] += e_source[pos] - e_target[pos]``;
- ``together[pos]``: every feature and the error patched in one run, which is the whole site's activation patch at
  that position (``x_target[pos] = x_source[pos]``).

A cell whose patch is zero for every prompt (its code, or the error, equal in both runs) changes nothing: it is not
run and its value is exactly 0. A write at ``hook_resid_mid`` is made at the layer's ``hook_attn_out`` (the same
addition to the residual stream; TransformerBridge's resid_mid hook only feeds the MLP).

>>> result = feature_patching(model, dictionary, clean, corrupt, logit_diff(" Mary", " John", tok))  # doctest: +SKIP
>>> result.top(5)                                                                                    # doctest: +SKIP
"""

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import einops
import torch
from jaxtyping import Float
from torch import Tensor

from interp.dictionaries.attribution import capture_read_write, feature_attribution
from interp.dictionaries.dictionary import SparseDictionary
from interp.dictionaries.interventions import written_through
from interp.errors import InterpError
from interp.io import ResultFormat
from interp.metrics import Metric, check_tokenizer, metric_name, reduce_metric
from interp.model import model_id
from interp.patching.engine import default_max_rows
from interp.patching.inputs import (
    Prompts,
    check_direction,
    model_device,
    pair_tokens,
    position_labels,
)
from interp.progress import tqdm
from interp.provenance import Provenance
from interp.results import Result

DEFAULT_TOP_FEATURES = 10  # features patched when none are given: the largest |attribution| at any chosen position

FORMAT = ResultFormat(
    kind="feature_patching",
    version=1,
    name="feature patching result",
    meta_file="feature_patching.json",
    tensors_file="feature_patching.safetensors",
    create="interp.dictionaries.feature_patching(model, dictionary, clean, corrupt, metric).save(DIR)",
    load="FeaturePatching.load(DIR)",
)


@dataclass(frozen=True)
class FeaturePatching(Result):
    """``values[pos, feature]``: the exact change of the metric when one feature is patched at one position.

    ``error[pos]`` / ``together[pos]``: the error term alone, and every feature with the error (the whole site);
    ``attribution[pos, feature]``: ``feature_attribution``'s estimate of ``values`` (None when the metric has no
    gradient). ``features`` names the columns (latent indices), ``positions`` the rows ("3:fox", "3:fox→dog").
    """

    FORMAT = FORMAT
    FIGURE_FILE = "feature_patching.html"

    values: Float[Tensor, "pos feature"]
    error: Float[Tensor, " pos"]
    together: Float[Tensor, " pos"]
    attribution: Float[Tensor, "pos feature"] | None
    features: tuple[int, ...]
    positions: tuple[str, ...]
    site: str
    direction: str
    metric_name: str
    clean_metric: float
    corrupt_metric: float
    n_prompts: int
    provenance: Provenance | None = None

    def __post_init__(self) -> None:
        if self.values.ndim != 2:
            raise InterpError(f"FeaturePatching.values must be [pos, feature], got shape {tuple(self.values.shape)}.")
        n_pos, n_features = self.values.shape
        if tuple(self.error.shape) != (n_pos,) or tuple(self.together.shape) != (n_pos,):
            raise InterpError(f"FeaturePatching needs one error and one together value per position ({n_pos}).")
        if len(self.positions) != n_pos or len(self.features) != n_features:
            raise InterpError(
                f"FeaturePatching.values is {n_pos} x {n_features}, but names {len(self.positions)} positions and "
                f"{len(self.features)} features."
            )
        if self.attribution is not None and self.attribution.shape != self.values.shape:
            raise InterpError(
                f"FeaturePatching.attribution has shape {tuple(self.attribution.shape)}, expected that of values "
                f"{tuple(self.values.shape)}."
            )

    def top(self, n: int = 10) -> list[tuple[str, int, float]]:
        """The ``n`` (position, feature) cells of largest |effect|: (position label, feature, value)."""
        flat = self.values.flatten()
        order = flat.abs().argsort(descending=True)[:n]
        width = self.values.shape[1]
        return [(self.positions[int(i) // width], self.features[int(i) % width], float(flat[i])) for i in order]

    def figure(self):
        """A heatmap of positions x features (and the error and the whole site), the exact effects."""
        import plotly.graph_objects as go

        columns = [f"f{feature}" for feature in self.features] + ["error", "all (site)"]
        grid = torch.cat([self.values, self.error[:, None], self.together[:, None]], dim=1).float()
        estimates = self.attribution if self.attribution is not None else torch.full_like(self.values, float("nan"))
        estimate_grid = torch.cat([estimates.float(), torch.full((grid.shape[0], 2), float("nan"))], dim=1)
        hover = [
            [
                f"<b>{column}</b> at {position}<br>exact change: {float(grid[row, col]):+.4g}"
                + (
                    f"<br>attribution estimate: {float(estimate_grid[row, col]):+.4g}"
                    if not torch.isnan(estimate_grid[row, col])
                    else ""
                )
                for col, column in enumerate(columns)
            ]
            for row, position in enumerate(self.positions)
        ]
        figure = go.Figure(
            go.Heatmap(
                z=grid.tolist(),
                x=columns,
                y=list(self.positions),
                text=hover,
                hovertemplate="%{text}<extra></extra>",
                colorscale="RdBu",
                zmid=0,
                colorbar={"title": "change"},
            )
        )
        figure.update_layout(
            title=(
                f"Features of {self.site} patched one at a time: change of {self.metric_name} ({self.direction}; "
                f"clean {self.clean_metric:.3g}, corrupt {self.corrupt_metric:.3g})"
            ),
            xaxis={"title": "feature (latent index)", "type": "category"},
            yaxis={"title": "position: token (clean→corrupt)", "type": "category", "autorange": "reversed"},
        )
        return figure


@dataclass(frozen=True)
class _Cell:
    """One patched run: a feature (``column``), the error (-1) or everything (-2), at row ``row`` of the result."""

    row: int
    position: int
    column: int


ERROR, TOGETHER = -1, -2


def feature_patching(
    model,
    dictionary: SparseDictionary,
    clean: Prompts,
    corrupt: Prompts,
    metric: Metric,
    features: Sequence[int] | None = None,
    positions: Sequence[int] | None = None,
    direction: str = "denoising",
    top: int = DEFAULT_TOP_FEATURES,
    batch_size: int | None = None,
    progress: bool = True,
) -> FeaturePatching:
    """Patch each of ``features`` at each of ``positions`` from the source run into the target run, one at a time.

    Args:
        model: a TransformerBridge the dictionary was trained on.
        dictionary: an autoencoder or a transcoder naming its site(s).
        clean / corrupt: prompts (strings, a PromptSet, or token ids ``[prompt, pos]``) of one token length.
        metric: ``metric(logits) -> scalar or [n_prompts]`` (averaged), e.g. ``interp.metrics.logit_diff``.
        features: latent indices; default: the ``top`` features of largest |attribution| (``feature_attribution``)
            at any chosen position.
        positions: position indices (negative from the end); default: every position.
        direction: "denoising" (clean into the corrupt run) or "noising" (corrupt into the clean run).
        batch_size: the most rows (patched runs x prompts) per forward; default from a 1 GiB budget.
    """
    check_direction(direction)
    if batch_size is not None and batch_size < 1:
        raise InterpError(
            f"batch_size must be at least 1 (rows of patched runs x prompts per forward), got {batch_size}."
        )
    if features is None and top < 1:
        raise InterpError(f"top must be at least 1 (features patched when none are given), got {top}.")
    dictionary.check_usable(model)
    check_tokenizer(metric, getattr(model, "tokenizer", None))
    clean_tokens, corrupt_tokens = pair_tokens(model, clean, corrupt)
    n_prompts, n_pos = clean_tokens.shape
    rows = _positions(positions, n_pos)
    chosen = None if features is None else _features(dictionary, features)
    attribution = _attribution(model, dictionary, clean_tokens, corrupt_tokens, metric, direction, chosen is None)
    if chosen is None:
        assert attribution is not None  # computed when no features are given; raises if it cannot be
        largest = attribution.values[rows].abs().amax(0)
        chosen = largest.argsort(descending=True)[: min(top, dictionary.d_sae)].tolist()
    source, target = (clean_tokens, corrupt_tokens) if direction == "denoising" else (corrupt_tokens, clean_tokens)
    device = model_device(model)
    with torch.no_grad():
        read, write = dictionary.site, dictionary.write_site
        source_in, source_out, source_logits = capture_read_write(model, source.to(device), read, write)
        target_in, target_out, target_logits = capture_read_write(model, target.to(device), read, write)
        source_metric = float(reduce_metric(metric, source_logits))
        baseline = float(reduce_metric(metric, target_logits))
        patches = _Patches(dictionary, source_in, source_out, target_in, target_out)
        effects = torch.zeros(len(rows), len(chosen) + 2)  # the features' columns, then the error's and the site's
        cells = [
            _Cell(row, position, column)
            for row, position in enumerate(rows)
            for column in [*chosen, ERROR, TOGETHER]
            if patches.changes(position, column)
        ]
        per_forward = max(1, (batch_size or default_max_rows(model, n_prompts, n_pos, n_pos)) // n_prompts)
        chunks = [cells[start : start + per_forward] for start in range(0, len(cells), per_forward)]
        columns = {feature: index for index, feature in enumerate(chosen)} | {
            ERROR: len(chosen),
            TOGETHER: len(chosen) + 1,
        }
        hook = written_through(write)
        for chunk in tqdm(
            chunks, desc=f"patching features of {write} ({len(cells)} runs)", unit="batch", disable=not progress
        ):
            logits = _patched_logits(model, target.to(device), hook, patches, chunk)
            for copy, cell in enumerate(chunk):
                value = reduce_metric(metric, logits[copy * n_prompts : (copy + 1) * n_prompts])
                effects[cell.row, columns[cell.column]] = float(value) - baseline
    clean_metric, corrupt_metric = (source_metric, baseline) if direction == "denoising" else (baseline, source_metric)
    labels = position_labels(model, clean_tokens[0], corrupt_tokens[0])
    return FeaturePatching(
        values=effects[:, : len(chosen)],
        error=effects[:, len(chosen)],
        together=effects[:, len(chosen) + 1],
        attribution=None if attribution is None else attribution.values[rows][:, chosen],
        features=tuple(int(feature) for feature in chosen),
        positions=tuple(labels[position] for position in rows),
        site=write,
        direction=direction,
        metric_name=metric_name(metric),
        clean_metric=clean_metric,
        corrupt_metric=corrupt_metric,
        n_prompts=int(n_prompts),
        provenance=Provenance(model_id=model_id(model), weights_hash=dictionary.weights_hash, hooks=(write,)),
    )


class _Patches:
    """What each cell adds at the write site, ``[prompt, d_out]``: a feature's, the error's or the whole difference."""

    def __init__(self, dictionary: SparseDictionary, source_in, source_out, target_in, target_out) -> None:
        self.W_dec = dictionary.W_dec.float().to(source_out.device)
        source_codes, target_codes = dictionary.encode(source_in.float()), dictionary.encode(target_in.float())
        self.delta_codes = source_codes - target_codes  # [prompt, pos, d_sae]
        source_error = source_out.float() - source_codes @ self.W_dec
        target_error = target_out.float() - target_codes @ self.W_dec
        self.delta_error = source_error - target_error  # [prompt, pos, d_out]
        self.site_changes = (source_out != target_out).flatten(2).any(-1).any(0)  # [pos]

    def changes(self, position: int, column: int) -> bool:
        if column == ERROR:
            return bool((self.delta_error[:, position] != 0).any())
        if column == TOGETHER:
            return bool(self.site_changes[position])
        return bool((self.delta_codes[:, position, column] != 0).any())

    def delta(self, position: int, column: int) -> Tensor:
        if column == ERROR:
            return self.delta_error[:, position]
        if column == TOGETHER:  # every feature's patch and the error's, summed (= x_source - x_target)
            return self.delta_codes[:, position] @ self.W_dec + self.delta_error[:, position]
        return self.delta_codes[:, position, column, None] * self.W_dec[column]


def _patched_logits(model, target: Tensor, hook_name: str, patches: _Patches, chunk: list[_Cell]) -> Tensor:
    """One forward of the target prompts once per cell of ``chunk``, each with its own patch added at its position."""
    n_prompts = target.shape[0]
    tokens = einops.repeat(target, "prompt pos -> (cell prompt) pos", cell=len(chunk))
    deltas = torch.cat([patches.delta(cell.position, cell.column) for cell in chunk])  # [(cell prompt), d_out]
    at = torch.tensor([cell.position for cell in chunk], device=tokens.device).repeat_interleave(n_prompts)
    batch_rows = torch.arange(tokens.shape[0], device=tokens.device)

    def add(acts: Tensor, hook: Any = None) -> Tensor:
        out = acts.clone()
        out[batch_rows, at] += deltas.to(out.device, out.dtype)
        return out

    with model.hooks(fwd_hooks=[(hook_name, add)]):
        return model(tokens)


def _attribution(model, dictionary, clean, corrupt, metric, direction, needed: bool):
    """``feature_attribution`` for the same cells; None when the metric carries no gradient and it is not needed."""
    try:
        return feature_attribution(model, dictionary, clean, corrupt, metric, direction=direction)
    except InterpError as error:
        if "carries no gradient" not in str(error):
            raise
        if needed:
            raise InterpError(f"{error} Without features=[...], feature patching ranks the features by it.") from error
        return None


def _features(dictionary: SparseDictionary, features: Sequence[int]) -> list[int]:
    chosen = [int(feature) for feature in features]
    if not chosen:
        raise InterpError("give at least one feature (a latent index), or features=None for the top ones.")
    bad = [feature for feature in chosen if not 0 <= feature < dictionary.d_sae]
    if bad:
        raise InterpError(f"feature {bad[0]} does not exist; the dictionary has latents 0..{dictionary.d_sae - 1}.")
    if len(set(chosen)) != len(chosen):
        raise InterpError(f"features {chosen} repeat a latent; give each once.")
    return chosen


def _positions(positions: Sequence[int] | None, n_pos: int) -> list[int]:
    if positions is None:
        return list(range(n_pos))
    chosen = [int(position) for position in positions]
    if not chosen:
        raise InterpError("give at least one position, or positions=None for every position.")
    bad = [position for position in chosen if not -n_pos <= position < n_pos]
    if bad:
        raise InterpError(f"position {bad[0]} does not exist; the prompts are {n_pos} tokens long.")
    absolute = [position % n_pos for position in chosen]
    if len(set(absolute)) != len(absolute):
        raise InterpError(f"positions {chosen} name a position twice; give each once.")
    return absolute
