"""Activation patching and attribution patching, many cells per forward pass.

Activation patching asks which activation carries a behaviour: run the model on one input
(the *target* run), splice in one activation from another input (the *source* run), and see
how far a metric moves. ``denoising`` patches clean activations into the corrupt run (does
this cell restore the behaviour?); ``noising`` patches corrupt activations into the clean run
(does this cell break it?). A *cell* is one (layer[, position][, head]) of a site.

``transformer_lens.patching`` runs one full forward per cell. Here many cells share one
batched forward (``n_cells x n_prompts`` rows, each cell's patch confined to its own rows), and
a cell is run only from where it can change anything: from its layer (earlier blocks are
skipped and the target run's residual is fed in) and from its position (earlier positions are
causally unchanged: their keys and values come from the target run's KV cache, their logits
from the target run). A cell whose source and target activations are identical (e.g. positions
before the first token where clean and corrupt differ) is not run at all: it equals the
unpatched metric. The fast path checks itself against a plain forward on first use and falls
back to full batched forwards where an architecture does not support it. Where the metric reads
only the last position, only that position is unembedded; where it reads only a few vocabulary
columns (a logit difference), only those are, and the last block's MLP runs at the last position
only (``result.shortcuts`` names the savings a run used; each is checked like the fast path).

Patches land where the model goes on with them: ``resid_mid`` is written through ``attn_out``
(TransformerBridge's ``hook_resid_mid`` is the MLP's input only, so writing it would leave the
residual that bypasses the MLP unpatched), and attribution takes its gradients at a zero added to
each hook's output (the tensor a bridge's q/k/v/z hook receives carries no gradient).

Metric contract: ``metric(logits)`` gets the logits ``[n_prompts, pos, d_vocab]`` of one
patched cell and returns a scalar, or one value per prompt, which is averaged (see
``interp.metrics``). The value of a cell is that scalar. All prompts must tokenize to the same
length (positions are compared across prompts), and each corrupt prompt to the same length as
its clean prompt.

>>> from interp.metrics import logit_diff                                           # doctest: +SKIP
>>> metric = logit_diff(" mary", " john", tokenizer=model.tokenizer)                # doctest: +SKIP
>>> result = activation_patching(model, clean, corrupt, metric, site="resid_pre")   # doctest: +SKIP
>>> result.values.shape, result.axes                                                # doctest: +SKIP
(torch.Size([12, 16]), ('layer', 'pos'))
>>> result.figure().show(); result.save("patch/resid_pre")                          # doctest: +SKIP
>>> heads = attribution_patching(model, clean, corrupt, metric, site="attn_head_out",
...                              by_position=False)                                 # doctest: +SKIP

Layout: ``result`` (PatchingResult, its figure, save / load), ``inputs`` (prompts to token pairs,
checks, where each site is written), ``engine`` (the batched fast path and its cost model),
``shortcuts`` (the metric-columns and last-block-MLP savings),
``activation`` and ``attribution`` (the public functions). Site names live in ``interp.sites``.
"""

from interp.patching.activation import activation_patching
from interp.patching.attribution import ALL_SITES, attribution_patching, attribution_patching_sites
from interp.patching.inputs import Prompts
from interp.patching.result import DIRECTIONS, METHODS, RESULT_FILES, Cell, Direction, Method, PatchingResult
from interp.sites import PATCH_SITES
from interp.sites import patch_site_label as site_label
from interp.sites import resolve_patch_site as resolve_site

__all__ = [
    "ALL_SITES",
    "DIRECTIONS",
    "METHODS",
    "PATCH_SITES",
    "RESULT_FILES",
    "Cell",
    "Direction",
    "Method",
    "PatchingResult",
    "Prompts",
    "activation_patching",
    "attribution_patching",
    "attribution_patching_sites",
    "resolve_site",
    "site_label",
]
