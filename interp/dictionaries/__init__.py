"""Sparse dictionaries: TopK sparse autoencoders and transcoders, trained from an activation store, in the formats
the field shares.

- ``dictionary``: ``SparseDictionary``, the formulas (encode, decode) of TopK, ReLU and JumpReLU dictionaries.
- ``formats``: ``save_dictionary`` / ``load_dictionary`` in sparsify's and SAELens's directory formats.
- ``rows``: a store's every real token, shuffled across shards, reproducibly (what training reads).
- ``attribution``: ``feature_attribution``, attribution patching over a dictionary's features.
- ``probing``: ``encode_store``, a dictionary's codes of a store's activations as a store of its feature site, for
  probes (dense, or k-sparse with ``train_probes(..., top_features=k)``).
- ``patching``: ``feature_patching``, exact activation patching of features (a feature is a site), one feature at a
  position at a time, with the error term and the whole site as rows of their own.
- ``direct``: ``feature_logit_attribution``, each feature's direct effect on the logit difference through the
  residual stream (the final norm's scale frozen), with the decoder bias, the error and a skip connection as rows.
- ``interventions``: ``ablated_features``, ``steered``, ``spliced``: features used on a live model (hooks).
- ``training``: ``train_dictionary``, sparsify's ``SparseCoder`` trained from a store, resumable; ``log``: its curves.

>>> dictionary = train_dictionary(store, "blocks.3.hook_resid_post", "runs/sae_L3", k=32)   # doctest: +SKIP
>>> codes = dictionary.encode(store["blocks.3.hook_resid_post"])                           # doctest: +SKIP
>>> load_dictionary("runs/sae_L3")                # or a sparsify / SAELens directory        # doctest: +SKIP
"""

from typing import TYPE_CHECKING

from interp.lazy import lazy_exports

_EXPORTS = {
    "SparseDictionary": "interp.dictionaries.dictionary",
    "save_dictionary": "interp.dictionaries.writing",
    "load_dictionary": "interp.dictionaries.formats",
    "TrainingRows": "interp.dictionaries.rows",
    "TrainingSettings": "interp.dictionaries.settings",
    "train_dictionary": "interp.dictionaries.training",
    "train": "interp.dictionaries.training",
    "load": "interp.dictionaries.formats",
    "TrainingLog": "interp.dictionaries.log",
    "FeatureAttribution": "interp.dictionaries.attribution",
    "feature_attribution": "interp.dictionaries.attribution",
    "FeaturePatching": "interp.dictionaries.patching",
    "feature_patching": "interp.dictionaries.patching",
    "FeatureLogitAttribution": "interp.dictionaries.direct",
    "feature_logit_attribution": "interp.dictionaries.direct",
    "ablated_features": "interp.dictionaries.interventions",
    "steered": "interp.dictionaries.interventions",
    "spliced": "interp.dictionaries.interventions",
    "encode_store": "interp.dictionaries.probing",
}
__getattr__, __dir__ = lazy_exports(__name__, _EXPORTS, globals())

if TYPE_CHECKING:
    from interp.dictionaries.attribution import FeatureAttribution, feature_attribution
    from interp.dictionaries.dictionary import SparseDictionary
    from interp.dictionaries.direct import FeatureLogitAttribution, feature_logit_attribution
    from interp.dictionaries.formats import load, load_dictionary
    from interp.dictionaries.interventions import ablated_features, spliced, steered
    from interp.dictionaries.log import TrainingLog
    from interp.dictionaries.patching import FeaturePatching, feature_patching
    from interp.dictionaries.probing import encode_store
    from interp.dictionaries.rows import TrainingRows
    from interp.dictionaries.settings import TrainingSettings
    from interp.dictionaries.training import train, train_dictionary
    from interp.dictionaries.writing import save_dictionary

__all__ = [
    "FeatureAttribution",
    "FeatureLogitAttribution",
    "FeaturePatching",
    "SparseDictionary",
    "TrainingLog",
    "TrainingRows",
    "TrainingSettings",
    "ablated_features",
    "encode_store",
    "feature_attribution",
    "feature_logit_attribution",
    "feature_patching",
    "load",
    "load_dictionary",
    "save_dictionary",
    "spliced",
    "steered",
    "train",
    "train_dictionary",
]
