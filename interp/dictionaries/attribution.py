"""Which dictionary features carry a behaviour: attribution patching over the features of one dictionary.

For clean and corrupt prompts of one token length, the estimated change of the (prompt-averaged) metric when one
feature's activation at one position is patched from the source run into the target run (denoising: clean into
corrupt)::

    attribution[pos, f] = mean over prompts of (c_source[pos, f] - c_target[pos, f]) * (W_dec[f] . grad[pos])

with ``grad`` the metric's gradient at the dictionary's (output) site in the target run. The dictionary's error
term gets its own row (``error``), so that features + error add up exactly to the site's own attribution-patching
estimate (``(x_source - x_target) . grad``), which ``interp.patching.attribution_patching`` computes independently.
"""

from dataclasses import dataclass
from typing import Any

import torch
from jaxtyping import Float
from torch import Tensor

from interp.dictionaries.dictionary import SparseDictionary
from interp.dictionaries.interventions import written_through
from interp.errors import InterpError
from interp.io import ResultFormat
from interp.metrics import Metric, check_tokenizer, metric_name, reduce_metric
from interp.model import model_id
from interp.patching.inputs import Prompts, model_device, pair_tokens, position_labels
from interp.provenance import Provenance
from interp.results import Result

FORMAT = ResultFormat(
    kind="feature_attribution",
    version=1,
    name="feature attribution",
    meta_file="attribution.json",
    tensors_file="attribution.safetensors",
    create="interp.dictionaries.feature_attribution(model, dictionary, clean, corrupt, metric).save(DIR)",
    load="FeatureAttribution.load(DIR)",
)


@dataclass(frozen=True)
class FeatureAttribution(Result):
    """``values[pos, feature]``: each feature's estimated effect on the metric; ``error[pos]``: the error term's."""

    FORMAT = FORMAT
    FIGURE_FILE = "attribution.html"

    values: Float[Tensor, "pos feature"]
    error: Float[Tensor, " pos"]
    positions: tuple[str, ...]  # "3:fox" or "3:fox→dog" where the corrupt token differs
    site: str
    direction: str
    metric_name: str
    clean_metric: float
    corrupt_metric: float
    n_prompts: int
    provenance: Provenance | None = None

    def __post_init__(self) -> None:
        if self.values.ndim != 2 or tuple(self.error.shape) != (self.values.shape[0],):
            raise InterpError("FeatureAttribution needs values [pos, feature] and one error value per position.")
        if len(self.positions) != self.values.shape[0]:
            raise InterpError("FeatureAttribution.positions must name every position of values.")

    def top(self, n: int = 10) -> list[tuple[str, int, float]]:
        """The ``n`` (position, feature) cells of largest |attribution|: (position label, feature, value)."""
        flat = self.values.flatten()
        order = flat.abs().argsort(descending=True)[:n]
        width = self.values.shape[1]
        return [(self.positions[int(i) // width], int(i) % width, float(flat[i])) for i in order]

    def figure(self):
        import plotly.graph_objects as go

        cells = self.top(20)
        labels = [f"f{feature} @ {position}" for position, feature, _ in cells]
        figure = go.Figure(
            go.Bar(
                x=[value for _, _, value in cells],
                y=labels,
                orientation="h",
                hovertemplate="%{y}<br>attribution %{x:.4g}<extra></extra>",
            )
        )
        figure.update_layout(
            title=(
                f"Features of {self.site} by their estimated effect on {self.metric_name} ({self.direction}; clean "
                f"{self.clean_metric:.3g}, corrupt {self.corrupt_metric:.3g})"
            ),
            xaxis_title=f"estimated change of {self.metric_name}",
            yaxis={"autorange": "reversed"},
        )
        return figure


def feature_attribution(
    model, dictionary: SparseDictionary, clean: Prompts, corrupt: Prompts, metric: Metric, direction: str = "denoising"
) -> FeatureAttribution:
    """Attribution patching over ``dictionary``'s features (see the module docstring)."""
    if direction not in ("denoising", "noising"):
        raise InterpError(f"direction must be denoising or noising, got {direction!r}.")
    dictionary.check_usable(model)
    check_tokenizer(metric, getattr(model, "tokenizer", None))
    clean_tokens, corrupt_tokens = pair_tokens(model, clean, corrupt)
    source, target = (clean_tokens, corrupt_tokens) if direction == "denoising" else (corrupt_tokens, clean_tokens)
    read, write = dictionary.site, dictionary.write_site
    device = model_device(model)
    with torch.no_grad():
        source_in, source_out, source_logits = capture_read_write(model, source.to(device), read, write)
    target_in, target_out, _, grad, value = _run_with_grad(model, target.to(device), read, write, metric)
    delta_codes = dictionary.encode(source_in.float()) - dictionary.encode(target_in.float())  # [prompt, pos, d_sae]
    decoder_grad = torch.einsum("fd,bpd->bpf", dictionary.W_dec.float().to(grad.device), grad.float())
    values = (delta_codes * decoder_grad).sum(0)  # the gradient is of the prompt-averaged metric: summed over prompts
    site_total = ((source_out.float() - target_out.float()) * grad.float()).sum(-1).sum(0)
    error = site_total - values.sum(-1)
    source_metric = float(reduce_metric(metric, source_logits))
    clean_metric, corrupt_metric = (source_metric, value) if direction == "denoising" else (value, source_metric)
    positions = position_labels(model, clean_tokens[0], corrupt_tokens[0])
    return FeatureAttribution(
        values=values.detach().cpu(),
        error=error.detach().cpu(),
        positions=positions,
        site=write,
        direction=direction,
        metric_name=metric_name(metric),
        clean_metric=clean_metric,
        corrupt_metric=corrupt_metric,
        n_prompts=int(clean_tokens.shape[0]),
        provenance=Provenance(model_id=model_id(model), weights_hash=dictionary.weights_hash, hooks=(write,)),
    )


def capture_read_write(model, tokens: Tensor, read: str, write: str) -> tuple[Tensor, Tensor, Tensor]:
    """One forward of ``tokens``: the activations at the read site and the write site (the same for an autoencoder),
    and the logits."""
    seen: dict[str, Tensor] = {}

    def keep(name: str):
        def hook(acts: Tensor, hook: Any = None) -> Tensor:
            seen[name] = acts.detach()
            return acts

        return hook

    hooks = [(read, keep("in"))] + ([(write, keep("out"))] if write != read else [])
    with model.hooks(fwd_hooks=hooks):
        logits = model(tokens)
    return seen["in"], seen.get("out", seen["in"]), logits


def _run_with_grad(model, tokens: Tensor, read: str, write: str, metric: Metric):
    """The target run: the activations at ``read`` and ``write``, and the metric's gradient with respect to what is
    written at ``write`` (taken where the edit would be made: ``written_through``, so resid_mid's gradient is the
    whole stream's, not only the MLP's input's)."""
    seen: dict[str, Tensor] = {}

    def keep(*names: str):
        def hook(acts: Tensor, hook: Any = None) -> Tensor:
            for name in names:
                seen[name] = acts.detach()
            return acts

        return hook

    def probe(acts: Tensor, hook: Any = None) -> Tensor:
        seen["probe"] = torch.zeros_like(acts, requires_grad=True)
        return acts + seen["probe"]

    reads = [(read, keep("in", "out"))] if read == write else [(read, keep("in")), (write, keep("out"))]
    with torch.enable_grad(), model.hooks(fwd_hooks=[*reads, (written_through(write), probe)]):
        logits = model(tokens)
        value = reduce_metric(metric, logits)
        if not value.requires_grad:
            raise InterpError(
                f"metric {metric_name(metric)} carries no gradient; attribution needs a differentiable one."
            )
        (grad,) = torch.autograd.grad(value, [seen["probe"]])
    return seen["in"], seen["out"], logits.detach(), grad, float(value.detach())
