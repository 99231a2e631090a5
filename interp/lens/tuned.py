"""Tuned lens (Belrose et al. 2023): a learned affine translator per layer, applied before the readout.

A ``TunedLens`` maps the residual stream after each layer, ``h -> h + W_l h + b_l`` (the identity
at initialisation, and always at the last layer), so that the model's own final norm and
unembedding read the final distribution off it. It plugs into the logit lens as its translator:

>>> texts = generate_texts(model, PromptSet.from_file("assets/prompts/lens_prompts.jsonl"))  # doctest: +SKIP
>>> lens = train_tuned_lens(model, texts)                                                     # doctest: +SKIP
>>> logit_lens(model, ["The capital of France is"], translator=lens).figure()                # doctest: +SKIP
>>> lens_kl(model, heldout_texts, translator=lens).figure()   # KL to the final layer, per layer  # doctest: +SKIP
>>> lens.save("runs/tuned"); TunedLens.load("runs/tuned", model=model)                        # doctest: +SKIP

Training minimises KL(final || lens_l(h_l)) over every position of the texts. The paper starts
each translator at the identity and runs 250 SGD steps of 2^18 tokens; every step decodes each
token through the whole unembedding at every layer, far beyond a CPU. So training here (with
``init="least_squares"``) first moves each translator from the identity to its closed-form
weighted least-squares fit of the final residual stream (per token weighted by 1/rms(h_final)^2,
what the final norm divides by; ridge towards the identity), then takes Adam steps on the KL
itself. ``init="identity"`` is the paper's procedure (Adam instead of SGD). On SmolLM2-135M the
result is in ``circuits/tuned_lens_smollm2/README.md``.
"""

import math
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Literal

import plotly.graph_objects as go
import torch
from jaxtyping import Float
from torch import Tensor

from interp import defaults, plots
from interp.data import PromptSet, iter_batches, pad_token_id, tokenize_prompts
from interp.errors import InterpError
from interp.io import ResultFormat
from interp.lens.texts import (  # noqa: F401  (defined here before; still importable from here)
    TEXTS_FILE,
    TEXTS_SETTINGS_FILE,
    generate_texts,
    split_heldout,
)
from interp.progress import tqdm
from interp.provenance import Provenance
from interp.results import Result
from interp.sites import layer_sites, parse_site, site_name
from interp.store.capture import Capturer, check_model_has
from interp.store.readout import Readout

Init = Literal["least_squares", "identity"]
FORMAT = ResultFormat(
    kind="tuned_lens",
    version=1,
    name="tuned lens",
    meta_file="tuned_lens.json",
    tensors_file="tuned_lens.safetensors",
    create="train_tuned_lens(model, texts).save(DIR) or `interp lens train --model M --out DIR`",
    load="TunedLens.load(DIR, model=model)",
)
KL_FORMAT = ResultFormat(
    kind="lens_kl",
    version=1,
    name="lens KL evaluation",
    meta_file="lens_kl.json",
    tensors_file="lens_kl.safetensors",
    create="lens_kl(model, texts, translator=lens).save(DIR) (`interp lens train ... --out DIR` writes DIR/heldout_kl)",
    load="LensKL.load(DIR)",
)
_CHUNK_TOKENS = 256  # tokens decoded at once (a [chunk, d_vocab] float32 block per site)


def lens_sites(n_layers: int) -> tuple[str, ...]:
    """The sites a tuned lens translates, in depth order: the embeddings (``blocks.0.hook_resid_pre``), then each
    ``resid_post``."""
    return (site_name("resid_pre", 0), *layer_sites("resid_post", n_layers))


@dataclass(frozen=True)
class TrainingRecord:
    """How a tuned lens was trained, and its loss curve.

    ``loss[step]`` is the mean KL (nats) over the translated sites on that Adam step's batch,
    before its update; ``site_loss[step][site]`` the same per site (the last site, never
    trained, is left out).
    """

    init: str
    steps: int
    lr: float
    batch_tokens: int
    ridge: float
    seed: int
    n_texts: int
    n_tokens: int
    seconds: float
    loss: tuple[float, ...] = ()
    site_loss: tuple[tuple[float, ...], ...] = ()

    def figure(self) -> go.Figure:
        """The loss curve: mean KL over the layers per Adam step."""
        steps = [str(step) for step in range(len(self.loss))]
        hover = [f"step {s}: mean KL {value:.4g} nats" for s, value in zip(steps, self.loss)]
        return plots.line_plot(steps, {"mean KL over layers": self.loss}, hover,
                               title=f"Tuned-lens training ({self.init} init, then Adam)",
                               x_title="Adam step", y_title="KL(final ‖ lens), nats")  # fmt: skip


class _LensCaches:
    """What ``TunedLens.__post_init__`` derives from the weights; not dataclass fields."""

    _index: dict[str, int]  # site -> its translator
    _identity: list[bool]  # per translator: all zero, so the identity
    _on_device: dict[str, tuple[Tensor, Tensor]]  # (weight, bias) per device


@dataclass(frozen=True, eq=False)
class TunedLens(Result, _LensCaches):
    """Per-site affine translators ``h -> h + h @ weight[s].T + bias[s]`` (float32), for ``logit_lens(...,
    translator=lens)``.

    Axes: ``site`` (``sites``, in depth order, from ``lens_sites``); the last site's translator
    is the identity. ``blocks.{l}.hook_resid_pre`` (l >= 1) reads the translator of
    ``blocks.{l-1}.hook_resid_post``: the same residual stream.
    """

    FORMAT = FORMAT

    sites: tuple[str, ...]
    weight: Float[Tensor, "site d_model d_model"]
    bias: Float[Tensor, "site d_model"]
    provenance: Provenance
    training: TrainingRecord | None = None

    def __post_init__(self) -> None:
        n, d = len(self.sites), self.bias.shape[-1] if self.bias.dim() == 2 else -1
        if tuple(self.weight.shape) != (n, d, d) or tuple(self.bias.shape) != (n, d):
            raise InterpError(
                f"TunedLens has weight {tuple(self.weight.shape)} and bias {tuple(self.bias.shape)} for {n} sites; "
                f"expected ({n}, d_model, d_model) and ({n}, d_model)."
            )
        if self.weight.dtype != torch.float32 or self.bias.dtype != torch.float32:
            raise InterpError(f"TunedLens weights must be float32, got {self.weight.dtype} / {self.bias.dtype}.")
        identity = [bool(not w.any() and not b.any()) for w, b in zip(self.weight, self.bias)]
        object.__setattr__(self, "_index", {name: i for i, name in enumerate(self.sites)})
        object.__setattr__(self, "_identity", identity)
        object.__setattr__(self, "_on_device", {})

    @classmethod
    def identity(cls, model) -> "TunedLens":
        """Every translator the identity: decoding through it is exactly the logit lens."""
        sites = lens_sites(int(model.cfg.n_layers))
        d = int(model.cfg.d_model)
        return cls(
            sites,
            torch.zeros(len(sites), d, d),
            torch.zeros(len(sites), d),
            _provenance(model, sites, dataset_hash="", seed=None),
        )

    @property
    def d_model(self) -> int:
        return self.bias.shape[1]

    @property
    def model_label(self) -> str:
        return f"{self.provenance.model_id!r} (weights hash {self.provenance.weights_hash[:12]})"

    def __call__(self, site: str, resid: Float[Tensor, "... d_model"]) -> Float[Tensor, "... d_model"]:
        """Translate ``resid`` read at hook ``site``; InterpError for a site the lens has no translator for."""
        index = self._index.get(_canonical(site))
        if index is None:
            raise InterpError(
                f"this tuned lens has no translator for {site}: it translates the embeddings and every layer's "
                "resid_post (and resid_pre of layers >= 1, the same stream). "
                "Decode with sites=['resid_pre', 'resid_post']."
            )
        if resid.shape[-1] != self.d_model:
            raise InterpError(
                f"this tuned lens maps d_model {self.d_model}, but the residual at {site} has width {resid.shape[-1]}; "
                f"it is for another model ({self.model_label})."
            )
        if self._identity[index]:
            return resid
        weight, bias = self._tensors(resid.device)
        x = resid.float()
        return (x + x @ weight[index].T + bias[index]).to(resid.dtype)

    def _tensors(self, device) -> tuple[Tensor, Tensor]:
        key = str(device)
        if key not in self._on_device:
            self._on_device[key] = (self.weight.to(device), self.bias.to(device))
        return self._on_device[key]

    def check_provenance(self, provenance: Provenance | None) -> None:
        """Raise unless activations with ``provenance`` come from the model this lens was trained on (weights hash)."""
        ours, theirs = self.provenance.weights_hash, getattr(provenance, "weights_hash", "")
        if provenance is not None and ours and theirs and ours != theirs:
            raise InterpError(
                f"this tuned lens was trained on model {self.model_label}, but it is applied to model "
                f"{provenance.model_id!r} (weights hash {theirs[:12]}). A translator only fits the model it was "
                "trained on: train one for this model with train_tuned_lens(model, texts) or `interp lens train "
                "--model MODEL --out DIR`."
            )

    def check_model(self, model) -> None:
        """Raise unless ``model`` is the model this lens was trained on (same weights hash and width)."""
        from interp.model import model_id
        from interp.model.weights import weights_hash

        self.check_provenance(Provenance(model_id=model_id(model), weights_hash=weights_hash(model)))
        if int(model.cfg.d_model) != self.d_model or len(self.sites) != len(lens_sites(int(model.cfg.n_layers))):
            raise InterpError(f"this tuned lens ({len(self.sites)} sites, d_model {self.d_model}) does not fit "
                              f"{model_id(model)!r} ({model.cfg.n_layers} layers, d_model {model.cfg.d_model}); "
                              f"it was trained on {self.model_label}.")  # fmt: skip

    def figure(self) -> go.Figure:
        """The training loss curve (per site and mean); InterpError for a lens that was not trained."""
        if self.training is None or not self.training.loss:
            raise InterpError(
                "this tuned lens records no training (an identity lens, or one saved without it), "
                "so there is no loss curve to draw."
            )
        return self.training.figure()

    def figures(self) -> dict[str, go.Figure]:
        return {"training.html": self.figure()} if self.training and self.training.loss else {}

    @classmethod
    def load(cls, directory: str | Path, model=None) -> "TunedLens":
        """Read a lens written by ``save``; with ``model``, refuse it unless it was trained on that model."""
        lens = super().load(directory)
        if model is not None:
            lens.check_model(model)
        return lens


def _canonical(site: str) -> str:
    parsed = parse_site(site)
    if parsed.kind == "resid_pre" and parsed.layer:
        return site_name("resid_post", parsed.layer - 1)
    return site


def _provenance(model, sites, dataset_hash: str, seed: int | None, extra=None) -> Provenance:
    from interp.model import model_id
    from interp.model.weights import weights_hash

    return Provenance(
        model_id=model_id(model),
        weights_hash=weights_hash(model),
        dataset_hash=dataset_hash,
        hooks=tuple(sites),
        seed=seed,
        extra=extra or {},
    )


# ---- activations ---------------------------------------------------------------------------------


def _residuals(
    model, prompt_set: PromptSet, batch_size: int, progress: bool
) -> tuple[Float[Tensor, "site token d_model"], dict[str, str]]:
    """The residual stream at every ``lens_sites`` site and every position of every text (one forward per
    batch), and which path captured it (``Capturer.path`` and ``reason``)."""
    sites = lens_sites(int(model.cfg.n_layers))
    check_model_has(model, sites)
    token_lists = tokenize_prompts(model, prompt_set)
    pieces = []
    n_batches = math.ceil(len(token_lists) / batch_size)
    capture = Capturer(
        model, sites, "all", max(len(ids) for ids in token_lists), torch.float32, n_batches=n_batches
    )  # through the plain view where it may
    batches = iter_batches(token_lists, batch_size, pad_token_id(model))
    with torch.inference_mode():
        for batch in tqdm(batches, total=n_batches, desc="capturing residuals", unit="batch", disable=not progress):
            captured = capture(batch, max_length=int(batch.lengths.max()))  # each batch padded to its own longest text
            valid = torch.arange(batch.tokens.shape[1])[None, :] < batch.lengths[:, None]
            pieces.append(torch.stack([captured[name][valid] for name in sites]))
    return torch.cat(pieces, dim=1), {"path": capture.path, "reason": capture.reason}


def _readout_on(readout: Readout, device) -> Readout:
    move = lambda t: None if t is None else t.float().to(device)  # noqa: E731
    W_U = readout.W_U.float().to(device)
    return replace(readout, weight=move(readout.weight), bias=move(readout.bias), W_U=W_U, b_U=move(readout.b_U))


def _kl(final_logprobs: Tensor, logits: Tensor) -> Tensor:
    """KL(final || softmax(logits)) per row, in nats."""
    return (final_logprobs.exp() * (final_logprobs - torch.log_softmax(logits, dim=-1))).sum(-1)


# ---- training ------------------------------------------------------------------------------------


def train_tuned_lens(
    model,
    texts: PromptSet | Sequence[str],
    steps: int = defaults.TUNED_LENS_STEPS,
    lr: float = defaults.TUNED_LENS_LR,
    batch_tokens: int = defaults.TUNED_LENS_BATCH_TOKENS,
    init: Init = defaults.TUNED_LENS_INIT,
    ridge: float = defaults.TUNED_LENS_RIDGE,
    seed: int = defaults.TUNED_LENS_SEED,
    batch_size: int = defaults.CACHE_BATCH_SIZE,
    progress: bool = True,
) -> TunedLens:
    """Train one affine translator per layer to minimise KL(final || lens_l(h_l)) over every position of ``texts``.

    Args:
        texts: the training text (e.g. ``generate_texts(model, prompts)``); all positions are used.
        steps: Adam steps on the KL, each over ``batch_tokens`` tokens drawn with ``seed``.
        init: ``"least_squares"``: start from the weighted least-squares fit (see the module
            docstring); ``"identity"``: from the identity, as the paper.
        ridge: least-squares ridge towards the identity, relative to the mean input variance.
    Returns the lens; its ``training`` holds the settings and the loss curve.
    """
    if init not in defaults.TUNED_LENS_INITS:
        raise InterpError(f"unknown tuned-lens init {init!r}; use one of {', '.join(defaults.TUNED_LENS_INITS)}.")
    if steps < 0 or batch_tokens < 1 or lr <= 0 or ridge < 0:
        raise InterpError(
            f"need steps >= 0, batch_tokens >= 1, lr > 0 and ridge >= 0; got steps={steps}, "
            f"batch_tokens={batch_tokens}, lr={lr}, ridge={ridge}."
        )
    started = time.perf_counter()
    prompt_set = texts if isinstance(texts, PromptSet) else PromptSet.from_texts(list(texts))
    sites = lens_sites(int(model.cfg.n_layers))
    device = next(model.parameters()).device
    residuals, captured_by = _residuals(model, prompt_set, batch_size, progress)  # [site, token, d]
    n_trained, n_tokens, d = len(sites) - 1, residuals.shape[1], residuals.shape[2]
    readout = _readout_on(Readout.from_model(model), device)
    weight, bias = torch.zeros(len(sites), d, d), torch.zeros(len(sites), d)
    if init == "least_squares":
        for s in tqdm(range(n_trained), desc="least-squares init", unit="site", disable=not progress):
            weight[s], bias[s] = _least_squares(residuals[s], residuals[-1], ridge)
    site_loss: list[tuple[float, ...]] = []
    if steps:
        weight, bias, site_loss = _adam(
            residuals, readout, weight, bias, steps, lr, batch_tokens, seed, device, progress
        )
    record = TrainingRecord(init=init, steps=steps, lr=lr, batch_tokens=batch_tokens, ridge=ridge, seed=seed,
                            n_texts=len(prompt_set), n_tokens=n_tokens, seconds=round(time.perf_counter() - started, 2),
                            loss=tuple(sum(row) / len(row) for row in site_loss),
                            site_loss=tuple(site_loss))  # fmt: skip
    provenance = _provenance(
        model,
        sites,
        prompt_set.hash,
        seed,
        extra={"method": "tuned lens", "init": init, "steps": steps, "capture": captured_by},
    )
    return TunedLens(sites, weight.contiguous(), bias.contiguous(), provenance, record)


def _least_squares(
    inputs: Float[Tensor, "token d_model"], final: Float[Tensor, "token d_model"], ridge: float
) -> tuple[Tensor, Tensor]:
    """(W, b) of the affine map ``x + x W^T + b`` closest to ``final``, per token weighted by 1/mean(final^2), ridge
    towards the identity."""
    x = torch.cat([inputs.double(), torch.ones(len(inputs), 1, dtype=torch.float64)], dim=1)
    y = final.double()
    w = 1.0 / y.pow(2).mean(-1, keepdim=True).clamp_min(1e-12)
    gram, cross = x.T @ (w * x), x.T @ (w * y)
    d = inputs.shape[1]
    strength = ridge * float(torch.diagonal(gram)[:d].mean())
    penalty = torch.diag(
        torch.cat([torch.full((d,), strength, dtype=torch.float64), torch.zeros(1, dtype=torch.float64)])
    )
    prior = torch.cat([torch.eye(d, dtype=torch.float64), torch.zeros(1, d, dtype=torch.float64)])  # the identity map
    theta = torch.linalg.solve(gram + penalty, cross + penalty @ prior)  # [d + 1, d]: rows are A^T then b
    return (theta[:d].T - torch.eye(d, dtype=torch.float64)).float(), theta[d].float()


def _adam(residuals, readout, weight, bias, steps, lr, batch_tokens, seed, device, progress):
    """Adam on the mean KL per site; each site's graph is freed after its backward (one [batch, d_vocab] block at a
    time)."""
    n_trained, n_tokens = residuals.shape[0] - 1, residuals.shape[1]
    W = weight[:n_trained].clone().to(device).requires_grad_(True)
    b = bias[:n_trained].clone().to(device).requires_grad_(True)
    optimizer = torch.optim.Adam([W, b], lr=lr)
    generator = torch.Generator().manual_seed(seed)
    site_loss = []
    bar = tqdm(range(steps), desc="training tuned lens", unit="step", disable=not progress)
    for _ in bar:
        index = torch.randint(n_tokens, (min(batch_tokens, n_tokens),), generator=generator)
        with torch.no_grad():
            final_logprobs = torch.log_softmax(readout(residuals[-1, index].to(device)), dim=-1)
        optimizer.zero_grad(set_to_none=True)
        losses = []
        for s in range(n_trained):
            x = residuals[s, index].to(device)
            loss = _kl(final_logprobs, readout(x + x @ W[s].T + b[s])).mean()
            loss.backward()
            losses.append(float(loss.detach()))
        optimizer.step()
        site_loss.append(tuple(losses))
        bar.set_postfix(kl=f"{sum(losses) / len(losses):.3f}")
    trained_w, trained_b = weight.clone(), bias.clone()
    trained_w[:n_trained], trained_b[:n_trained] = W.detach().cpu(), b.detach().cpu()
    return trained_w, trained_b, site_loss


# ---- evaluation ----------------------------------------------------------------------------------


@dataclass(frozen=True)
class LensKL(Result):
    """Mean KL(final ‖ lens) per site over every position of some texts, for the logit lens and each translator.

    Axes: ``lens`` (``lenses``: "logit lens", then the translators), ``site`` (``sites``, depth order).
    """

    FORMAT = KL_FORMAT
    FIGURE_FILE = "lens_kl.html"

    lenses: tuple[str, ...]
    sites: tuple[str, ...]
    kl: Float[Tensor, "lens site"]
    kl_sem: Float[Tensor, "lens site"]  # standard error of the mean over tokens
    n_texts: int
    n_tokens: int
    provenance: Provenance

    def __post_init__(self) -> None:
        expected = (len(self.lenses), len(self.sites))
        for name in ("kl", "kl_sem"):
            if tuple(getattr(self, name).shape) != expected:
                raise InterpError(
                    f"LensKL.{name} has shape {tuple(getattr(self, name).shape)}, expected {expected} (lens, site)."
                )

    @property
    def site_labels(self) -> tuple[str, ...]:
        """``embed``, ``L0``, ``L1``, ...: what each site's residual stream follows."""
        return tuple(
            "embed" if name == self.sites[0] and parse_site(name).kind == "resid_pre" else f"L{parse_site(name).layer}"
            for name in self.sites
        )

    def table(self) -> str:
        """A Markdown table: one row per site, one column per lens (mean KL ± s.e.m., nats)."""
        rows = ["| site | " + " | ".join(self.lenses) + " |", "|---|" + "---|" * len(self.lenses)]
        for s, label in enumerate(self.site_labels):
            rows.append(
                f"| {label} | "
                + " | ".join(
                    f"{float(self.kl[i, s]):.3f} ± {float(self.kl_sem[i, s]):.3f}" for i in range(len(self.lenses))
                )
                + " |"
            )
        return "\n".join(rows)

    def figure(self, log_y: bool = True) -> go.Figure:
        """Mean KL to the final distribution per layer, one line per lens, with s.e.m. error bars."""
        title = (
            f"KL(final ‖ lens) per layer on {self.n_tokens} tokens of {self.n_texts} texts — {self.provenance.model_id}"
        )
        return plots.lens_kl_figure(list(self.site_labels),
                                    {name: self.kl[i].tolist() for i, name in enumerate(self.lenses)},
                                    {name: self.kl_sem[i].tolist() for i, name in enumerate(self.lenses)}, title=title,
                                    log_y=log_y)  # fmt: skip

    def files(self) -> dict[str, str]:
        return {"lens_kl.md": self.table() + "\n"}


def lens_kl(
    model,
    texts: PromptSet | Sequence[str],
    translator=None,
    batch_size: int = defaults.CACHE_BATCH_SIZE,
    progress: bool = True,
) -> LensKL:
    """Mean KL(final ‖ lens) at every ``lens_sites`` site over all positions of ``texts``: the logit lens, and
    ``translator`` on the same tokens.

    Args:
        translator: a ``TunedLens`` (checked against the model) or any ``translator(site, resid)``;
            None: the logit lens alone.
    """
    prompt_set = texts if isinstance(texts, PromptSet) else PromptSet.from_texts(list(texts))
    sites = lens_sites(int(model.cfg.n_layers))
    provenance = _provenance(model, sites, prompt_set.hash, None, extra={"method": "lens kl"})
    lenses: dict[str, Callable[[str, Tensor], Tensor] | None] = {"logit lens": None}
    if translator is not None:
        check = getattr(translator, "check_provenance", None)
        if check is not None:
            check(provenance)
        lenses[
            "tuned lens"
            if isinstance(translator, TunedLens)
            else getattr(translator, "__name__", type(translator).__name__)
        ] = translator
    device = next(model.parameters()).device
    residuals, _ = _residuals(model, prompt_set, batch_size, progress)
    readout = _readout_on(Readout.from_model(model), device)
    n_tokens = residuals.shape[1]
    sums = torch.zeros(len(lenses), len(sites), dtype=torch.float64)
    squares = torch.zeros_like(sums)
    chunks = range(0, n_tokens, _CHUNK_TOKENS)
    with torch.inference_mode():
        for begin in tqdm(chunks, desc="lens KL", unit="chunk", disable=not progress):
            block = residuals[:, begin : begin + _CHUNK_TOKENS].to(device)
            final_logprobs = torch.log_softmax(readout(block[-1]), dim=-1)
            for s, name in enumerate(sites):
                for i, lens in enumerate(lenses.values()):
                    kl = (
                        _kl(final_logprobs, readout(block[s] if lens is None else lens(name, block[s])))
                        .clamp_min(0.0)
                        .double()
                    )
                    sums[i, s] += kl.sum().cpu()
                    squares[i, s] += kl.pow(2).sum().cpu()
    mean = sums / n_tokens
    sem = ((squares / n_tokens - mean.pow(2)).clamp_min(0.0) / max(n_tokens - 1, 1)).sqrt()
    return LensKL(tuple(lenses), sites, mean.float(), sem.float(), len(prompt_set), n_tokens, provenance)
