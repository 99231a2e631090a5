"""Probing on a dictionary's features: ``encode_store`` writes the codes of a store's activations as a store.

A dictionary reading site ``S`` turns each stored activation ``h`` (``[prompt, d_in]`` in a store cached with
``positions="last"``: h_last) into its codes ``f = dictionary.encode(h)`` (``[prompt, d_sae]``). The feature store
holds them at the feature site ``S + ".features"`` (``interp.sites.feature_site``), with the source store's prompts,
labels, tokens and model record, so ``train_probes`` reads it as it reads any store:

>>> features = encode_store(store, dictionary, "runs/features_L3")                        # doctest: +SKIP
>>> dense = train_probes(features, "label")                # a probe on all d_sae codes    # doctest: +SKIP
>>> sparse = train_probes(features, "label", top_features=8)   # on the 8 top features  # doctest: +SKIP
>>> sparse.features                                        # which ones, per layer        # doctest: +SKIP

Its provenance (``store.provenance.extra["derived"]``) names the source store and the dictionary: its site, shape,
activation, the model it was trained on and a hash of its tensors.
"""

import os
from pathlib import Path
from typing import Any

import torch
from torch import Tensor

from interp.dictionaries.dictionary import SparseDictionary
from interp.errors import InterpError
from interp.sites import feature_site
from interp.store.activations import ActivationStore
from interp.store.derive import derive_store

DERIVATION = "sparse dictionary codes"  # store.provenance.extra["derived"]["kind"] of a feature store


def encode_store(
    store: ActivationStore,
    dictionary: SparseDictionary | str | os.PathLike,
    out: str | os.PathLike,
) -> ActivationStore:
    """Write the codes ``dictionary.encode(store[site])`` at the dictionary's site as a new store at ``out``.

    The new store's one hook is the feature site ``site + ".features"``, ``[prompt, d_sae]`` float32 for a
    last-token store (``[prompt, pos, d_sae]`` for one of several positions), shard for shard the source's;
    prompts, labels, tokens, readout and model record are the source's, and the manifest records the dictionary
    (``store.provenance.extra["derived"]``). It is written into a hidden directory beside ``out`` and renamed
    into place when complete.

    Args:
        store: a complete activation store holding the dictionary's site.
        dictionary: a ``SparseDictionary``, or the directory of one (``load_dictionary``; it is recorded).
        out: the directory of the new store; it must not exist, or be empty.
    """
    source = None
    if not isinstance(dictionary, SparseDictionary):
        from interp.dictionaries.formats import load_dictionary

        source = str(dictionary)
        dictionary = load_dictionary(Path(dictionary))
    site = _check_inputs(store, dictionary)
    features = feature_site(site)

    def shard(index: int) -> dict[str, Tensor]:
        with torch.no_grad():
            codes = dictionary.encode(store.read_shard(index, site).float())
        return {features: codes.float().contiguous()}

    return derive_store(store, Path(out), (features,), shard, dictionary_record(dictionary, source))


def dictionary_record(dictionary: SparseDictionary, source: str | None = None) -> dict[str, Any]:
    """What identifies ``dictionary`` in a feature store's provenance: its site, shape, activation, model and a hash
    of its tensors (``hash``: blake2b over W_enc, b_enc, W_dec, b_dec, threshold, W_skip, in that order)."""
    return {
        "kind": DERIVATION,
        "dictionary": {
            "site": dictionary.site,
            "output_site": dictionary.output_site,
            "kind": dictionary.kind,
            "activation": dictionary.activation,
            "k": dictionary.k,
            "d_in": dictionary.d_in,
            "d_sae": dictionary.d_sae,
            "model_id": dictionary.model_id,
            "weights_hash": dictionary.weights_hash,
            "hash": dictionary.content_hash(),
            **({"source": source} if source is not None else {}),
        },
    }


def _check_inputs(store: Any, dictionary: SparseDictionary) -> str:
    """The dictionary's site, once the store holds it, at the dictionary's width, from the dictionary's model."""
    if not isinstance(store, ActivationStore):
        raise InterpError(
            f"encode_store reads an ActivationStore, got {type(store).__name__}; open one with "
            "interp.ActivationStore.open(DIR), or call dictionary.encode(tensor) on activations in memory."
        )
    site = dictionary.site
    if not site:
        raise InterpError("the dictionary names no site; set it (dictionary.with_provenance(site=...)).")
    if site not in store.hooks:
        raise InterpError(
            f"the store at {store.root} has no activations at {site!r}, the dictionary's site (it holds "
            f"{', '.join(store.hooks)}); cache that site (interp cache ... --hooks {site}) first."
        )
    dictionary.check_weights(store.weights_hash, store.model_id, where=f"the model of the store at {store.root}")
    width = store.shape(site)[-1]
    if width != dictionary.d_in:
        raise InterpError(
            f"store[{site!r}] has width {width}, but the dictionary reads vectors of width {dictionary.d_in}; "
            "use a dictionary trained on this site of this model."
        )
    return site
