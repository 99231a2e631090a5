"""Recognition vs generation after pruning: is harm still linearly readable once the weights that generate it are
zeroed?

Linear probes on h_last (the last token of each prompt, chat-formatted by default) at ``hook_embed``
and every ``blocks.{l}.hook_resid_post``, harmful vs benign: (a) trained on the unpruned model and
applied *frozen* to the pruned model's activations, (b) *retrained* on the pruned model. Held-out
AUROC per layer (one held-out split for all), with a random mask of the same size per matrix as the
control. Orgad et al. 2026 report that recognition survives the pruning of generation. The weights
are restored bit-exactly after every mask, and the weights hash checked.

>>> result = recognition_after_pruning(model, mask, harmful, benign, random_mask=random_mask(mask))  # doctest: +SKIP
>>> result.frozen_auroc[0], result.retrained_auroc[0]   # the mask; row 1: the random control      # doctest: +SKIP

On disk (``RecognitionResult.save(dir)``)::

    recognition.safetensors   unpruned_auroc [layer], frozen_auroc and retrained_auroc [mask, layer] (float64)
    recognition.json          the masks (description, size), layer labels, the AUROC tables, provenance
    recognition.html          the figure
    probe/                    the probes trained on the unpruned model (``interp.probes.load``)
"""

import dataclasses
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import plotly.graph_objects as go
import torch
from jaxtyping import Float
from torch import Tensor

from interp import defaults, plots
from interp.data import PromptSet
from interp.errors import InterpError
from interp.io import ResultFormat
from interp.model import model_id
from interp.model.weights import weights_hash
from interp.probes import HOLDOUT, ProbeResult, auroc, train_probes
from interp.provenance import Provenance, hash_json
from interp.pruning.apply import pruned
from interp.pruning.masks import PruningMask
from interp.pruning.weights import decoder_weights
from interp.results import Result
from interp.sites import layer_sites
from interp.store import capture_activations

FORMAT = ResultFormat(
    kind="recognition",
    version=1,
    name="recognition-after-pruning result",
    meta_file="recognition.json",
    tensors_file="recognition.safetensors",
    create="recognition_after_pruning(model, mask, harmful, benign).save(DIR) or `interp run "
    "circuits/real_harm_pruning/real_harm_recognition.toml --out DIR`",
    load="RecognitionResult.load(DIR)",
)
FIGURE_FILE, PROBE_DIR = "recognition.html", "probe"
LABELS = ("benign", "harmful")  # (negative, positive) class of the probes
MASK_TITLES = {"mask": "pruning mask", "random": "random control"}


@dataclass(frozen=True)
class RecognitionResult(Result):
    """Held-out AUROC per layer of h_last probes on the unpruned model, and after each mask (frozen and retrained)."""

    FORMAT = FORMAT
    FIGURE_FILE = FIGURE_FILE

    probe: ProbeResult  # trained on the unpruned model, saved in PROBE_DIR; its held-out split is every AUROC's
    masks: tuple[str, ...]  # "mask", then "random" when a control was given
    mask_descriptions: tuple[str, ...]
    mask_counts: tuple[int, ...]  # weights zeroed
    mask_fractions: tuple[float, ...]  # share of the weights the mask covers
    unpruned_auroc: Float[Tensor, " layer"]
    frozen_auroc: Float[Tensor, "mask layer"]
    retrained_auroc: Float[Tensor, "mask layer"]
    provenance: Provenance

    def __post_init__(self) -> None:
        n_mask, n_layer = len(self.masks), len(self.probe.hooks)
        if not n_mask or not all(
            len(values) == n_mask for values in (self.mask_descriptions, self.mask_counts, self.mask_fractions)
        ):
            raise InterpError(f"RecognitionResult needs one description, count and fraction per mask ({n_mask} masks).")
        for name, shape in (
            ("unpruned_auroc", (n_layer,)),
            ("frozen_auroc", (n_mask, n_layer)),
            ("retrained_auroc", (n_mask, n_layer)),
        ):
            if tuple(getattr(self, name).shape) != shape:
                raise InterpError(
                    f"RecognitionResult.{name} has shape {tuple(getattr(self, name).shape)}, expected {shape}."
                )

    @property
    def hooks(self) -> tuple[str, ...]:
        return self.probe.hooks

    @property
    def layer_labels(self) -> tuple[str, ...]:
        return self.probe.layer_labels

    @property
    def n_heldout(self) -> int:
        return int((self.probe.fold == HOLDOUT).sum())

    @property
    def counts(self) -> dict[str, int]:
        """Prompts per class."""
        return {name: int((self.probe.y == index).sum()) for index, name in enumerate(self.probe.label_names)}

    def table(self) -> dict[str, list]:
        """``{"layer": labels, "unpruned": [...], "MASK_frozen": [...], "MASK_retrained": [...]}`` (AUROC per layer)."""
        rows: dict[str, list] = {"layer": list(self.layer_labels), "unpruned": self.unpruned_auroc.tolist()}
        for i, name in enumerate(self.masks):
            rows[f"{name}_frozen"], rows[f"{name}_retrained"] = (
                self.frozen_auroc[i].tolist(),
                self.retrained_auroc[i].tolist(),
            )
        return rows

    def summary(self) -> str:
        """A plain-text table: held-out AUROC per layer, unpruned and under each mask (frozen / retrained probes)."""
        heads = [f"{name} {kind}" for name in self.masks for kind in ("frozen", "retrained")]
        rows = [f"{'layer':>6}  {'unpruned':>8}  " + "  ".join(f"{head:>16}" for head in heads)]
        for j, label in enumerate(self.layer_labels):
            values = [
                float(getattr(self, f"{kind}_auroc")[i, j])
                for i in range(len(self.masks))
                for kind in ("frozen", "retrained")
            ]
            rows.append(
                f"{label:>6}  {float(self.unpruned_auroc[j]):8.3f}  " + "  ".join(f"{value:16.3f}" for value in values)
            )
        masks = "; ".join(
            f"{name}: {count:,} weights ({100 * fraction:.3g}%)"
            for name, count, fraction in zip(self.masks, self.mask_counts, self.mask_fractions)
        )
        rows.append(f"held-out AUROC ({self.n_heldout} held-out of {len(self.probe.texts)} prompts); {masks}")
        return "\n".join(rows)

    def figure(self) -> go.Figure:
        """Held-out AUROC vs layer: unpruned, then each mask with the unpruned probes (solid) and retrained probes
        (dotted)."""
        x = list(self.layer_labels)
        series = [("unpruned model", self.unpruned_auroc, "#1f77b4", "solid", "")]
        colors = {"mask": "#d62728", "random": "#7f7f7f"}
        for i, name in enumerate(self.masks):
            title, note = (
                MASK_TITLES.get(name, name),
                f"<br>{plots.short(self.mask_descriptions[i], 90)}<br>{100 * self.mask_fractions[i]:.3g}% of the "
                "weights zeroed",
            )
            series.append(
                (f"{title}, unpruned probes (frozen)", self.frozen_auroc[i], colors.get(name, "#2ca02c"), "solid", note)
            )
            series.append(
                (f"{title}, probes retrained", self.retrained_auroc[i], colors.get(name, "#2ca02c"), "dot", note)
            )
        figure = go.Figure()
        for label, values, color, dash, note in series:
            hover = [
                f"{hook}<br>{label}<br>held-out AUROC {float(v):.3f} ({self.n_heldout} prompts){note}"
                for hook, v in zip(self.hooks, values)
            ]
            figure.add_trace(go.Scatter(x=x, y=values.tolist(), name=label, mode="lines+markers",
                                        line=dict(color=color, dash=dash), text=hover, hoverinfo="text"))  # fmt: skip
        figure.add_hline(
            y=0.5, line=dict(color="grey", dash="dash"), annotation_text="chance", annotation_position="top left"
        )
        negative, positive = self.probe.label_names
        plots.style(figure,
                    f"Is {positive!r} still recognised after pruning? Held-out AUROC of h_last probes — "
                    f"{self.provenance.model_id}",
                    "site (embed, then resid_post of each layer)",
                    f"held-out AUROC, {positive} vs {negative}")  # fmt: skip
        figure.update_xaxes(type="category")
        figure.update_layout(
            yaxis=dict(range=[0, 1.02]),
            height=600,
            margin=dict(b=170),
            legend=dict(orientation="h", x=0, y=-0.25, yanchor="top"),
        )
        return figure

    def meta_extra(self) -> dict:
        return {
            "hooks": list(self.hooks), "n_heldout": self.n_heldout, "counts": self.counts, "auroc": self.table(),
            "frozen": "the probes trained on the unpruned model, applied to the pruned model's h_last",
            "retrained": "probes trained on the pruned model's h_last (the same held-out split)",
        }  # fmt: skip


def check_mask(model, mask: PruningMask, what: str = "the mask") -> None:
    """Raise a one-line InterpError unless every weight ``mask`` names is a decoder weight of ``model`` of the same
    shape."""
    shapes = {weight.key: tuple(weight.shape) for weight in decoder_weights(model)}
    missing = [key for key in mask.keys if key not in shapes]
    wrong = [key for key in mask.keys if key in shapes and tuple(mask[key].shape) != shapes[key]]
    if missing or wrong:
        problem = (f"it names {len(missing)} weights this model does not have "
                   f"(first: {missing[0]!r}; the model has e.g. {next(iter(shapes))!r})" if missing
                   else f"{wrong[0]} has shape {tuple(mask[wrong[0]].shape)}, "
                        f"the model's {shapes[wrong[0]]}")  # fmt: skip
        made_for = f"model {mask.model_id!r}" if mask.model_id else "another model"
        raise InterpError(f"{what} was made for {made_for}, not this model {model_id(model)!r}: {problem}. "
                          "Use a mask saved by a pruning run of this model "
                          f"({model_id(model)}; save_masks = true writes OUT/masks/LABEL.safetensors), "
                          "or load the model it was made for.")  # fmt: skip


def recognition_after_pruning(
    model,
    mask: PruningMask,
    harmful: PromptSet | Sequence[str],
    benign: PromptSet | Sequence[str],
    random_mask: PruningMask | None = None,
    chat_template: bool = True,
    batch_size: int = defaults.CACHE_BATCH_SIZE,
    cv: int = defaults.PROBE_CV,
    holdout: float = defaults.PROBE_HOLDOUT,
    C: float = defaults.PROBE_C,
    seed: int = defaults.PROBE_SEED,
    progress: bool = True,
) -> RecognitionResult:
    """Probes on h_last at every layer, unpruned and under ``mask`` (and ``random_mask``): frozen and retrained AUROC.

    Args:
        mask: the weights to zero (e.g. a set-difference mask, ``PruningMask.load(PATH)``).
        harmful, benign: the requests (raw user text; wrapped in the chat template unless
            ``chat_template=False``); labelled "harmful" (the positive class) and "benign".
        random_mask: the control, as many weights per matrix as ``mask`` (``interp.pruning.random_mask(mask)``).
        batch_size: prompts per forward pass; cv, holdout, C, seed: as ``train_probes``.

    The weights are restored after each mask; a changed weights hash afterwards raises.
    """
    masks = {"mask": mask} | ({"random": random_mask} if random_mask is not None else {})
    for name, found in masks.items():
        if not isinstance(found, PruningMask):
            raise InterpError(f"{name} must be a PruningMask (PruningMask.load(PATH)), got {type(found).__name__}.")
        check_mask(model, found, f"the {MASK_TITLES[name]}")
    if random_mask is not None and random_mask.counts() != mask.counts():
        where = " in all, but not in every matrix" if random_mask.n_pruned == mask.n_pruned else ""
        raise InterpError(f"the random control zeroes {random_mask.n_pruned:,} weights, "
                          f"the mask {mask.n_pruned:,}{where}; a control needs as many per matrix: "
                          "interp.pruning.random_mask(mask, seed).")  # fmt: skip
    prompts = labelled(harmful, benign)
    if chat_template:
        if not getattr(model.tokenizer, "chat_template", None):
            raise InterpError(
                "the tokenizer has no chat template; pass chat_template=False (chat_template = false) to "
                "use the prompts as they are."
            )
        prompts = prompts.apply_chat_template(model.tokenizer)
    hooks = ("hook_embed", *layer_sites("resid_post", int(model.cfg.n_layers)))

    def activations() -> Float[Tensor, "layer prompt d_model"]:
        acts = capture_activations(
            model, prompts, hooks=hooks, positions="last", batch_size=batch_size, dtype=torch.float32
        )
        return torch.stack([acts[hook] for hook in hooks])

    def fit(acts: Tensor) -> ProbeResult:
        return train_probes(acts, prompts.labels, hooks=hooks, texts=prompts.texts, positive=LABELS[1], cv=cv,
                            holdout=holdout, C=C, seed=seed, progress=progress)  # fmt: skip

    before = weights_hash(model)
    unpruned = activations()
    probe = fit(unpruned)
    y, held = probe.y.bool(), probe.fold == HOLDOUT

    def frozen(acts: Tensor) -> Float[Tensor, " layer"]:  # the unpruned probes on these activations' held-out prompts
        return torch.stack([auroc(probe.logits(acts[i][held], layer=hook), y[held]) for i, hook in enumerate(hooks)])

    unpruned_auroc, frozen_rows, retrained_rows = frozen(unpruned), [], []
    for name, found in masks.items():
        with pruned(model, found):
            acts = activations()
        if weights_hash(model) != before:
            raise InterpError(f"the model's weights differ from before the {MASK_TITLES[name]} was applied "
                              "(weights hash); they were not restored exactly: reload the model.")  # fmt: skip
        retrained = fit(acts)
        if not torch.equal(retrained.fold, probe.fold):
            raise InterpError(
                "the retrained probes got another held-out split than the unpruned ones; "
                "pass the same seed and holdout."
            )
        frozen_rows.append(frozen(acts))
        retrained_rows.append(retrained.holdout_auroc.double())
    settings = dict(probe.provenance.extra.get("probe", {}))
    described = {
        name: {"description": found.description, "n_pruned": found.n_pruned, "fraction": found.fraction}
        for name, found in masks.items()
    }
    provenance = Provenance(model_id=model_id(model), weights_hash=before,
                            dataset_hash=hash_json({"texts": prompts.texts, "labels": prompts.labels}),
                            hooks=hooks, seed=seed,
                            extra={"recognition": {"masks": described, "chat_template": chat_template,
                                                   "batch_size": batch_size, "probe": settings}})  # fmt: skip
    unpruned_probe = dataclasses.replace(probe, provenance=dataclasses.replace(provenance, extra={"probe": settings}))
    return RecognitionResult(
        probe=unpruned_probe,  # the unpruned model's probes
        masks=tuple(masks), mask_descriptions=tuple(found.description for found in masks.values()),
        mask_counts=tuple(found.n_pruned for found in masks.values()),
        mask_fractions=tuple(found.fraction for found in masks.values()),
        unpruned_auroc=unpruned_auroc, frozen_auroc=torch.stack(frozen_rows),
        retrained_auroc=torch.stack(retrained_rows), provenance=provenance,
    )  # fmt: skip


def labelled(harmful: Any, benign: Any) -> PromptSet:
    """The harmful prompts, then the benign ones, each record labelled with its class; raises if either is empty."""
    sets = []
    for name, prompts in (("harmful", harmful), ("benign", benign)):
        if isinstance(prompts, str) or not isinstance(prompts, (PromptSet, Sequence)):
            raise InterpError(f"{name} must be a PromptSet or a list of request strings, got {type(prompts).__name__}.")
        if not len(prompts):
            raise InterpError(f"{name} holds no prompts; the probes need both classes (harmful and benign requests).")
        records = prompts.records if isinstance(prompts, PromptSet) else PromptSet.from_texts(list(prompts)).records
        sets.append([{**record, "label": name} for record in records])
    return PromptSet(tuple(sets[0] + sets[1]), "harmful + benign")
