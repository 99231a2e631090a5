"""SparseDictionary: a sparse autoencoder or a transcoder, as the formulas the field's formats share.

Encoding, with ``x`` a row of the input site (``[..., d_in]``)::

    pre   = (x - b_dec) @ W_enc + b_enc        (b_dec subtracted when ``apply_b_dec_to_input``)
    topk:     codes = TopK_k(ReLU(pre))        (the k largest kept, the rest 0)
    relu:     codes = ReLU(pre)
    jumprelu: codes = pre * (pre > threshold)
    out   = codes @ W_dec + b_dec (+ x @ W_skip.T for a transcoder with a skip connection)

``W_enc`` is ``[d_in, d_sae]`` and ``W_dec`` ``[d_sae, d_out]`` (SAELens's orientation); an autoencoder has
``d_out == d_in`` and reads and writes one site, a transcoder reads ``site`` (an MLP's input) and predicts
``output_site`` (its output). A dictionary records the model (id and weights hash) it was trained on and
refuses another, naming both.
"""

from dataclasses import dataclass, field, replace
from typing import Any

import torch
from jaxtyping import Float
from torch import Tensor

from interp.errors import InterpError

ACTIVATIONS = ("topk", "relu", "jumprelu")


@dataclass(frozen=True, eq=False)
class SparseDictionary:
    """A trained (or loaded) sparse dictionary; see the module docstring for the formulas."""

    W_enc: Float[Tensor, "d_in d_sae"]
    b_enc: Float[Tensor, " d_sae"]
    W_dec: Float[Tensor, "d_sae d_out"]
    b_dec: Float[Tensor, " d_out"]
    activation: str = "topk"
    k: int | None = None  # topk: latents kept per row
    threshold: Float[Tensor, " d_sae"] | None = None  # jumprelu: per latent
    W_skip: Float[Tensor, "d_out d_in"] | None = None  # a transcoder's linear skip connection
    apply_b_dec_to_input: bool = True
    site: str = ""  # the hook it reads, e.g. blocks.3.hook_resid_post
    output_site: str = ""  # a transcoder's target hook ("" for an autoencoder)
    model_id: str = ""
    weights_hash: str = ""
    extra: dict[str, Any] = field(default_factory=dict)  # what the file it came from said beyond the formulas

    def __post_init__(self) -> None:
        tensors = {"W_enc": self.W_enc, "b_enc": self.b_enc, "W_dec": self.W_dec, "b_dec": self.b_dec}
        for name, value in tensors.items():
            if not isinstance(value, Tensor):
                raise InterpError(f"the dictionary's {name} must be a tensor, got {type(value).__name__}.")
        if self.W_enc.ndim != 2 or self.W_dec.ndim != 2:
            raise InterpError(
                f"W_enc and W_dec must be 2-D, got shapes {tuple(self.W_enc.shape)} and {tuple(self.W_dec.shape)}."
            )
        d_in, d_sae = self.W_enc.shape
        d_out = self.W_dec.shape[1]
        expected: dict[str, tuple[int, ...]] = {"b_enc": (d_sae,), "W_dec": (d_sae, d_out), "b_dec": (d_out,)}
        for name, shape in expected.items():
            if tuple(tensors[name].shape) != shape:
                raise InterpError(
                    f"the dictionary's {name} has shape {tuple(tensors[name].shape)}, expected {shape} "
                    f"(W_enc is {d_in} x {d_sae}: d_in x d_sae)."
                )
        if self.activation not in ACTIVATIONS:
            raise InterpError(f"unknown activation {self.activation!r}; known: {', '.join(ACTIVATIONS)}.")
        if self.activation == "topk" and not (isinstance(self.k, int) and 1 <= self.k <= d_sae):
            raise InterpError(f"a topk dictionary needs k in 1..{d_sae} (its width), got {self.k!r}.")
        if self.activation == "jumprelu" and (self.threshold is None or tuple(self.threshold.shape) != (d_sae,)):
            found = None if self.threshold is None else tuple(self.threshold.shape)
            raise InterpError(f"a jumprelu dictionary needs a threshold of shape ({d_sae},), got {found}.")
        if self.W_skip is not None and tuple(self.W_skip.shape) != (d_out, d_in):
            raise InterpError(f"W_skip has shape {tuple(self.W_skip.shape)}, expected ({d_out}, {d_in}).")
        if self.apply_b_dec_to_input and d_out != d_in:
            raise InterpError(
                f"apply_b_dec_to_input subtracts b_dec ({d_out}) from the input ({d_in}); a transcoder of another "
                "output width cannot."
            )
        checked: dict[str, Tensor | None] = {**tensors, "threshold": self.threshold, "W_skip": self.W_skip}
        for name, tensor in checked.items():
            if tensor is not None and not bool(torch.isfinite(tensor).all()):
                raise InterpError(f"the dictionary's {name} holds NaN or inf values; it is damaged.")

    # ---- shape --------------------------------------------------------------------------------------
    @property
    def d_in(self) -> int:
        return int(self.W_enc.shape[0])

    @property
    def d_sae(self) -> int:
        return int(self.W_enc.shape[1])

    @property
    def d_out(self) -> int:
        return int(self.W_dec.shape[1])

    @property
    def is_transcoder(self) -> bool:
        return bool(self.output_site) and self.output_site != self.site

    @property
    def write_site(self) -> str:
        """Where the dictionary's output goes when it is spliced in: its output site (a transcoder), else its site."""
        return self.output_site if self.is_transcoder else self.site

    @property
    def kind(self) -> str:
        return "transcoder" if self.is_transcoder else "sparse autoencoder"

    # ---- the formulas -------------------------------------------------------------------------------
    def pre_activations(self, x: Float[Tensor, "... d_in"]) -> Float[Tensor, "... d_sae"]:
        """``(x - b_dec) @ W_enc + b_enc`` (b_dec subtracted only when ``apply_b_dec_to_input``)."""
        self._check_input(x)
        x = x.to(self.W_enc.dtype)
        if self.apply_b_dec_to_input:
            x = x - self.b_dec.to(x.device)
        return x @ self.W_enc.to(x.device) + self.b_enc.to(x.device)

    def encode(self, x: Float[Tensor, "... d_in"]) -> Float[Tensor, "... d_sae"]:
        """The latent activations (codes) of ``x``: dense ``[..., d_sae]``, zero where a latent is off."""
        pre = self.pre_activations(x)
        if self.activation == "jumprelu":
            assert self.threshold is not None  # checked on construction
            return pre * (pre > self.threshold.to(pre.device))
        codes = torch.relu(pre)
        if self.activation == "topk":
            assert self.k is not None  # checked on construction
            values, indices = codes.topk(self.k, dim=-1, sorted=False)
            codes = torch.zeros_like(codes).scatter_(-1, indices, values)
        return codes

    def decode(self, codes: Float[Tensor, "... d_sae"], x: Tensor | None = None) -> Float[Tensor, "... d_out"]:
        """``codes @ W_dec + b_dec``, plus ``x @ W_skip.T`` for a transcoder with a skip connection (give ``x``)."""
        if codes.shape[-1] != self.d_sae:
            raise InterpError(f"codes have width {codes.shape[-1]}, but the dictionary has {self.d_sae} latents.")
        out = codes.to(self.W_dec.dtype) @ self.W_dec.to(codes.device) + self.b_dec.to(codes.device)
        if self.W_skip is not None:
            if x is None:
                raise InterpError("this transcoder has a skip connection: decode(codes, x) needs its input x too.")
            out = out + x.to(out.dtype) @ self.W_skip.to(out.device).T
        return out

    def __call__(self, x: Float[Tensor, "... d_in"]) -> Float[Tensor, "... d_out"]:
        """The reconstruction (or, for a transcoder, the prediction of ``output_site``) of ``x``."""
        return self.decode(self.encode(x), x)

    def content_hash(self) -> str:
        """A hash of the dictionary's own tensors (blake2b over W_enc, b_enc, W_dec, b_dec, threshold, W_skip, in that
        order): what tells two dictionaries apart, where ``weights_hash`` names the model they were trained on."""
        from interp.provenance import hash_bytes, tensor_bytes

        tensors = [self.W_enc, self.b_enc, self.W_dec, self.b_dec]
        tensors += [tensor for tensor in (self.threshold, self.W_skip) if tensor is not None]
        return hash_bytes(tensor_bytes(tensor) for tensor in tensors)

    def save(self, directory, format: str | None = None):
        """Write the dictionary to ``directory`` (``interp.dictionaries.save_dictionary``: sparsify's format for TopK,
        SAELens's otherwise, or ``format="sparsify"`` / ``"saelens"``); returns the directory."""
        from interp.dictionaries.writing import save_dictionary

        return save_dictionary(self, directory, format=format)

    # ---- checks -------------------------------------------------------------------------------------
    def _check_input(self, x: Tensor) -> None:
        if not isinstance(x, Tensor) or x.ndim == 0 or x.shape[-1] != self.d_in:
            shape = tuple(x.shape) if isinstance(x, Tensor) else type(x).__name__
            raise InterpError(
                f"the dictionary reads vectors of width {self.d_in} ({self.site or 'its site'}), got {shape}; "
                "pass activations of the site it was trained on."
            )
        if x.is_floating_point() and not bool(torch.isfinite(x).all()):
            raise InterpError("the activations hold NaN or inf values; the dictionary cannot encode them.")

    def check_usable(self, model: Any) -> None:
        """Raise unless the dictionary can be spliced into ``model``: it names its site, and ``model`` is its model."""
        if not self.site:
            raise InterpError("the dictionary names no site; set it (dictionary.with_provenance(site=...)).")
        self.check_model(model)

    def check_model(self, model: Any) -> None:
        """Raise unless ``model`` has the weights this dictionary was trained on (when it recorded them)."""
        if not self.weights_hash:
            return
        from interp.model import model_id
        from interp.model.weights import weights_hash

        self.check_weights(weights_hash(model), model_id(model))

    def check_weights(self, found_hash: str, found_model: str, where: str = "") -> None:
        """Raise unless weights hash ``found_hash`` (of model ``found_model``, ``where``: e.g. "the store at DIR") is
        the one this dictionary was trained on; a side that recorded no hash is not checked."""
        if self.weights_hash and found_hash and found_hash != self.weights_hash:
            raise InterpError(
                f"this dictionary was trained on {self.model_id or 'another model'} "
                f"(weights {self.weights_hash[:12]}), "
                f"not on {found_model} (weights {found_hash[:12]}){', ' + where if where else ''}; train one on this "
                "model, or use the model it was trained on."
            )

    def with_provenance(self, **changes: Any) -> "SparseDictionary":
        """A copy with ``site``, ``output_site``, ``model_id`` or ``weights_hash`` set (e.g. for a downloaded file)."""
        return replace(self, **changes)
