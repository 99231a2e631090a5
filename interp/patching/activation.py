"""Activation patching: the metric with each cell of a site patched from the source run into the target run."""

import torch

from interp import defaults
from interp.errors import InterpError
from interp.metrics import Metric, check_tokenizer, reduce_metric
from interp.patching.engine import (
    _capture,
    _cells,
    _differences,
    _Engine,
    _plan,
    _reads_last_position_only,
    _run_chunk,
    default_max_rows,
    metric_columns,
)
from interp.patching.inputs import (
    WRITTEN_THROUGH,
    Prompts,
    check_direction,
    check_hooks,
    check_resid_mid,
    extra_reads,
    pair_tokens,
)
from interp.patching.result import Direction, PatchingResult, build_result
from interp.progress import tqdm
from interp.sites import layer_sites, patch_site_label, resolve_patch_site


def activation_patching(
    model,
    clean: Prompts,
    corrupt: Prompts,
    metric: Metric,
    site: str = defaults.PATCH_SITE,
    by_position: bool = defaults.PATCH_BY_POSITION,
    direction: Direction = defaults.PATCH_DIRECTION,
    batch_size: int | None = None,
    progress: bool = True,
    fast_path: bool = True,
) -> PatchingResult:
    """Patch every cell of ``site`` from the source run into the target run; one metric value per cell.

    Args:
        model: a TransformerBridge (``interp.load_model``).
        clean / corrupt: prompts (PromptSet, strings) or token ids ``[prompt, pos]``; pairs in the
            same order, all of one token length.
        metric: ``metric(logits [n_prompts, pos, d_vocab]) -> scalar or [n_prompts]`` (averaged),
            e.g. ``interp.metrics.logit_diff(answer, wrong)``.
        site: resid_pre, resid_mid, resid_post, attn_out, mlp_out (cells: layer[, pos]) or
            attn_head_out, attn_head_value, attn_head_pattern, attn_head_query, attn_head_key
            (cells: layer[, pos], head; pattern positions are query positions).
        by_position: one cell per position; otherwise each cell patches every position.
        direction: "denoising" (clean into corrupt) or "noising" (corrupt into clean).
        batch_size: the most rows (cells x prompts) per forward; default from a 1 GiB budget
            (``interp.defaults.PATCH_MEMORY_BUDGET_BYTES``).
        fast_path: skip the layers and positions a cell cannot change where that reproduces a
            plain forward (checked on the model; if not, warns and falls back). False: full batched
            forwards only. ``result.fast_path`` / ``result.fallback_reason`` say which ran, and
            ``result.shortcuts`` which further savings (e.g. only the vocabulary columns the metric reads).

    >>> result = activation_patching(model, clean, corrupt, metric, site="attn_head_out",
    ...                              by_position=False)  # doctest: +SKIP
    >>> result.top(3)  # doctest: +SKIP
    """
    kind = resolve_patch_site(site)
    check_direction(direction)
    if batch_size is not None and batch_size < 1:
        raise InterpError(f"batch_size must be at least 1 (rows of cells x prompts per forward), got {batch_size}.")
    check_tokenizer(metric, getattr(model, "tokenizer", None))
    clean_tokens, corrupt_tokens = pair_tokens(model, clean, corrupt)
    n_layers = int(model.cfg.n_layers)
    names = layer_sites(kind, n_layers)
    extra = extra_reads([kind], n_layers)
    check_hooks(model, [*names, *extra])
    n_prompts, n_pos = clean_tokens.shape
    source_tokens, target_tokens = (
        (clean_tokens, corrupt_tokens) if direction == "denoising" else (corrupt_tokens, clean_tokens)
    )
    resid_names = layer_sites("resid_pre", n_layers)
    not_tried = ""  # why the fast path is not even tried (no warning: nothing was expected of it)
    if not fast_path:
        not_tried = "fast_path=False was passed"
    elif not hasattr(model, "blocks"):
        not_tried = "the model has no .blocks (not a TransformerBridge), so no layers can be skipped"
    fast = not not_tried
    with torch.no_grad():
        source_logits, source_acts, _ = _capture(model, source_tokens, names)
        target_logits, target_acts, kv_cache = _capture(
            model, target_tokens, [*names, *resid_names, *extra], with_kv=fast
        )
        source_metric = float(reduce_metric(metric, source_logits))
        baseline = float(reduce_metric(metric, target_logits))
        sources = [source_acts[name] for name in names]
        if kind in WRITTEN_THROUGH:  # the attn_out that makes the residual after attention the source's
            check_resid_mid(target_acts, n_layers)
            sources = [source - target_acts[pre] for source, pre in zip(sources, resid_names)]
        differences = [_differences(kind, source_acts[name], target_acts[name]) for name in names]
        shape, cells = _cells(kind, by_position, differences)
        values = torch.full(shape, baseline, dtype=torch.float32)
        last_logits = _reads_last_position_only(metric, target_logits, baseline)
        columns = metric_columns(metric, target_logits, baseline) if last_logits and fast else None
        engine = _Engine(
            model,
            target_tokens,
            target_logits,
            [target_acts[name] for name in resid_names],
            kv_cache,
            fast,
            last_logits,
            columns,
        )
        del target_acts, source_acts
        max_rows = (
            int(batch_size)
            if batch_size is not None
            else default_max_rows(model, n_prompts, n_pos, 1 if engine.keep else n_pos)
        )
        chunks = _plan(kind, cells, engine, max(1, max_rows // n_prompts))
        # Each cell's metric reads the target run's logits where the patch cannot reach (before the
        # chunk's first position), and the patched logits from there on.
        patched = target_logits.clone()
        for chunk in tqdm(
            chunks, desc=f"patching {patch_site_label(kind)} ({len(cells)} cells)", unit="batch", disable=not progress
        ):
            logits = _run_chunk(kind, chunk, engine, sources)
            start = engine.logits_from(chunk.start)
            for copy, cell in enumerate(chunk.cells):
                patched[:, start:] = logits[copy]
                values[cell.index] = float(reduce_metric(metric, patched))
            patched[:, start:] = target_logits[:, start:]
    clean_metric, corrupt_metric = (source_metric, baseline) if direction == "denoising" else (baseline, source_metric)
    fallback = not_tried or engine.fallback
    return build_result(
        model,
        kind,
        by_position,
        values,
        "activation",
        direction,
        metric,
        clean_metric,
        corrupt_metric,
        clean_tokens,
        corrupt_tokens,
        names,
        engine.fast,
        fallback,
        tuple(sorted(engine.ran)),
    )
