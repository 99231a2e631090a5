"""A dictionary's features used on a live model: ablate some, steer with one, or splice the dictionary in whole.

Hooks act on every forward inside the ``with`` block, generation included. At the dictionary's site (an
autoencoder) or its output site (a transcoder, computed from its input site in the same forward):

- ``ablated_features(model, dictionary, features)``: ``x - sum_f code_f(x) W_dec[f]``, each feature's
  own contribution removed and everything else, the dictionary's error included, kept (``splice=True``:
  the dictionary's reconstruction without those features replaces ``x``, its error dropped);
- ``steered(model, dictionary, feature, alpha)``: ``x + alpha W_dec[feature]`` at every position;
- ``spliced(model, dictionary)``: the reconstruction replaces ``x`` (what ``evaluate_dictionary`` measures).

Positions before ``skip_first`` (the BOS, which dictionaries are not trained on) are left as they are. A dictionary
at ``hook_resid_mid`` is applied at its layer's ``hook_attn_out`` (to ``resid_pre + attn_out``, the same stream):
TransformerBridge's ``hook_resid_mid`` feeds only the MLP, so an edit there would not reach later layers.
"""

from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from typing import Any

import torch
from torch import Tensor

from interp.dictionaries.dictionary import SparseDictionary
from interp.errors import InterpError
from interp.patching.inputs import WRITTEN_THROUGH
from interp.sites import parse_site, site_name


@contextmanager
def ablated_features(
    model: Any, dictionary: SparseDictionary, features: Sequence[int], splice: bool = False, skip_first: int = 1
) -> Iterator[Any]:
    """Remove ``features``' contributions at the dictionary's (output) site; see the module docstring."""
    chosen = _features(dictionary, features)
    rows = dictionary.W_dec[chosen]

    def edit(x: Tensor, source: Tensor) -> Tensor:
        codes = dictionary.encode(source.float())
        if splice:
            codes[..., chosen] = 0
            return dictionary.decode(codes, source.float())
        return x.float() - codes[..., chosen] @ rows.to(x.device)

    with _hooked(model, dictionary, edit, skip_first):
        yield model


@contextmanager
def steered(model: Any, dictionary: SparseDictionary, feature: int, alpha: float, skip_first: int = 1) -> Iterator[Any]:
    """Add ``alpha`` times ``feature``'s decoder row at the dictionary's (output) site, at every position."""
    (chosen,) = _features(dictionary, [feature])
    if not torch.isfinite(torch.tensor(float(alpha))):
        raise InterpError(f"alpha must be a finite number, got {alpha!r}.")
    row = dictionary.W_dec[chosen]

    def edit(x: Tensor, source: Tensor) -> Tensor:
        return x.float() + alpha * row.to(x.device)

    with _hooked(model, dictionary, edit, skip_first):
        yield model


@contextmanager
def spliced(model: Any, dictionary: SparseDictionary, skip_first: int = 1) -> Iterator[Any]:
    """Replace the (output) site's activation by the dictionary's reconstruction (prediction) of it."""

    def edit(x: Tensor, source: Tensor) -> Tensor:
        return dictionary(source.float())

    with _hooked(model, dictionary, edit, skip_first):
        yield model


def _features(dictionary: SparseDictionary, features: Sequence[int]) -> list[int]:
    chosen = [int(f) for f in features]
    if not chosen:
        raise InterpError("give at least one feature (a latent index).")
    bad = [f for f in chosen if not 0 <= f < dictionary.d_sae]
    if bad:
        raise InterpError(f"feature {bad[0]} does not exist; the dictionary has latents 0..{dictionary.d_sae - 1}.")
    return chosen


def written_through(site: str) -> str:
    """Where an edit of ``site`` is made so that the whole model reads it: ``site`` itself, except ``resid_mid``
    (its layer's ``attn_out``; see the module docstring)."""
    try:
        parsed = parse_site(site)
    except InterpError:
        return site
    if parsed.layer is not None and parsed.kind in WRITTEN_THROUGH:
        return site_name(WRITTEN_THROUGH[parsed.kind], parsed.layer)
    return site


@contextmanager
def _hooked(model: Any, dictionary: SparseDictionary, edit, skip_first: int) -> Iterator[None]:
    """Apply ``edit(x, source)`` at the write site from ``skip_first`` on (``source``: the read site's activation)."""
    dictionary.check_usable(model)
    read, write = dictionary.site, dictionary.write_site
    seen: dict[str, Tensor] = {}

    def remember(acts: Tensor, hook: Any = None) -> Tensor:
        seen["source"] = acts
        return acts

    def replace(acts: Tensor, hook: Any = None) -> Tensor:
        source = seen.pop("source", acts) if read != write else acts
        out = acts.clone()
        out[:, skip_first:] = edit(acts[:, skip_first:], source[:, skip_first:]).to(acts.dtype)
        return out

    def replace_through_attn_out(attn_out: Tensor, hook: Any = None) -> Tensor:  # an autoencoder at resid_mid
        pre = seen.pop("pre")
        mid = pre[:, skip_first:] + attn_out[:, skip_first:]
        out = attn_out.clone()
        out[:, skip_first:] = (edit(mid, mid) - pre[:, skip_first:]).to(attn_out.dtype)
        return out

    def remember_pre(acts: Tensor, hook: Any = None) -> Tensor:
        seen["pre"] = acts
        return acts

    through, layer = written_through(write), parse_site(write).layer if write else None
    if through != write and read == write and layer is not None:
        hooks = [(site_name("resid_pre", layer), remember_pre), (through, replace_through_attn_out)]
    else:
        hooks = ([(read, remember)] if read != write else []) + [(write, replace)]
    with model.hooks(fwd_hooks=hooks):
        yield
