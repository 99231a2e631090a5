"""What the probes read: h_last from an ActivationStore or a tensor, and one label per prompt.

Every check that protects a probe from silently wrong input lives here: the store's layout
(``positions="last"``), labels aligned with the store's prompts, two classes, and a store made
by the model the probe was trained on.
"""

import math
from collections.abc import Sequence
from typing import Any

import torch
from jaxtyping import Bool, Float
from torch import Tensor

from interp.data import PromptSet
from interp.errors import InterpError
from interp.plots import short
from interp.probes.solver import compute_dtype, standardise_layer
from interp.progress import tqdm
from interp.provenance import Provenance
from interp.sites import expand_sites, parse_site, site_name

TENSOR_SOURCE = "activations tensor"  # the model_id of probes trained on a tensor


# ---- sites -----------------------------------------------------------------------------------


def hook_layer(hook: str) -> int:
    """The block index of a hook; -1 for sites outside the blocks (the embeddings)."""
    layer = parse_site(hook).layer
    return -1 if layer is None else layer


def layer_label(hook: str) -> str:
    """A short axis label: the layer number for resid_post, the shorthand elsewhere ('embed', 'L0 resid_pre')."""
    site = parse_site(hook)
    if site.layer is None:
        return site.kind
    return str(site.layer) if site.kind == "resid_post" else f"L{site.layer} {site.kind}"


def is_resid_post(hook: str) -> bool:
    return parse_site(hook).kind == "resid_post"


# ---- activations -----------------------------------------------------------------------------


def check_store(store: Any) -> None:
    """Raise unless ``store`` is an ActivationStore of h_last (cached with positions='last')."""
    missing = [name for name in ("hooks", "manifest", "prompts", "provenance") if not hasattr(store, name)]
    if missing:
        raise InterpError(
            f"expected an ActivationStore or a [layer, prompt, d_model] tensor, got {type(store).__name__}. "
            "Open a store with interp.ActivationStore.open(DIR)."
        )
    positions = store.manifest.get("positions")
    if positions != "last":
        raise InterpError(
            f"the store was cached with positions={positions!r}; probes read h_last. "
            "Cache again with positions='last' (interp cache ... --positions last)."
        )


def select_hooks(store: Any, layers: str | Sequence[int | str]) -> tuple[str, ...]:
    """The store hooks to probe: ``"all"`` is the embedding (if cached) then every resid_post, in depth order.

    In a store of feature sites (``interp.dictionaries.encode_store``), ``"all"`` is its feature sites, in depth order.
    """
    cached = tuple(store.hooks)
    if layers == "all":
        resid = sorted((h for h in cached if is_resid_post(h)), key=hook_layer)
        features = sorted((h for h in cached if parse_site(h).is_features), key=hook_layer)
        if not resid and features:
            return tuple(features)
        if not resid:
            raise InterpError(
                f"the store has no resid_post hooks (cached: {', '.join(cached) or 'none'}); "
                "cache with --hooks resid_post to probe every layer, or pass layers=[hook names]."
            )
        embed = [h for h in ("hook_embed", site_name("resid_pre", 0)) if h in cached][:1]
        return tuple(embed + resid)
    names: list[str] = []
    for item in [layers] if isinstance(layers, (str, int)) else layers:
        if isinstance(item, str):
            names.extend(expand_sites([item], int(store.manifest.get("n_layers", hook_layer(item) + 1))))
        else:
            names.append(site_name("resid_post", int(item)))
    for name in names:
        if name not in cached:
            raise InterpError(
                f"hook {name!r} is not in the store (cached: {', '.join(cached)}); "
                "pick cached layers or cache them first."
            )
    return tuple(dict.fromkeys(names))


def read_hook(store: Any, hook: str) -> Float[Tensor, "prompt d_model"]:
    """``store[hook]``, checked to be h_last ``[prompt, d_model]``."""
    if hook not in tuple(store.hooks):
        raise InterpError(
            f"the store has no activations at {hook!r} (cached: {', '.join(store.hooks)}); "
            "cache that hook (interp cache ... --hooks resid_post) before applying the probe."
        )
    acts = store[hook]
    if acts.ndim != 2:
        raise InterpError(
            f"store[{hook!r}] has shape {tuple(acts.shape)}; probes need h_last [prompt, d_model]. "
            "Cache with positions='last'."
        )
    return acts


def check_finite(acts: Tensor, what: str) -> None:
    """Raise naming the first NaN or infinite entry: a probe on it would fail deep in the solver, or fit garbage.

    A NaN or an infinity makes any sum non-finite, so a finite sum clears the tensor in one vectorised pass
    (4 ms for 12 x 4096 x 768 float32 where ``isfinite`` takes 180 ms); only a non-finite sum (an entry is,
    or finite entries overflowed) is searched entry by entry.
    """
    if not acts.is_floating_point() or math.isfinite(
        float(acts.sum(dtype=torch.float32 if acts.itemsize < 4 else acts.dtype))
    ):
        return
    bad = ~torch.isfinite(acts)
    if bool(bad.any()):
        index = tuple(int(i) for i in bad.nonzero()[0])
        raise InterpError(f"{what} hold {int(bad.sum())} NaN or infinite values (the first at index {index}); "
                          "recompute them (a float16 overflow? cache in float32) or drop those prompts.")  # fmt: skip


def stack_store(
    store: Any, hooks: Sequence[str], progress: bool, order: Tensor | None = None
) -> tuple[Tensor, Tensor, Tensor]:
    """h_last of every hook in one ``[layer, prompt, d_model]`` tensor (rows in ``order``), standardised.

    Read one hook at a time from the memory-mapped shards, so the peak is one copy of the stack.
    Returns the tensor, and the per-layer centre and spread it was standardised with.
    """
    first = read_hook(store, hooks[0])
    n, d = first.shape
    x = torch.empty(len(hooks), n, d, dtype=compute_dtype(len(hooks) * n * d))
    centre = torch.empty(len(hooks), d, dtype=x.dtype)
    spread = torch.empty_like(centre)
    for i, hook in enumerate(tqdm(hooks, desc="reading h_last", disable=not progress, leave=False)):
        acts = first if i == 0 else read_hook(store, hook)
        if tuple(acts.shape) != (n, d):
            raise InterpError(
                f"store[{hook!r}] has shape {tuple(acts.shape)}, but {hooks[0]} has {(n, d)}; probe them separately."
            )
        check_finite(acts, f"store[{hook!r}]")
        centre[i], spread[i] = standardise_layer(acts, order, out=x[i])
    return x, centre, spread


def from_tensor(
    data: Tensor, layers: str | Sequence[int | str], hooks: Sequence[str] | None, texts: Sequence[str] | None
) -> tuple[Tensor, tuple[str, ...], tuple[str, ...]]:
    """Check ``[layer, prompt, d_model]`` activations; return them (layers selected), hook names and texts."""
    if data.ndim != 3:
        raise InterpError(
            f"activations have shape {tuple(data.shape)}; train_probes needs [layer, prompt, d_model] "
            "(stack h_last per layer), or an ActivationStore cached with positions='last'."
        )
    n_layer, n_prompt, _ = data.shape
    check_finite(data, "the activations")
    names = tuple(hooks) if hooks is not None else tuple(site_name("resid_post", i) for i in range(n_layer))
    if len(names) != n_layer:
        raise InterpError(
            f"hooks names {len(names)} layers but the activations have {n_layer}; give one hook name per layer."
        )
    for name in names:
        parse_site(name)  # raises with close matches for names that are not hook sites
    if layers != "all":
        index = []
        for item in [layers] if isinstance(layers, (str, int)) else layers:
            if isinstance(item, str):
                if item not in names:
                    raise InterpError(f"hook {item!r} is not among the activations' hooks {list(names)}.")
                index.append(names.index(item))
            elif not 0 <= int(item) < n_layer:
                raise InterpError(f"layer {item} is out of range for activations with {n_layer} layers.")
            else:
                index.append(int(item))
        data, names = data[index], tuple(names[i] for i in index)
    prompt_texts = tuple(texts) if texts is not None else tuple(f"prompt {i}" for i in range(n_prompt))
    if len(prompt_texts) != n_prompt:
        raise InterpError(f"texts has {len(prompt_texts)} entries but the activations hold {n_prompt} prompts.")
    return data, names, prompt_texts


def check_same_model(provenance: Provenance, store: Any) -> None:
    """Raise if ``store`` was cached with another model than the one a probe was trained on."""
    check_store(store)
    trained, here = provenance.weights_hash, store.provenance.weights_hash
    if trained and here and trained != here:
        raise InterpError(
            f"this probe was trained on activations of model {provenance.model_id!r} (weights hash {trained[:12]}), "
            f"but the store holds activations of model {store.provenance.model_id!r} (weights hash {here[:12]}). "
            "Cache these prompts with the probe's model, or train a probe on this store."
        )


# ---- labels ----------------------------------------------------------------------------------


def labels_for(
    labels: Any, n: int, texts: Sequence[str], source: str, records: Sequence[dict] | None = None
) -> list[str]:
    """One label per prompt, as strings, from a record field name, a PromptSet or a sequence.

    ``texts`` are the prompts the labels must align with (``source`` names them in errors);
    ``records`` are their records, for a field name.
    """
    field_name = None
    if isinstance(labels, str):
        field_name = labels
        if records is None:
            raise InterpError(
                f"labels={labels!r} names a record field, but the prompts in {source} have no records; "
                "pass one label per prompt."
            )
        if not any(labels in record for record in records):
            fields = sorted({key for record in records for key in record})
            raise InterpError(
                f"label field {labels!r} is missing from the prompt records in {source} (fields: {', '.join(fields)}). "
                "Pass --label-field (labels=) naming one of them, or relabel the prompt file and cache again."
            )
        values = [record.get(labels) for record in records]
    elif isinstance(labels, PromptSet):
        if list(labels.texts) != list(texts):
            where = next((i for i, (a, b) in enumerate(zip(labels.texts, texts)) if a != b), min(len(labels), n))
            raise InterpError(
                f"the labels' prompt set ({len(labels)} prompts) is misaligned with the {n} prompts in {source}: "
                f"first difference at position {where}. Pass labels from the prompt set that was cached "
                "(store.prompts), in order."
            )
        values = labels.labels
    elif isinstance(labels, Tensor):
        values = labels.tolist()
    elif isinstance(labels, Sequence):
        values = list(labels)
    else:
        raise InterpError(
            f"labels must be a record field name, a PromptSet or one label per prompt, got {type(labels).__name__}."
        )
    if len(values) != n:
        raise InterpError(
            f"labels has {len(values)} entries but there are {n} prompts in {source}; labels must align one-to-one "
            "with the prompts, in order (misaligned labels silently corrupt a probe)."
        )
    missing = [i for i, value in enumerate(values) if value is None or (isinstance(value, float) and math.isnan(value))]
    if missing:
        what = f"field {field_name!r}" if field_name else "label"
        raise InterpError(
            f"{len(missing)} of {n} prompts have no {what} (first: #{missing[0]} {short(texts[missing[0]], 60)!r}). "
            "Label every prompt, or drop unlabelled ones from the prompt set before caching."
        )
    return [str(value) for value in values]


def encode_labels(values: Sequence[str], positive: str | None) -> tuple[Bool[Tensor, " prompt"], tuple[str, str], bool]:
    """(y, (negative name, positive name), one_vs_rest). Default positive: the later of two sorted labels."""
    distinct = sorted(set(values))
    if positive is not None:
        positive = str(positive)
        if positive not in distinct:
            raise InterpError(f"positive={positive!r} is not a label; labels present: {distinct}.")
        others = [value for value in distinct if value != positive]
        if not others:
            raise single_class_error(positive, len(values))
        one_vs_rest = len(others) > 1
        names = (f"not {positive}" if one_vs_rest else others[0], positive)
    elif len(distinct) == 1:
        raise single_class_error(distinct[0], len(values))
    elif len(distinct) > 2:
        raise InterpError(
            f"found {len(distinct)} labels ({', '.join(distinct)}); probes are binary. "
            "Pass positive=LABEL (--positive) for one-vs-rest, or keep two labels."
        )
    else:
        one_vs_rest, names = False, (distinct[0], distinct[1])
    return torch.tensor([value == names[1] for value in values]), names, one_vs_rest


def single_class_error(label: str, n: int) -> InterpError:
    return InterpError(
        f"all {n} prompts have label {label!r}; a probe needs two classes. "
        "Add prompts of the other class (e.g. benign next to harmful) and cache again."
    )
