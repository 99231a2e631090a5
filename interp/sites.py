"""Activation-site names: the one module that knows them.

Every other module asks here for hook names. Names are transformer_lens canonical names
(``blocks.{layer}.hook_resid_post``, ``blocks.{layer}.attn.hook_z``, ...); shorthands such
as ``resid_post`` expand to that site in every layer.

A *feature site* names the codes of a sparse dictionary (SAE, transcoder) that reads a site: the
site's name plus ``.features`` (``blocks.3.hook_resid_post.features``: ``[..., d_sae]`` codes of
a dictionary reading ``blocks.3.hook_resid_post``). It has the layer of the site it encodes and
the kind ``"<kind> features"``, so whatever is labelled by layer and kind (probes, their figures)
reads it as it is. No model has a hook of that name: feature sites are written by
``interp.dictionaries.encode_store``, not captured.

>>> expand_sites(["resid_post"], n_layers=2)
('blocks.0.hook_resid_post', 'blocks.1.hook_resid_post')
>>> expand_sites(["blocks.1.attn.hook_z", "embed"], n_layers=2)
('blocks.1.attn.hook_z', 'hook_embed')
>>> parse_site("blocks.3.hook_mlp_out")
Site(layer=3, kind='mlp_out')
>>> resolve_patch_site("attn_head_out"), patch_site_label("z")
('z', 'attn_head_out')
>>> feature_site("blocks.3.hook_resid_post")
'blocks.3.hook_resid_post.features'
>>> parse_site("blocks.3.hook_resid_post.features")
Site(layer=3, kind='resid_post features')
>>> parse_site("blocks.3.hook_resid_post.features").encodes
Site(layer=3, kind='resid_post')
>>> expand_sites(["blocks.1.hook_mlp_out.features"], n_layers=2)
('blocks.1.hook_mlp_out.features',)
"""

import difflib
import re
from collections.abc import Iterable, Sequence
from dataclasses import dataclass

from interp.errors import InterpError

# shorthand -> per-layer template. Order is the order within one block.
LAYER_SITES: dict[str, str] = {
    "resid_pre": "blocks.{layer}.hook_resid_pre",
    "attn_in": "blocks.{layer}.ln1.hook_normalized",
    "q": "blocks.{layer}.attn.hook_q",
    "k": "blocks.{layer}.attn.hook_k",
    "v": "blocks.{layer}.attn.hook_v",
    "attn_scores": "blocks.{layer}.attn.hook_attn_scores",
    "pattern": "blocks.{layer}.attn.hook_pattern",
    "z": "blocks.{layer}.attn.hook_z",
    "attn_out": "blocks.{layer}.hook_attn_out",
    "resid_mid": "blocks.{layer}.hook_resid_mid",
    "mlp_in": "blocks.{layer}.ln2.hook_normalized",
    "mlp_pre": "blocks.{layer}.mlp.hook_pre",
    "mlp_post": "blocks.{layer}.mlp.hook_post",
    "mlp_out": "blocks.{layer}.hook_mlp_out",
    "resid_post": "blocks.{layer}.hook_resid_post",
}

# sites outside the blocks
GLOBAL_SITES: dict[str, str] = {
    "embed": "hook_embed",
    "pos_embed": "hook_pos_embed",
    "final_norm": "ln_final.hook_normalized",
}

# sites whose activations have a head axis: [batch, pos, head, d_head]
HEAD_SITES = frozenset({"q", "k", "v", "z"})
# sites with two position axes: [batch, head, query_pos, key_pos]
PATTERN_SITES = frozenset({"attn_scores", "pattern"})

# sites with one residual-width vector per position: [batch, pos, d_model]
POSITION_SITES = frozenset({"resid_pre", "resid_mid", "resid_post", "attn_out", "mlp_out"})

# Patching's names for the sites it can patch -> the shorthand (site kind) that holds each.
# The shorthands themselves ("z", "v", "pattern", ...) are accepted too.
PATCH_SITES: dict[str, str] = {
    "resid_pre": "resid_pre",
    "resid_mid": "resid_mid",
    "resid_post": "resid_post",
    "attn_out": "attn_out",
    "mlp_out": "mlp_out",
    "attn_head_out": "z",
    "attn_head_value": "v",
    "attn_head_pattern": "pattern",
    "attn_head_query": "q",
    "attn_head_key": "k",
}
PATCHABLE_SITES = POSITION_SITES | {"z", "v", "q", "k", "pattern"}
_KIND_TO_PATCH_SITE = {kind: name for name, kind in PATCH_SITES.items()}

# the suffix of a feature site (a dictionary's codes at the site before it), and the suffix of its kind
FEATURES_SUFFIX = ".features"
FEATURES_KIND = " features"

_LAYER_RE = re.compile(r"^blocks\.(\d+)\.(.+)$")
_TEMPLATE_TO_KIND = {template.split("{layer}.")[1]: kind for kind, template in LAYER_SITES.items()}


@dataclass(frozen=True)
class Site:
    """A parsed hook name: the layer (None for sites outside the blocks) and the shorthand kind."""

    layer: int | None
    kind: str  # a shorthand ("resid_post"), or "<shorthand> features" for a feature site

    @property
    def is_features(self) -> bool:
        """Whether this is a feature site: a dictionary's codes of the site ``encodes``."""
        return self.kind.endswith(FEATURES_KIND)

    @property
    def encodes(self) -> "Site":
        """The site whose activations a feature site's codes encode (the site itself for any other site)."""
        return Site(self.layer, self.kind.removesuffix(FEATURES_KIND)) if self.is_features else self

    @property
    def name(self) -> str:
        if self.is_features:
            return self.encodes.name + FEATURES_SUFFIX
        if self.layer is None:
            return GLOBAL_SITES[self.kind]
        return LAYER_SITES[self.kind].format(layer=self.layer)


def site_name(kind: str, layer: int) -> str:
    """The canonical hook name of shorthand ``kind`` in ``layer``: ``site_name("resid_post", 3)``.

    ``site_name("resid_post features", 3)`` is the feature site ``blocks.3.hook_resid_post.features``.
    """
    if kind.endswith(FEATURES_KIND) and kind.removesuffix(FEATURES_KIND) in LAYER_SITES:
        return site_name(kind.removesuffix(FEATURES_KIND), layer) + FEATURES_SUFFIX
    if kind not in LAYER_SITES:
        raise InterpError(f"unknown per-layer site {kind!r}. Known: {', '.join(LAYER_SITES)}.")
    return LAYER_SITES[kind].format(layer=layer)


def layer_sites(kind: str, n_layers: int) -> tuple[str, ...]:
    """The hook names of ``kind`` in every layer, in layer order."""
    return tuple(site_name(kind, layer) for layer in range(n_layers))


def parse_site(name: str) -> Site:
    """Parse a canonical hook name (or a feature site) into (layer, kind); raise with close matches if unknown."""
    if name.endswith(FEATURES_SUFFIX):
        encoded = parse_site(name.removesuffix(FEATURES_SUFFIX))
        if encoded.is_features:
            raise unknown_site_error(name, [encoded.name])
        return Site(layer=encoded.layer, kind=encoded.kind + FEATURES_KIND)
    match = _LAYER_RE.match(name)
    if match is not None and match.group(2) in _TEMPLATE_TO_KIND:
        return Site(layer=int(match.group(1)), kind=_TEMPLATE_TO_KIND[match.group(2)])
    for kind, template in GLOBAL_SITES.items():
        if name == template:
            return Site(layer=None, kind=kind)
    raise unknown_site_error(name, _all_names(n_layers=_guess_layers(name)))


def expand_sites(names: Iterable[str], n_layers: int) -> tuple[str, ...]:
    """Expand shorthands (``resid_post``, ``z``, ``embed``) and check full names.

    Returns canonical hook names without duplicates, in the order given. Feature sites
    (``blocks.3.hook_resid_post.features``) are accepted by their full name.
    """
    valid = _all_names(n_layers)
    expanded: list[str] = []
    for name in names:
        name = name.strip()
        if name in LAYER_SITES:
            expanded.extend(layer_sites(name, n_layers))
        elif name in GLOBAL_SITES:
            expanded.append(GLOBAL_SITES[name])
        elif name.removesuffix(FEATURES_SUFFIX) in valid:  # a full name, or the feature site of one
            expanded.append(name)
        else:
            raise unknown_site_error(name, valid)
    return tuple(dict.fromkeys(expanded))


def unknown_site_error(name: str, valid: Sequence[str]) -> InterpError:
    """An error naming the bad site and the closest valid ones."""
    candidates = list(valid) + list(LAYER_SITES) + list(GLOBAL_SITES)
    close = difflib.get_close_matches(name, candidates, n=3, cutoff=0.5)
    hint = f" Did you mean {', '.join(repr(c) for c in close)}?" if close else ""
    return InterpError(
        f"unknown hook site {name!r}.{hint} Use a shorthand ({', '.join(LAYER_SITES)}, "
        f"{', '.join(GLOBAL_SITES)}), a full name like 'blocks.0.hook_resid_post', or a dictionary's feature site "
        "like 'blocks.0.hook_resid_post.features'."
    )


def feature_site(site: str) -> str:
    """The feature site of a dictionary reading ``site``: its codes, ``site + ".features"``."""
    parsed = parse_site(site)
    if parsed.is_features:
        raise InterpError(f"{site!r} is already a feature site; a dictionary reads a model's site, not codes.")
    return parsed.name + FEATURES_SUFFIX


def resolve_patch_site(site: str) -> str:
    """The shorthand a patching site names (``"attn_head_out"`` -> ``"z"``); raise with close matches if unknown."""
    name = str(site).strip()
    if name in PATCH_SITES:
        return PATCH_SITES[name]
    if name in PATCHABLE_SITES:
        return name
    candidates = list(PATCH_SITES) + sorted(PATCHABLE_SITES)
    close = difflib.get_close_matches(name, candidates, n=3, cutoff=0.5)
    hint = f" Did you mean {', '.join(repr(c) for c in close)}?" if close else ""
    raise InterpError(
        f"unknown patching site {site!r}.{hint} Patchable sites: {', '.join(PATCH_SITES)} "
        f"(or the site kinds {', '.join(sorted(PATCHABLE_SITES))})."
    )


def patch_site_label(kind: str) -> str:
    """The patching name of a shorthand (``"z"`` -> ``"attn_head_out"``); other names unchanged."""
    return _KIND_TO_PATCH_SITE.get(kind, kind)


def _all_names(n_layers: int) -> list[str]:
    names = [template.format(layer=layer) for layer in range(n_layers) for template in LAYER_SITES.values()]
    return names + list(GLOBAL_SITES.values())


def _guess_layers(name: str) -> int:
    match = _LAYER_RE.match(name)
    return int(match.group(1)) + 1 if match else 1
