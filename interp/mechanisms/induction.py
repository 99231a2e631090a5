"""Induction heads: copying on repeated random tokens, each head's induction score, and head mean-ablation.

On ``[BOS, r_1 .. r_L, r_1 .. r_L]`` (random tokens, repeated once) the first half cannot be
predicted and the repeat can, by copying: an induction head at the repeat's token ``r_i`` attends
to the token after ``r_i``'s previous occurrence and writes it out. Mean-ablating the heads that
do so should undo the copying; mean-ablating other heads of the same layers should not.

>>> result = induction_heads(model, n_sequences=8, length=40)   # doctest: +SKIP
>>> result.loss_ratio, result.top(3)                             # doctest: +SKIP
(0.28, ((18, 6, 0.85), (17, 3, 0.71), (17, 4, 0.68)))
>>> result.ablation_ratio                                        # doctest: +SKIP
>>> result.figure().show(); result.save("runs/induction")        # doctest: +SKIP
"""

import random
import warnings
from collections.abc import Iterable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass

import einops
import plotly.graph_objects as go
import torch
from jaxtyping import Float, Int
from torch import Tensor

from interp import plots
from interp.errors import InterpError
from interp.io import ResultFormat
from interp.model.weights import weights_hash
from interp.progress import tqdm
from interp.provenance import Provenance, hash_bytes, tensor_bytes
from interp.results import Result
from interp.sites import site_name

FORMAT = ResultFormat(
    kind="induction",
    version=1,
    name="induction-heads result",
    meta_file="induction.json",
    tensors_file="induction.safetensors",
    create="induction_heads(model).save(DIR) or `python circuits/induction_smollm2/induction_smollm2.py --out DIR`",
    load="InductionResult.load(DIR)",
)
Head = tuple[int, int]  # (layer, head)


@dataclass(frozen=True)
class InductionResult(Result):
    """Copying loss, per-head induction scores and the head mean-ablation on repeated random tokens.

    Axes: ``layer``, ``head``; ``seq`` (the sequences), ``half`` (the ``length`` positions of one
    half: ``first_loss[s, i]`` is the loss of the first occurrence of token ``i + 1``,
    ``repeat_loss[s, i]`` that of its repeat); ``ablation``: ``ablations[0]`` are the ``top_k``
    induction heads, the others random heads drawn from the same layers, one draw each.
    """

    FORMAT = FORMAT
    FIGURE_FILE = "induction.html"

    scores: Float[Tensor, "layer head"]
    tokens: Int[Tensor, "seq pos"]  # [BOS, r_1 .. r_L, r_1 .. r_L]
    first_loss: Float[Tensor, "seq half"]
    repeat_loss: Float[Tensor, "seq half"]
    ablations: tuple[tuple[Head, ...], ...]
    ablated_repeat_loss: Float[Tensor, "ablation seq half"]  # repeat_loss with each ablation's heads mean-ablated
    provenance: Provenance

    def __post_init__(self) -> None:
        if self.scores.ndim != 2:
            raise InterpError(f"InductionResult.scores has shape {tuple(self.scores.shape)}, expected (layer, head).")
        n_seq, length = self.first_loss.shape
        if tuple(self.repeat_loss.shape) != (n_seq, length) or tuple(self.tokens.shape) != (n_seq, 2 * length + 1):
            raise InterpError(
                f"InductionResult: first_loss {tuple(self.first_loss.shape)}, "
                f"repeat_loss {tuple(self.repeat_loss.shape)} and tokens {tuple(self.tokens.shape)} disagree; "
                "expected (seq, L), (seq, L) and (seq, 2L + 1)."
            )
        if tuple(self.ablated_repeat_loss.shape) != (len(self.ablations), n_seq, length):
            raise InterpError(
                f"InductionResult.ablated_repeat_loss has shape {tuple(self.ablated_repeat_loss.shape)}, "
                f"expected {(len(self.ablations), n_seq, length)} (ablation, seq, half)."
            )
        check_heads([head for heads in self.ablations for head in heads], *self.scores.shape)

    # ---- numbers ----

    @property
    def length(self) -> int:
        return int(self.first_loss.shape[1])

    @property
    def loss_first(self) -> float:
        """Mean loss (nats) on the first occurrence."""
        return float(self.first_loss.double().mean())

    @property
    def loss_repeat(self) -> float:
        """Mean loss (nats) on the repeat."""
        return float(self.repeat_loss.double().mean())

    @property
    def loss_ratio(self) -> float:
        """Repeat loss over first-occurrence loss (small: the model copies)."""
        return self.loss_repeat / self.loss_first

    def top(self, k: int = 10) -> tuple[tuple[int, int, float], ...]:
        """The ``k`` heads of highest induction score: ``(layer, head, score)``, best first."""
        return tuple((layer, head, float(self.scores[layer, head])) for layer, head in ranked_heads(self.scores)[:k])

    @property
    def top_heads(self) -> tuple[Head, ...]:
        """The heads mean-ablated as the induction heads (``ablations[0]``)."""
        return self.ablations[0] if self.ablations else ()

    @property
    def random_heads(self) -> tuple[tuple[Head, ...], ...]:
        """The random control draws (``ablations[1:]``)."""
        return self.ablations[1:]

    @property
    def ablation_increase(self) -> Float[Tensor, " ablation"]:
        """How much each ablation raises the mean repeat loss (nats)."""
        return self.ablated_repeat_loss.double().mean((1, 2)) - self.loss_repeat

    @property
    def increase_top(self) -> float:
        return float(self.ablation_increase[0]) if self.ablations else float("nan")

    @property
    def increase_random(self) -> float:
        """The repeat-loss increase of the random draws, averaged over draws."""
        return float(self.ablation_increase[1:].mean()) if len(self.ablations) > 1 else float("nan")

    @property
    def ablation_ratio(self) -> float:
        """Repeat-loss increase of the top heads over that of random same-layer heads (averaged over draws)."""
        return self.increase_top / self.increase_random

    def summary(self, k: int = 10) -> dict:
        """The finding's numbers, JSON-ready."""
        return {
            "n_sequences": int(self.tokens.shape[0]),
            "length": self.length,
            "loss_first": round(self.loss_first, 4),
            "loss_repeat": round(self.loss_repeat, 4),
            "loss_ratio": round(self.loss_ratio, 4),
            "top_heads": [
                {"layer": layer, "head": head, "score": round(score, 4)} for layer, head, score in self.top(k)
            ],
            "ablated_top": [list(head) for head in self.top_heads],
            "ablated_random": [[list(head) for head in draw] for draw in self.random_heads],
            "increase_top": round(self.increase_top, 4),
            "increase_random_draws": [round(float(v), 4) for v in self.ablation_increase[1:]],
            "increase_random": round(self.increase_random, 4),
            "ablation_ratio": round(self.ablation_ratio, 3),
        }

    # ---- figure and files ----

    def figure(self) -> go.Figure:
        """Heatmap layer x head of induction scores; the top heads carry their rank, hover gives score and rank."""
        n_layers, n_heads = self.scores.shape
        rank = {head: r for r, head in enumerate(ranked_heads(self.scores), start=1)}
        ablated = set(self.top_heads)
        hover = [[f"L{layer}H{head}<br>induction score {float(self.scores[layer, head]):.3f}<br>rank "
                  f"{rank[(layer, head)]} of {n_layers * n_heads}"
                  + ("<br>mean-ablated as a top head" if (layer, head) in ablated else "")
                  for head in range(n_heads)] for layer in range(n_layers)]  # fmt: skip
        text = [
            [str(rank[(layer, head)]) if rank[(layer, head)] <= 10 else "" for head in range(n_heads)]
            for layer in range(n_layers)
        ]
        title = (f"Induction scores — {self.provenance.model_id} — repeat/first loss {self.loss_ratio:.2f}"
                 + (f"; ablating the top {len(self.top_heads)}: +{self.increase_top:.2f} nats vs "
                    f"+{self.increase_random:.2f} for random"
                    if len(self.ablations) > 1 else ""))  # fmt: skip
        return plots.head_score_heatmap(
            self.scores.numpy(), hover=hover, cell_text=text, title=title, colorbar_title="induction score"
        )

    def meta_extra(self) -> dict:
        return {"summary": self.summary()}

    def files(self) -> dict[str, str]:
        return {"heads.csv": self._csv()}

    def _csv(self) -> str:
        rows = ["rank,layer,head,induction_score"]
        rows += [
            f"{r},{layer},{head},{float(self.scores[layer, head]):.6g}"
            for r, (layer, head) in enumerate(ranked_heads(self.scores), start=1)
        ]
        return "\n".join(rows) + "\n"


# ---- data ----------------------------------------------------------------------------------------


def repeated_random_tokens(
    tokenizer, n_sequences: int, length: int, seed: int = 0, vocab_size: int | None = None
) -> Int[Tensor, "seq pos"]:
    """``[BOS, r_1 .. r_L, r_1 .. r_L]`` per row: ``length`` tokens drawn uniformly (special tokens skipped), then
    repeated.

    Args:
        tokenizer: a Hugging Face tokenizer with a BOS token.
        vocab_size: draw ids below this (default: the tokenizer's size); pass the model's ``d_vocab``.

    >>> repeated_random_tokens(model.tokenizer, n_sequences=2, length=3).shape   # doctest: +SKIP
    torch.Size([2, 7])
    """
    if n_sequences < 1 or length < 2:
        raise InterpError(
            f"need at least 1 sequence of at least 2 tokens, got n_sequences={n_sequences}, length={length}."
        )
    bos = getattr(tokenizer, "bos_token_id", None)
    if bos is None:
        raise InterpError(
            "the tokenizer has no BOS token; repeated sequences start with one (set tokenizer.bos_token)."
        )
    size = min(len(tokenizer), vocab_size) if vocab_size else len(tokenizer)
    special = set(tokenizer.all_special_ids) | {
        i for i, token in getattr(tokenizer, "added_tokens_decoder", {}).items() if token.special
    }
    allowed = torch.tensor([i for i in range(size) if i not in special])
    if len(allowed) < 2:
        raise InterpError(
            f"the vocabulary has {len(allowed)} non-special tokens below {size}; random sequences need more."
        )
    generator = torch.Generator().manual_seed(seed)
    random_half = allowed[torch.randint(len(allowed), (n_sequences, length), generator=generator)]
    return torch.cat([torch.full((n_sequences, 1), bos), random_half, random_half], dim=1)


def _length_of(tokens: Tensor) -> int:
    if tokens.ndim != 2 or tokens.shape[1] % 2 != 1 or tokens.shape[1] < 5:
        raise InterpError(
            f"tokens of shape {tuple(tokens.shape)} are not [BOS, r_1..r_L, r_1..r_L] rows; "
            "make them with repeated_random_tokens."
        )
    length = (tokens.shape[1] - 1) // 2
    if not torch.equal(tokens[:, 1 : length + 1], tokens[:, length + 1 :]):
        raise InterpError(
            "the second half of the tokens does not repeat the first; make them with repeated_random_tokens."
        )
    return length


# ---- forward passes ------------------------------------------------------------------------------

RESID_BUDGET_BYTES = (
    512 << 20
)  # the clean pass keeps every layer's resid_pre (for ablation passes that skip early layers) up to this size
FAST_PATH_TOLERANCE = 1e-3  # nats: an ablation pass that skips early layers must reproduce the clean loss this closely


@dataclass(frozen=True)
class _CleanPass:
    loss: Float[Tensor, "seq pred"]  # pred = pos - 1: the loss of tokens 1 .. 2L
    scores: Float[Tensor, "layer head"]
    means: Float[Tensor, "layer head d_head"]
    resid: tuple[Tensor, ...]  # per layer, resid_pre [seq, pos, d_model] on the CPU; () above RESID_BUDGET_BYTES


def _token_loss(logits: Tensor, targets: Tensor) -> Tensor:
    """Loss of each target token given the logits of the position before it: logits [b, n, vocab], targets [b, n]."""
    return -torch.log_softmax(logits.float(), dim=-1).gather(-1, targets[..., None])[..., 0]


@torch.inference_mode()
def _clean_pass(model, tokens: Int[Tensor, "seq pos"], batch_size: int, progress: bool = False) -> _CleanPass:
    """One unablated run: per-token loss, induction scores, hook_z means, and (within budget) every layer's
    resid_pre."""
    n_layers, n_heads = int(model.cfg.n_layers), int(model.cfg.n_heads)
    length = _length_of(tokens)
    device = model.cfg.device
    queries = torch.arange(
        length + 1, 2 * length + 1, device=device
    )  # the repeat's positions; key q - L + 1 follows the earlier copy
    keep_resid = tokens.numel() * int(model.cfg.d_model) * n_layers * 4 <= RESID_BUDGET_BYTES
    stripe_sum = torch.zeros(n_layers, n_heads, dtype=torch.float64)
    z_sum = torch.zeros(n_layers, n_heads, int(model.cfg.d_head), dtype=torch.float64)
    fired: set[str] = set()
    resid: list[list[Tensor]] = [[] for _ in range(n_layers)]

    def pattern_hook(layer: int):
        def hook(pattern: Tensor, hook) -> Tensor:  # [batch, head, query, key]
            stripe_sum[layer] += pattern[:, :, queries, queries - length + 1].double().mean(-1).sum(0).cpu()
            fired.add(site_name("pattern", layer))
            return pattern

        return hook

    def z_hook(layer: int):
        def hook(z: Tensor, hook) -> Tensor:  # [batch, pos, head, d_head]
            z_sum[layer] += z.double().sum((0, 1)).cpu()
            fired.add(site_name("z", layer))
            return z

        return hook

    def resid_hook(layer: int):
        def hook(x: Tensor, hook) -> Tensor:
            resid[layer].append(x.detach().cpu().clone())
            return x

        return hook

    hooks = [(site_name("pattern", layer), pattern_hook(layer)) for layer in range(n_layers)]
    hooks += [(site_name("z", layer), z_hook(layer)) for layer in range(n_layers)]
    hooks += [(site_name("resid_pre", layer), resid_hook(layer)) for layer in range(n_layers)] if keep_resid else []
    losses = []
    with model.hooks(fwd_hooks=hooks):
        for start in tqdm(range(0, tokens.shape[0], batch_size), desc="clean", unit="batch", disable=not progress):
            batch = tokens[start : start + batch_size].to(device)
            losses.append(_token_loss(model(batch, return_type="logits")[:, :-1], batch[:, 1:]).cpu())
    missing = sorted({name for name, _ in hooks if "resid" not in name} - fired)
    if missing:
        raise InterpError(
            f"the hooks {missing[:3]} never fired; this model does not expose per-head attention "
            "sites (hook_pattern, hook_z)."
        )
    n_rows = tokens.shape[0]
    return _CleanPass(loss=torch.cat(losses), scores=(stripe_sum / n_rows).float(),
                      means=(z_sum / (n_rows * tokens.shape[1])).float(),
                      resid=tuple(torch.cat(chunks) for chunks in resid) if keep_resid else ())  # fmt: skip


@torch.inference_mode()
def _repeat_loss(
    model,
    tokens: Int[Tensor, "seq pos"],
    clean: _CleanPass,
    start: int | None,
    batch_size: int,
    desc: str,
    progress: bool,
) -> Float[Tensor, "seq half"]:
    """The repeat's per-token loss under whatever hooks are active; from layer ``start`` on (clean resid_pre fed in)
    when given."""
    # within it, blocks before ``start`` return their input (start_at_layer discards what they compute anyway)
    from interp.model.shortcuts import skipping_blocks

    length = _length_of(tokens)
    device = model.cfg.device
    losses = []
    for begin in tqdm(range(0, tokens.shape[0], batch_size), desc=desc, unit="batch", disable=not progress):
        batch = tokens[begin : begin + batch_size].to(device)
        if start is None:
            logits = model(batch, return_type="logits")
        else:
            with skipping_blocks(model, start):
                logits = model(
                    clean.resid[start][begin : begin + batch_size].to(device),
                    start_at_layer=start,
                    return_type="logits",
                    logits_to_keep=length + 1,
                )
        losses.append(_token_loss(logits[:, -(length + 1) : -1], batch[:, length + 1 :]).cpu())
    return torch.cat(losses)


def _fast_start(
    model, tokens: Tensor, clean: _CleanPass, ablations: Sequence[Sequence[Head]], batch_size: int
) -> int | None:
    """The first ablated layer, where ablation passes can start, if skipping the layers before it reproduces the clean
    loss; else None."""
    start = min((layer for heads in ablations for layer, _ in heads), default=0)
    if not clean.resid or start == 0:
        return None
    length = (tokens.shape[1] - 1) // 2
    rows = min(2, tokens.shape[0])
    try:
        check = _repeat_loss(model, tokens[:rows], clean, start, batch_size, "check", False)
    except Exception as error:
        warnings.warn(
            f"induction: ablation passes run every layer (skipping the first {start} failed: "
            f"{type(error).__name__}: {error}).",
            stacklevel=3,
        )
        return None
    difference = float((check - clean.loss[:rows, length:]).abs().max())
    if difference > FAST_PATH_TOLERANCE:
        warnings.warn(
            "induction: ablation passes run every layer "
            f"(skipping the first {start} changed the loss by {difference:.2g} nats).",
            stacklevel=3,
        )
        return None
    return start


def head_means(model, tokens: Int[Tensor, "seq pos"], batch_size: int = 8) -> Float[Tensor, "layer head d_head"]:
    """Each head's ``hook_z`` output averaged over the sequences and positions of ``tokens`` (what mean-ablation
    writes)."""
    return _clean_pass(model, tokens, batch_size).means


@torch.inference_mode()
def head_position_means(
    model, tokens: Int[Tensor, "prompt pos"], batch_size: int = 8
) -> Float[Tensor, "layer pos head d_head"]:
    """Each head's ``hook_z`` output at each position, averaged over the prompts of ``tokens`` (prompts of one template
    shape).

    What template-wise mean-ablation writes (Wang et al. 2022 ablate IOI heads with their mean over
    the ABC prompts, position by position): pass it to ``mean_ablated``.
    """
    if tokens.ndim != 2 or tokens.shape[0] == 0:
        raise InterpError(
            f"tokens must be [prompt, pos] ids of prompts of one length, got shape {tuple(tokens.shape)}."
        )
    n_layers = int(model.cfg.n_layers)
    sums: list[Tensor | None] = [None] * n_layers

    def z_hook(layer: int):
        def hook(z: Tensor, hook) -> Tensor:  # [batch, pos, head, d_head]
            total = z.double().sum(0).cpu()
            previous = sums[layer]
            sums[layer] = total if previous is None else previous + total
            return z

        return hook

    with model.hooks(fwd_hooks=[(site_name("z", layer), z_hook(layer)) for layer in range(n_layers)]):
        for start in range(0, tokens.shape[0], batch_size):
            model(tokens[start : start + batch_size].to(model.cfg.device), return_type="logits")
    totals = [total for total in sums if total is not None]
    if len(totals) != n_layers:
        raise InterpError(
            "the hook_z hooks never fired; this model does not expose per-head attention outputs (hook_z)."
        )
    return (torch.stack(totals) / tokens.shape[0]).float()


@contextmanager
def mean_ablated(
    model, heads: Iterable[Head], means: Float[Tensor, "layer head d_head"] | Float[Tensor, "layer pos head d_head"]
) -> Iterator[None]:
    """Within the block, each of ``heads`` outputs its mean at every position; hooks are removed on exit.

    ``means`` is either one mean per head ``[layer, head, d_head]`` (``head_means``: written at
    every position) or one per head and position ``[layer, pos, head, d_head]``
    (``head_position_means``: position ``p`` gets the mean at ``p``; inputs must then be ``pos`` long).
    Weights are untouched: the replacement happens at ``blocks.{layer}.attn.hook_z``.

    >>> with mean_ablated(model, [(18, 6)], head_means(model, tokens)):   # doctest: +SKIP
    ...     logits = model(tokens)
    """
    heads = list(heads)
    n_layers, n_heads = int(model.cfg.n_layers), int(model.cfg.n_heads)
    check_heads(heads, n_layers, n_heads)
    per_position = means.ndim == 4
    head_axis = 2 if per_position else 1
    if means.ndim not in (3, 4) or means.shape[0] != n_layers or means.shape[head_axis] != n_heads:
        raise InterpError(
            f"means have shape {tuple(means.shape)}, expected (layer, head, d_head) or (layer, pos, head, d_head) with "
            f"{n_layers} layers and {n_heads} heads; compute them with head_means(model, tokens) or "
            "head_position_means(model, tokens)."
        )
    by_layer: dict[int, list[int]] = {}
    for layer, head in heads:
        by_layer.setdefault(layer, []).append(head)

    def replace(layer: int, indices: list[int]):
        def hook(z: Tensor, hook) -> Tensor:  # [batch, pos, head, d_head]
            z = z.clone()
            if not per_position:
                z[:, :, indices] = means[layer, indices].to(z.device, z.dtype)
                return z
            if z.shape[1] != means.shape[1]:
                raise InterpError(
                    f"per-position means cover {means.shape[1]} positions but the input has {z.shape[1]}; "
                    "compute them on prompts of this length."
                )
            z[:, :, indices] = einops.rearrange(means[layer][:, indices], "pos head d_head -> 1 pos head d_head").to(
                z.device, z.dtype
            )
            return z

        return hook

    with model.hooks(
        fwd_hooks=[(site_name("z", layer), replace(layer, indices)) for layer, indices in sorted(by_layer.items())]
    ):
        yield


def check_heads(heads: Sequence[Head], n_layers: int, n_heads: int) -> None:
    """Raise, naming the head and the model's size, if a (layer, head) is out of range."""
    for layer, head in heads:
        if not (0 <= layer < n_layers and 0 <= head < n_heads):
            raise InterpError(
                f"head L{layer}H{head} does not exist; the model has {n_layers} layers of {n_heads} heads "
                f"(layer 0..{n_layers - 1}, head 0..{n_heads - 1})."
            )


# ---- heads ---------------------------------------------------------------------------------------


def ranked_heads(scores: Float[Tensor, "layer head"]) -> list[Head]:
    """Every (layer, head), highest score first (ties: lower layer, then lower head)."""
    n_heads, flat = scores.shape[1], scores.flatten().tolist()
    return [divmod(i, n_heads) for i in sorted(range(len(flat)), key=lambda i: (-flat[i], i))]


def same_layer_draws(heads: Sequence[Head], n_heads: int, n_draws: int, seed: int = 0) -> tuple[tuple[Head, ...], ...]:
    """``n_draws`` random head sets matching ``heads`` layer for layer: one other head of the same layer per head, none
    of ``heads``.

    >>> same_layer_draws([(1, 0), (1, 1), (2, 0)], n_heads=4, n_draws=1, seed=0)
    (((1, 3), (1, 2), (2, 1)),)
    """
    excluded = set(heads)
    rng = random.Random(seed)
    draws = []
    for _ in range(n_draws):
        draw: list[Head] = []
        for layer, _head in heads:
            pool = [(layer, h) for h in range(n_heads) if (layer, h) not in excluded and (layer, h) not in draw]
            if not pool:
                raise InterpError(
                    f"layer {layer} has no head left to draw: its {n_heads} heads are all among the ablated or already "
                    "drawn; ablate fewer heads."
                )
            draw.append(rng.choice(pool))
        draws.append(tuple(draw))
    return tuple(draws)


def induction_heads(
    model,
    n_sequences: int = 8,
    length: int = 40,
    seed: int = 0,
    top_k: int = 5,
    n_random: int = 5,
    batch_size: int = 8,
    progress: bool = False,
) -> InductionResult:
    """Loss on both halves of repeated random sequences, every head's induction score, and mean-ablation of the top
    heads.

    The induction score of a head is its attention, averaged over the repeat's positions and the
    sequences, from each token to the one after its previous occurrence (transformer_lens'
    induction stripe, over the ``length`` repeat positions only). The ``top_k`` best heads, and
    ``n_random`` draws of as many other heads from the same layers, are each mean-ablated (their
    ``hook_z`` replaced by its mean over these sequences and positions) and the repeat's loss measured.

    Args:
        model: a TransformerBridge.
        n_sequences, length: sequences of ``1 + 2 * length`` tokens (BOS, random tokens, the same again).
        seed: the random tokens' and the random heads' seed.
        top_k: how many induction heads are ablated together.
        n_random: how many random same-layer draws are ablated as controls.
    """
    tokens = repeated_random_tokens(model.tokenizer, n_sequences, length, seed=seed, vocab_size=int(model.cfg.d_vocab))
    clean = _clean_pass(model, tokens, batch_size, progress=progress)
    n_layers, n_heads = clean.scores.shape
    if not 1 <= top_k < n_layers * n_heads:
        raise InterpError(
            f"top_k must be between 1 and {n_layers * n_heads - 1} "
            f"(the model has {n_layers * n_heads} heads), got {top_k}."
        )
    top = tuple(ranked_heads(clean.scores)[:top_k])
    ablations = (top, *same_layer_draws(top, n_heads, n_random, seed=seed))
    start = _fast_start(model, tokens, clean, ablations, batch_size)
    ablated = []
    for index, heads in enumerate(ablations):
        with mean_ablated(model, heads, clean.means):
            ablated.append(_repeat_loss(model, tokens, clean, start, batch_size, f"ablation {index}", progress))
    return InductionResult(
        scores=clean.scores, tokens=tokens, ablations=ablations,
        first_loss=clean.loss[:, :length].contiguous(), repeat_loss=clean.loss[:, length:].contiguous(),
        ablated_repeat_loss=torch.stack(ablated), provenance=_provenance(model, tokens, seed, top_k, n_random),
    )  # fmt: skip


def _provenance(model, tokens: Tensor, seed: int, top_k: int, n_random: int) -> Provenance:
    # lazily: transformer_lens loads only when there is a model
    from interp.model import model_id

    n_layers = int(model.cfg.n_layers)
    hooks = tuple(site_name(kind, layer) for layer in range(n_layers) for kind in ("pattern", "z"))
    length = (tokens.shape[1] - 1) // 2
    return Provenance(model_id=model_id(model), weights_hash=weights_hash(model),
                      dataset_hash=hash_bytes([tensor_bytes(tokens)]), hooks=hooks, seed=seed,
                      extra={"n_sequences": int(tokens.shape[0]), "length": length, "top_k": top_k,
                             "n_random": n_random, "ablation": "mean of hook_z over the sequences and positions, "
                                                               "at every position"})  # fmt: skip
