"""Attribution patching: a first-order estimate of every cell's patched metric from one backward pass."""

from collections.abc import Callable, Sequence
from typing import Any

import einops
import torch
from torch import Tensor

from interp import defaults
from interp.errors import InterpError
from interp.metrics import Metric, check_tokenizer, metric_name, reduce_metric
from interp.patching.engine import _capture
from interp.patching.inputs import (
    Prompts,
    check_direction,
    check_hooks,
    check_resid_mid,
    extra_reads,
    model_device,
    pair_tokens,
    write_name,
)
from interp.patching.result import Direction, PatchingResult, build_result
from interp.sites import PATCH_SITES, PATTERN_SITES, POSITION_SITES, layer_sites, patch_site_label, resolve_patch_site

ALL_SITES: tuple[str, ...] = tuple(PATCH_SITES)


def _attribution_delta(kind: str, by_position: bool, delta: Tensor) -> Tensor:
    """Sum ``(source - target) * grad`` over everything inside one cell (prompts included)."""
    if kind in POSITION_SITES:  # [prompt, pos, d_model]
        return einops.reduce(delta, "prompt pos d_model -> pos", "sum") if by_position else delta.sum()
    if kind in PATTERN_SITES:  # [prompt, head, query_pos, key_pos]
        return (
            einops.reduce(delta, "prompt head pos key_pos -> pos head", "sum")
            if by_position
            else einops.reduce(delta, "prompt head pos key_pos -> head", "sum")
        )
    return (
        einops.reduce(delta, "prompt pos head d_head -> pos head", "sum")
        if by_position
        else einops.reduce(delta, "prompt pos head d_head -> head", "sum")
    )


def attribution_patching_sites(
    model,
    clean: Prompts,
    corrupt: Prompts,
    metric: Metric,
    sites: Sequence[str] = ALL_SITES,
    by_position: bool = defaults.PATCH_BY_POSITION,
    direction: Direction = defaults.PATCH_DIRECTION,
) -> dict[str, PatchingResult]:
    """Attribution patching of many sites at once: two forwards and one backward.

    Each cell's value is the first-order estimate ``baseline + sum((source - target) * grad)``
    of the patched metric, with the gradient of the (prompt-averaged) metric taken on the
    target run. Returns ``{site: PatchingResult}`` with the same axes as ``activation_patching``.

    >>> results = attribution_patching_sites(model, clean, corrupt, metric,
    ...                                      sites=["resid_pre", "attn_head_out"])  # doctest: +SKIP
    >>> results["attn_head_out"].top(5)  # doctest: +SKIP
    """
    check_direction(direction)
    sites = [sites] if isinstance(sites, str) else list(sites)
    if not sites:
        raise InterpError("give at least one site to attribute, e.g. sites=['resid_pre'].")
    kinds = list(dict.fromkeys(resolve_patch_site(site) for site in sites))
    check_tokenizer(metric, getattr(model, "tokenizer", None))
    clean_tokens, corrupt_tokens = pair_tokens(model, clean, corrupt)
    n_layers = int(model.cfg.n_layers)
    names_by_kind = {kind: layer_sites(kind, n_layers) for kind in kinds}
    reads = list(
        dict.fromkeys([*(name for names in names_by_kind.values() for name in names), *extra_reads(kinds, n_layers)])
    )
    written = {
        name: write_name(kind, layer) for kind, names in names_by_kind.items() for layer, name in enumerate(names)
    }
    writes = list(dict.fromkeys(written.values()))
    check_hooks(model, reads + writes)
    source_tokens, target_tokens = (
        (clean_tokens, corrupt_tokens) if direction == "denoising" else (corrupt_tokens, clean_tokens)
    )
    with torch.no_grad():
        source_logits, source_acts, _ = _capture(model, source_tokens, reads)
        source_metric = float(reduce_metric(metric, source_logits))
    target_acts: dict[str, Tensor] = {}
    probes: dict[str, Tensor] = {}

    def read(name: str) -> Callable:
        def hook(act: Tensor, hook: Any) -> None:
            target_acts[name] = act.detach()

        return hook

    def probe(name: str) -> Callable:
        # The gradient is taken at a zero added to what the hook returns, i.e. to the tensor the
        # model goes on with: the tensor a hook receives is not always that one (TransformerBridge's
        # q/k/v/z hooks receive a reshaped copy that carries no gradient).
        def hook(act: Tensor, hook: Any) -> Tensor:
            probes[name] = torch.zeros_like(act, requires_grad=True)
            return act + probes[name]

        return hook

    hooks = [(name, read(name)) for name in reads] + [(name, probe(name)) for name in writes]
    with torch.enable_grad():
        target_logits = model.run_with_hooks(target_tokens.to(model_device(model)), fwd_hooks=hooks)
        value = reduce_metric(metric, target_logits)
        if not value.requires_grad:
            raise InterpError(
                f"metric {metric_name(metric)} is not differentiable in the logits (its value carries no gradient), "
                "which attribution patching needs. Avoid argmax, comparisons and .item() in the metric; "
                "a logit difference or log-probability works."
            )
        grads = torch.autograd.grad(value, [probes[name] for name in writes], allow_unused=True)
    unused = [name for name, grad in zip(writes, grads) if grad is None]
    if unused:
        raise InterpError(
            f"writing {unused[0]} does not reach the logits on this model, so it has no gradient to attribute "
            "with; choose another site."
        )
    grad_of = dict(zip(writes, grads))
    if "resid_mid" in kinds:
        check_resid_mid(target_acts, n_layers)
    baseline = float(value.detach())
    clean_metric, corrupt_metric = (source_metric, baseline) if direction == "denoising" else (baseline, source_metric)
    results: dict[str, PatchingResult] = {}
    with torch.no_grad():
        for kind in kinds:
            names = names_by_kind[kind]
            deltas = [
                _attribution_delta(kind, by_position, (source_acts[name] - target_acts[name]) * grad_of[written[name]])
                for name in names
            ]
            values = baseline + torch.stack(deltas).float()
            results[patch_site_label(kind)] = build_result(
                model,
                kind,
                by_position,
                values,
                "attribution",
                direction,
                metric,
                clean_metric,
                corrupt_metric,
                clean_tokens,
                corrupt_tokens,
                names,
            )
    return results


def attribution_patching(
    model,
    clean: Prompts,
    corrupt: Prompts,
    metric: Metric,
    site: str = defaults.PATCH_SITE,
    by_position: bool = defaults.PATCH_BY_POSITION,
    direction: Direction = defaults.PATCH_DIRECTION,
) -> PatchingResult:
    """Attribution patching of one site (see ``attribution_patching_sites`` for several at once).

    >>> approx = attribution_patching(model, clean, corrupt, metric, site="attn_head_out",
    ...                               by_position=False)  # doctest: +SKIP
    """
    return next(
        iter(attribution_patching_sites(model, clean, corrupt, metric, [site], by_position, direction).values())
    )
