"""Feature direct logit attribution: each dictionary feature's direct effect on ``logit(answer) - logit(wrong)``.

What a dictionary writes to the residual stream (an autoencoder at a residual site, or a transcoder at ``attn_out``
or ``mlp_out``) reaches the unembedding directly along the residual stream. With the final norm's scale frozen at its
value on the actual final residual (as ``direct_logit_attribution`` does for components), the readout is linear::

    g = (W_U[:, answer] - W_U[:, wrong]) * w_norm / scale(final residual)      (LayerNorm: g centred)
    values[prompt, pos, f] = c_f * (W_dec[f] . g)

with ``c`` the codes read from the dictionary's site. The rest of the site's output gets rows of its own:
``decoder_bias = b_dec . g``, ``skip = (x @ W_skip.T) . g`` (a transcoder with a skip connection) and
``error = (x_out - reconstruction) . g``, so that features + decoder_bias + skip + error is the write site's own
direct effect (its component value in ``direct_logit_attribution``). For an autoencoder at the last layer's
``hook_resid_post`` that is the whole residual, and adding ``readout_bias`` (the final norm's bias and the
unembedding's, through the same direction) gives ``logit_diff`` exactly.

>>> result = feature_logit_attribution(model, dictionary, prompts, answer=" Mary", wrong=" John")  # doctest: +SKIP
>>> result.top(5)                                                                                  # doctest: +SKIP
"""

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any, Literal

import torch
from jaxtyping import Float, Int
from torch import Tensor

from interp.data import PromptSet, tokenize_prompts
from interp.dictionaries.dictionary import SparseDictionary
from interp.errors import InterpError
from interp.io import ResultFormat
from interp.mechanisms.dla import center, frozen_gradient, metric_label
from interp.metrics import per_prompt_token_ids
from interp.model import model_id
from interp.patching.inputs import model_device
from interp.provenance import Provenance
from interp.results import Result
from interp.sites import parse_site, site_name
from interp.store.readout import Readout

RESIDUAL_PATH_SITES = ("resid_pre", "resid_mid", "resid_post", "attn_out", "mlp_out")
READS = "attribution reads one token's logit"
FORMAT = ResultFormat(
    kind="feature_dla",
    version=1,
    name="feature direct-logit-attribution result",
    meta_file="feature_dla.json",
    tensors_file="feature_dla.safetensors",
    create="interp.dictionaries.feature_logit_attribution(model, dictionary, prompts, answer, wrong).save(DIR)",
    load="FeatureLogitAttribution.load(DIR)",
)


@dataclass(frozen=True)
class FeatureLogitAttribution(Result):
    """Each feature's direct effect on the logit difference at every (prompt, position read).

    ``values[prompt, pos, feature]`` over all the dictionary's latents (0 where a latent is off);
    ``decoder_bias``, ``skip`` (None without a skip connection), ``error``, ``readout_bias`` and ``logit_diff``
    are ``[prompt, pos]``. ``positions`` are the positions read (the same in every prompt).
    """

    FORMAT = FORMAT
    FIGURE_FILE = "feature_dla.html"

    prompts: tuple[str, ...]
    positions: tuple[int, ...]
    position_tokens: tuple[tuple[str, ...], ...]
    answer_ids: Int[Tensor, " prompt"]
    answer_tokens: tuple[str, ...]
    wrong_ids: Int[Tensor, " prompt"] | None
    wrong_tokens: tuple[str, ...] | None
    values: Float[Tensor, "prompt pos feature"]
    decoder_bias: Float[Tensor, "prompt pos"]
    skip: Float[Tensor, "prompt pos"] | None
    error: Float[Tensor, "prompt pos"]
    readout_bias: Float[Tensor, "prompt pos"]
    logit_diff: Float[Tensor, "prompt pos"]
    site: str
    provenance: Provenance | None = None

    def __post_init__(self) -> None:
        n_prompts, n_pos = len(self.prompts), len(self.positions)
        if n_prompts == 0 or n_pos == 0:
            raise InterpError("FeatureLogitAttribution needs at least one prompt and one position read.")
        if self.values.ndim != 3 or tuple(self.values.shape[:2]) != (n_prompts, n_pos):
            raise InterpError(
                f"FeatureLogitAttribution.values has shape {tuple(self.values.shape)}, expected ({n_prompts}, "
                f"{n_pos}, feature)."
            )
        rows = {"decoder_bias": self.decoder_bias, "skip": self.skip, "error": self.error,
                "readout_bias": self.readout_bias, "logit_diff": self.logit_diff}  # fmt: skip
        for name, row in rows.items():
            if row is not None and tuple(row.shape) != (n_prompts, n_pos):
                raise InterpError(
                    f"FeatureLogitAttribution.{name} has shape {tuple(row.shape)}, expected ({n_prompts}, {n_pos})."
                )
        if len(self.position_tokens) != n_prompts or any(len(tokens) != n_pos for tokens in self.position_tokens):
            raise InterpError(f"FeatureLogitAttribution needs {n_pos} position tokens for each of {n_prompts} prompts.")
        if len(self.answer_tokens) != n_prompts or tuple(self.answer_ids.shape) != (n_prompts,):
            raise InterpError(f"FeatureLogitAttribution needs one answer per prompt ({n_prompts}).")
        if (self.wrong_ids is None) != (self.wrong_tokens is None) or (
            self.wrong_ids is not None
            and self.wrong_tokens is not None
            and (len(self.wrong_tokens) != n_prompts or tuple(self.wrong_ids.shape) != (n_prompts,))
        ):
            raise InterpError(f"FeatureLogitAttribution needs one wrong token per prompt ({n_prompts}), or none.")

    @property
    def metric(self) -> str:
        """What the values attribute: ``logit(' Mary') - logit(' John')`` (``answer`` where prompts differ)."""
        return metric_label(self.answer_tokens, self.wrong_tokens)

    @property
    def site_total(self) -> Float[Tensor, "prompt pos"]:
        """The write site's whole direct effect: features + decoder bias + skip + error."""
        skip = 0.0 if self.skip is None else self.skip
        return self.values.sum(-1) + self.decoder_bias + skip + self.error

    def feature_values(self, prompt: int | None = None, pos: int = -1) -> Float[Tensor, " feature"]:
        """``[feature]`` at position index ``pos`` (of those read), for one prompt or the mean over prompts."""
        if not -len(self.positions) <= pos < len(self.positions):
            raise InterpError(f"position index {pos} does not exist; this result read {len(self.positions)} positions.")
        if prompt is None:
            return self.values[:, pos].float().mean(0)
        if not 0 <= prompt < len(self.prompts):
            raise InterpError(f"prompt {prompt} does not exist; this result has {len(self.prompts)} prompts.")
        return self.values[prompt, pos].float()

    def top(self, n: int = 10, prompt: int | None = None, pos: int = -1) -> tuple[tuple[int, float], ...]:
        """The ``n`` features of largest |direct effect|, as ``(feature, value)``; mean over prompts unless
        ``prompt``."""
        values = self.feature_values(prompt, pos)
        order = values.abs().argsort(descending=True)[:n]
        return tuple((int(i), float(values[i])) for i in order)

    def figure(self, prompt: int | None = None, pos: int = -1, n: int = 20):
        """Bars of the ``n`` features of largest |direct effect|, then the decoder bias, skip and error rows."""
        import plotly.graph_objects as go

        def row(values: Tensor | None) -> float:
            if values is None:
                return float("nan")
            return float(values[:, pos].float().mean()) if prompt is None else float(values[prompt, pos])

        cells = self.top(n, prompt, pos)
        extra = [("decoder bias", row(self.decoder_bias)), ("error", row(self.error))]
        extra += [] if self.skip is None else [("skip", row(self.skip))]
        labels = [f"f{feature}" for feature, _ in cells] + [name for name, _ in extra]
        values = [value for _, value in cells] + [value for _, value in extra]
        where = (
            f"mean over {len(self.prompts)} prompts"
            if prompt is None
            else f"prompt {prompt} at {self.position_tokens[prompt][pos]!r}"
        )
        hover = [
            f"<b>{label}</b><br>direct effect on {self.metric}: {value:+.4g}" for label, value in zip(labels, values)
        ]
        figure = go.Figure(
            go.Bar(
                x=values,
                y=labels,
                orientation="h",
                text=hover,
                hovertemplate="%{text}<extra></extra>",
                marker_color=["#1f77b4"] * len(cells) + ["#999999"] * len(extra),
            )
        )
        figure.update_layout(
            title=(
                f"Direct effect of the features of {self.site} on {self.metric} = {row(self.logit_diff):.3g} ({where})"
            ),
            xaxis_title=f"direct effect on {self.metric} (logits)",
            yaxis={"type": "category", "autorange": "reversed"},
        )
        return figure


def feature_logit_attribution(
    model,
    dictionary: SparseDictionary,
    prompts: PromptSet | Sequence[str] | str,
    answer: Sequence[str | int] | str | int,
    wrong: Sequence[str | int] | str | int | None = None,
    positions: Literal["last"] | Sequence[int] = "last",
) -> FeatureLogitAttribution:
    """Attribute ``logit(answer) - logit(wrong)`` at ``positions`` to each of ``dictionary``'s features directly.

    Args:
        model: a TransformerBridge the dictionary was trained on.
        dictionary: an autoencoder at a residual site, or a transcoder writing ``attn_out`` / ``mlp_out``.
        prompts: prompts of one token length.
        answer / wrong: one token for all prompts or one per prompt (strings or ids); ``wrong`` None: the plain
            logit of ``answer``.
        positions: "last" or position indices (negative from the end).
    """
    dictionary.check_usable(model)
    write = dictionary.write_site
    _check_residual_path(write)
    texts = list(
        prompts.texts if isinstance(prompts, PromptSet) else [prompts] if isinstance(prompts, str) else prompts
    )
    if not texts:
        raise InterpError("give at least one prompt.")
    token_lists = tokenize_prompts(model, texts)
    lengths = sorted({len(ids) for ids in token_lists})
    if len(lengths) > 1:
        raise InterpError(
            f"the prompts tokenize to different lengths ({lengths}); feature attribution reads the same positions in "
            "every prompt, so give prompts of one token length (or run each length separately)."
        )
    tokens = torch.stack(token_lists)
    read_at = _positions(positions, tokens.shape[1])
    final_name = site_name("resid_post", int(model.cfg.n_layers) - 1)
    captured = _capture(model, tokens.to(model_device(model)), [dictionary.site, write, final_name])
    x_in, x_out, final = (captured[name][:, read_at].float() for name in (dictionary.site, write, final_name))

    readout = Readout.from_model(model)
    W_U = readout.W_U.float().to(final.device)
    tokenizer = model.tokenizer
    answer_ids = per_prompt_token_ids(answer, tokenizer, len(texts), readout.d_vocab, "answer", READS)
    wrong_ids = (
        None if wrong is None else per_prompt_token_ids(wrong, tokenizer, len(texts), readout.d_vocab, "wrong", READS)
    )
    direction = W_U[:, answer_ids].T  # [prompt, d_model]
    b_U = None if readout.b_U is None else readout.b_U.float().to(final.device)
    constant = torch.zeros(len(texts), device=final.device) if b_U is None else b_U[answer_ids]
    if wrong_ids is not None:
        direction = direction - W_U[:, wrong_ids].T
        constant = constant - (0.0 if b_U is None else b_U[wrong_ids])
    norm_bias = 0.0 if readout.bias is None else direction @ readout.bias.float().to(final.device)
    gradient = frozen_gradient(
        readout.norm, readout.eps, readout.weight, readout.weight_offset, final, direction[:, None, :]
    )
    if readout.norm == "layernorm":  # (v - mean v) . g == v . (g - mean g): centre the gradient once
        gradient = center(gradient)

    codes = dictionary.encode(x_in)  # [prompt, pos, d_sae]
    W_dec = dictionary.W_dec.float().to(final.device)
    values = codes * torch.einsum("fd,bpd->bpf", W_dec, gradient)
    decoder_bias = torch.einsum("d,bpd->bp", dictionary.b_dec.float().to(final.device), gradient)
    skip = None
    if dictionary.W_skip is not None:
        skipped = torch.einsum("bpi,oi->bpo", x_in, dictionary.W_skip.float().to(final.device))
        skip = torch.einsum("bpd,bpd->bp", skipped, gradient)
    error = torch.einsum("bpd,bpd->bp", x_out - dictionary.decode(codes, x_in), gradient)
    readout_bias = (constant + norm_bias)[:, None].expand(len(texts), len(read_at))
    normalized = readout.normalize(final)
    logit_diff = torch.einsum("bpd,bd->bp", normalized, direction) + constant[:, None]

    def vocab(ids: Tensor) -> tuple[str, ...]:
        return tuple(tokenizer.decode([int(i)]) for i in ids)

    return FeatureLogitAttribution(
        prompts=tuple(texts),
        positions=tuple(read_at),
        position_tokens=tuple(tuple(tokenizer.decode([int(ids[p])]) for p in read_at) for ids in token_lists),
        answer_ids=answer_ids,
        answer_tokens=vocab(answer_ids),
        wrong_ids=wrong_ids,
        wrong_tokens=None if wrong_ids is None else vocab(wrong_ids),
        values=values.detach().cpu(),
        decoder_bias=decoder_bias.detach().cpu(),
        skip=None if skip is None else skip.detach().cpu(),
        error=error.detach().cpu(),
        readout_bias=readout_bias.detach().cpu().contiguous(),
        logit_diff=logit_diff.detach().cpu(),
        site=write,
        provenance=Provenance(model_id=model_id(model), weights_hash=dictionary.weights_hash, hooks=(write,)),
    )


def _check_residual_path(write: str) -> None:
    """Raise unless ``write`` is a residual site, or an attention or MLP output (what the residual stream adds)."""
    try:
        kind = parse_site(write).kind
    except InterpError:
        kind = ""
    if kind not in RESIDUAL_PATH_SITES:
        raise InterpError(
            f"the dictionary writes {write}, which is not on the residual path (resid_pre/mid/post, attn_out or "
            "mlp_out), so its features have no direct effect on the logits to attribute."
        )


def _positions(positions: Literal["last"] | Sequence[int], n_pos: int) -> list[int]:
    if isinstance(positions, str):
        if positions != "last":
            raise InterpError(f"positions must be 'last' or a list of position indices, got {positions!r}.")
        return [n_pos - 1]
    chosen = [int(position) for position in positions]
    if not chosen:
        raise InterpError("give at least one position, or positions='last'.")
    bad = [position for position in chosen if not -n_pos <= position < n_pos]
    if bad:
        raise InterpError(f"position {bad[0]} does not exist; the prompts are {n_pos} tokens long.")
    return [position % n_pos for position in chosen]


@torch.no_grad()
def _capture(model, tokens: Tensor, names: Sequence[str]) -> dict[str, Tensor]:
    """The activations at ``names`` in one forward of ``tokens``."""
    seen: dict[str, Tensor] = {}

    def keeper(name: str):
        def keep(acts: Tensor, hook: Any = None) -> Tensor:
            seen[name] = acts.detach()
            return acts

        return keep

    with model.hooks(fwd_hooks=[(name, keeper(name)) for name in dict.fromkeys(names)]):
        model(tokens)
    return seen
