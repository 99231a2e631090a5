"""Logit lens: decode the residual stream of every layer through the model's own readout.

Works from a model (activations captured on the fly) or from an ActivationStore (no model:
the store keeps the final norm and unembedding). A ``translator`` turns it into a tuned lens:
it maps each site's residual before the readout.

>>> result = logit_lens(model, ["The capital of France is"], targets=[" Paris"])   # doctest: +SKIP
>>> result.target_prob[-1]           # probability of " Paris" at the last layer, per prompt/position  # doctest: +SKIP
>>> result.figure().show()                                                        # doctest: +SKIP
>>> logit_lens(ActivationStore.open("acts")).figure(metric="kl")                 # doctest: +SKIP
"""

from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Literal

import plotly.graph_objects as go
import torch
from jaxtyping import Bool, Float, Int
from torch import Tensor

from interp import defaults, plots
from interp.data import PromptSet
from interp.errors import InterpError
from interp.io import ResultFormat
from interp.metrics import per_prompt_token_ids
from interp.progress import tqdm
from interp.provenance import Provenance
from interp.results import Result
from interp.sites import LAYER_SITES, expand_sites, parse_site, site_name
from interp.store.readout import Readout

Translator = Callable[[str, Float[Tensor, "... d_model"]], Float[Tensor, "... d_model"]]
"""``translator(site_name, resid) -> resid``: a per-site map applied before the readout (a tuned lens)."""

Metric = Literal["prob", "logprob", "rank", "kl"]
_METRIC_TITLES = {
    "prob": "probability of the target",
    "logprob": "log-probability of the target",
    "rank": "rank of the target (0 = top)",
    "kl": "KL(final ‖ layer) in nats",
}
_SITE_ORDER = {kind: order for order, kind in enumerate(LAYER_SITES)}
FORMAT = ResultFormat(
    kind="lens",
    version=1,
    name="logit-lens result",
    meta_file="lens.json",
    tensors_file="lens.safetensors",
    create="logit_lens(model, prompts).save(DIR) or `interp lens --model M --prompts FILE --out DIR`",
    load="LensResult.load(DIR)",
    untagged=1,
)  # before tags: the same fields, marked "kind": "logit_lens"


@dataclass(frozen=True)
class LensResult(Result):
    """The decoded distribution at every (site, prompt, position).

    Axes: ``site`` (in depth order), ``prompt``, ``pos`` (the positions read; ``position_tokens``
    names them), ``k`` (top-k). Positions past a prompt's end (``valid`` False) hold NaN.
    """

    FORMAT = FORMAT
    FIGURE_FILE = "lens.html"

    sites: tuple[str, ...]
    prompts: tuple[str, ...]
    positions: Int[Tensor, "prompt pos"]
    position_tokens: tuple[tuple[str, ...], ...]
    valid: Bool[Tensor, "prompt pos"]
    target_ids: Int[Tensor, " prompt"]
    target_tokens: tuple[str, ...]
    target_prob: Float[Tensor, "site prompt pos"]
    target_logprob: Float[Tensor, "site prompt pos"]
    target_rank: Float[Tensor, "site prompt pos"]
    kl_to_final: Float[Tensor, "site prompt pos"]
    top_ids: Int[Tensor, "site prompt pos k"]
    top_probs: Float[Tensor, "site prompt pos k"]
    top_tokens: tuple[tuple[tuple[tuple[str, ...], ...], ...], ...]  # [site][prompt][pos][k]
    provenance: Provenance
    translator: str = ""

    def __post_init__(self) -> None:
        n_site, n_prompt, n_pos = len(self.sites), len(self.prompts), self.positions.shape[1]
        expected = (n_site, n_prompt, n_pos)
        for name in ("target_prob", "target_logprob", "target_rank", "kl_to_final"):
            shape = tuple(getattr(self, name).shape)
            if shape != expected:
                raise InterpError(f"LensResult.{name} has shape {shape}, expected {expected} (site, prompt, pos).")
        if tuple(self.top_ids.shape[:3]) != expected or self.top_ids.shape != self.top_probs.shape:
            raise InterpError(
                f"LensResult.top_ids/top_probs have shapes {tuple(self.top_ids.shape)}/{tuple(self.top_probs.shape)}, "
                f"expected {expected} + (k,)."
            )
        if (
            tuple(self.valid.shape) != (n_prompt, n_pos)
            or len(self.position_tokens) != n_prompt
            or len(self.target_tokens) != n_prompt
        ):
            raise InterpError("LensResult labels do not match its (prompt, pos) axes.")
        if any(len(tokens) != n_pos for tokens in self.position_tokens):
            raise InterpError(f"LensResult.position_tokens must name {n_pos} positions per prompt.")
        k = self.top_ids.shape[3]
        shape_ok = len(self.top_tokens) == n_site and all(
            len(prompts) == n_prompt
            and all(len(cells) == n_pos and all(len(top) == k for top in cells) for cells in prompts)
            for prompts in self.top_tokens
        )
        if not shape_ok:
            raise InterpError(f"LensResult.top_tokens must hold {k} tokens per (site, prompt, pos) cell, as top_ids.")

    @property
    def site_labels(self) -> tuple[str, ...]:
        """Short axis labels: ``L3 resid_post``, ``embed``."""
        return tuple(_site_label(name) for name in self.sites)

    def values(self, metric: Metric = defaults.LENS_METRIC) -> Float[Tensor, "site prompt pos"]:
        return {
            "prob": self.target_prob,
            "logprob": self.target_logprob,
            "rank": self.target_rank,
            "kl": self.kl_to_final,
        }[_check_metric(metric)]

    def first_layer_where_top(self) -> list[int | None]:
        """Per prompt (its own last position read): index into ``sites`` of the first site where the target is top-1."""
        last = _last_valid(self.valid)
        firsts: list[int | None] = []
        for prompt in range(len(self.prompts)):
            hits = (self.target_rank[:, prompt, last[prompt]] == 0).nonzero()
            firsts.append(int(hits[0]) if len(hits) else None)
        return firsts

    def figure(self, metric: Metric = defaults.LENS_METRIC, prompt: int = 0) -> go.Figure:
        """Heatmap of ``metric``: site x position for one prompt, or site x prompt when one position was read.

        Cells show the top-1 token; hover shows the top-k tokens with probabilities.
        """
        values = self.values(metric)
        single_position = values.shape[2] == 1
        if single_position:
            grid = values[:, :, 0]
            columns = [f"{i}: {plots.short(text, 18)}" for i, text in enumerate(self.prompts)]
            cells = [(p, 0) for p in range(len(self.prompts))]
            x_title = "prompt (last token)"
            title = f"Logit lens — {_METRIC_TITLES[metric]}"
        else:
            if not 0 <= prompt < len(self.prompts):
                raise InterpError(f"prompt {prompt} does not exist; this result has {len(self.prompts)} prompts.")
            n_valid = int(self.valid[prompt].sum())
            grid = values[:, prompt, :n_valid]
            columns = [f"{int(self.positions[prompt, p])}: {self.position_tokens[prompt][p]!r}" for p in range(n_valid)]
            cells = [(prompt, p) for p in range(n_valid)]
            x_title = "position: token"
            title = f"Logit lens — {_METRIC_TITLES[metric]} — prompt {prompt}: {plots.short(self.prompts[prompt], 50)}"
        top1 = [[self.top_tokens[s][p][q][0] for (p, q) in cells] for s in range(len(self.sites))]
        hover = [
            [
                "<br>".join(
                    [
                        f"{self.site_labels[s]} · prompt {p} · pos {int(self.positions[p, q])} "
                        f"({self.position_tokens[p][q]!r})",
                        f"target {self.target_tokens[p]!r}: p={float(self.target_prob[s, p, q]):.3g}, "
                        f"rank {int(self.target_rank[s, p, q])}",
                        f"KL to final: {float(self.kl_to_final[s, p, q]):.3g}",
                        "top: "
                        + ", ".join(
                            f"{tok!r} {float(prob):.2f}"
                            for tok, prob in zip(self.top_tokens[s][p][q], self.top_probs[s, p, q])
                        ),
                    ]
                )
                for (p, q) in cells
            ]
            for s in range(len(self.sites))
        ]
        return plots.lens_heatmap(
            grid.numpy(),
            rows=list(self.site_labels),
            columns=columns,
            cell_text=top1,
            hover=hover,
            title=title,
            x_title=x_title,
            colorbar_title=metric,
            reverse_scale=metric in ("rank", "kl"),
        )

    def files(self) -> dict[str, str]:
        return {"lens.csv": self._csv()}

    def _csv(self) -> str:
        """One row per valid (site, prompt, position)."""
        rows = ["site,prompt,position,token,target,target_prob,target_logprob,target_rank,kl_to_final,top1"]
        for s, site in enumerate(self.sites):
            for p in range(len(self.prompts)):
                for q in range(self.positions.shape[1]):
                    if not self.valid[p, q]:
                        continue
                    rows.append(
                        ",".join(
                            [
                                site,
                                str(p),
                                str(int(self.positions[p, q])),
                                _csv(self.position_tokens[p][q]),
                                _csv(self.target_tokens[p]),
                            ]
                            + [
                                f"{float(getattr(self, name)[s, p, q]):.6g}"
                                for name in ("target_prob", "target_logprob", "target_rank", "kl_to_final")
                            ]
                            + [_csv(self.top_tokens[s][p][q][0])]
                        )
                    )
        return "\n".join(rows) + "\n"


def logit_lens(
    source,
    prompts: PromptSet | Sequence[str] | None = None,
    targets: Sequence[str | int] | str | int | None = None,
    sites: Sequence[str] | str = defaults.LENS_SITES,
    positions: Literal["last", "all"] | Sequence[int] = defaults.LENS_POSITIONS,
    top_k: int = defaults.LENS_TOP_K,
    translator: Translator | None = None,
    batch_size: int = 16,
) -> LensResult:
    """Decode the residual stream at ``sites`` through the final norm + unembedding.

    Args:
        source: a TransformerBridge (then ``prompts`` is required) or an ActivationStore.
        prompts: the prompts (model source only; a store has its own).
        targets: the token to follow: one per prompt, or one for all (string or id). Default:
            per prompt, the model's own top-1 prediction at that prompt's last position.
        sites: shorthands or hook names; "resid_pre" and "resid_post" by default (sublayers:
            add "resid_mid"; "attn_out" / "mlp_out" decode a sublayer's own output through the same
            final norm and unembedding). From a store: the sites it holds among these.
        positions: "last", "all" or explicit positions (model source; a store read what it stored).
        top_k: how many top tokens to keep per cell.
        translator: ``translator(site, resid) -> resid`` applied before the readout (a tuned lens:
            ``interp.lens.TunedLens``). One with a ``check_provenance(provenance)`` method is
            first shown the activations' provenance (model, weights hash) and may refuse them.
    """
    from interp.store import ActivationStore

    if top_k < 1:
        raise InterpError(f"top_k must be at least 1, got {top_k}.")
    if isinstance(source, ActivationStore):
        if prompts is not None:
            raise InterpError(
                "a store has its own prompts; call logit_lens(store) without prompts "
                "(or pass the model to use new prompts)."
            )
        activations, final_name, readout, tokenizer, prompt_texts, position_info, provenance = _from_store(
            source, sites
        )
    else:
        if prompts is None:
            raise InterpError("logit_lens(model, ...) needs prompts: logit_lens(model, ['The capital of France is']).")
        activations, final_name, readout, tokenizer, prompt_texts, position_info, provenance = _from_model(
            source, prompts, sites, positions, batch_size
        )
    check = getattr(translator, "check_provenance", None)  # a tuned lens refuses activations of another model
    if check is not None:
        check(provenance)
    positions_read, position_tokens, valid = position_info
    ordered = sorted(activations, key=_depth_key)
    final_logprobs = torch.log_softmax(
        readout(_translate(translator, final_name, activations[final_name]) if translator else activations[final_name]),
        dim=-1,
    )
    target_ids = _resolve_targets(targets, tokenizer, final_logprobs, len(prompt_texts), _last_valid(valid))

    stats: dict[str, list[Tensor]] = {
        name: [] for name in ("target_prob", "target_logprob", "target_rank", "kl_to_final", "top_ids", "top_probs")
    }
    for name in tqdm(ordered, desc="logit lens", unit="site", disable=len(ordered) < 8):
        resid = activations[name]
        if translator is not None:
            resid = _translate(translator, name, resid)
        logprobs = torch.log_softmax(readout(resid), dim=-1)  # [prompt, pos, vocab]
        target = logprobs.gather(-1, target_ids.view(-1, 1, 1).expand(-1, logprobs.shape[1], 1)).squeeze(-1)
        rank = (logprobs > target.unsqueeze(-1)).sum(-1).float()
        kl = (final_logprobs.exp() * (final_logprobs - logprobs)).sum(-1).clamp_min(0.0)
        top = logprobs.topk(min(top_k, logprobs.shape[-1]), dim=-1)
        stats["target_prob"].append(target.exp())
        stats["target_logprob"].append(target)
        stats["target_rank"].append(rank)
        stats["kl_to_final"].append(kl)
        stats["top_ids"].append(top.indices)
        stats["top_probs"].append(top.values.exp())
    stacked = {name: torch.stack(values) for name, values in stats.items()}
    invalid = ~valid
    for name in ("target_prob", "target_logprob", "target_rank", "kl_to_final"):
        stacked[name][:, invalid] = float("nan")
    vocab = _Vocab(tokenizer)
    top_tokens = tuple(
        tuple(tuple(tuple(vocab(int(i)) for i in cell) for cell in prompt_cells) for prompt_cells in site_cells)
        for site_cells in stacked["top_ids"].tolist()
    )
    return LensResult(
        sites=tuple(ordered),
        prompts=tuple(prompt_texts),
        positions=positions_read,
        position_tokens=position_tokens,
        valid=valid,
        target_ids=target_ids,
        target_tokens=tuple(vocab(int(i)) for i in target_ids),
        top_tokens=top_tokens,
        provenance=provenance,
        translator=getattr(translator, "__name__", type(translator).__name__) if translator else "",
        **stacked,
    )


# ---- sources ---------------------------------------------------------------------------------


def _from_model(model, prompts, sites, positions, batch_size):
    from interp.model import model_id
    from interp.model.weights import weights_hash
    from interp.store import capture_activations

    prompt_set = (
        prompts
        if isinstance(prompts, PromptSet)
        else PromptSet.from_texts([prompts] if isinstance(prompts, str) else list(prompts))
    )
    n_layers = int(model.cfg.n_layers)
    names = _lens_sites(sites, n_layers)
    final_name = site_name("resid_post", n_layers - 1)
    captured = capture_activations(
        model,
        prompt_set,
        hooks=list(dict.fromkeys([*names, final_name])),
        positions=positions,
        batch_size=batch_size,
        dtype=torch.float32,
    )
    from interp.data import tokenize_prompts

    token_lists = tokenize_prompts(model, prompt_set)
    position_info = _position_info(positions, token_lists, lambda ids: [model.tokenizer.decode([int(t)]) for t in ids])
    activations = _with_pos_axis(captured, positions)
    provenance = Provenance(
        model_id=model_id(model), weights_hash=weights_hash(model), dataset_hash=prompt_set.hash, hooks=tuple(names)
    )
    return (
        {name: activations[name] for name in names} | {final_name: activations[final_name]},
        final_name,
        Readout.from_model(model),
        model.tokenizer,
        prompt_set.texts,
        position_info,
        provenance,
    )


def _from_store(store, sites):
    n_layers = store.n_layers
    wanted = _lens_sites(sites, n_layers)
    names = [name for name in wanted if name in store]
    final_name = site_name("resid_post", n_layers - 1)
    if final_name not in store:
        raise InterpError(
            f"the store has no {final_name}, which the lens needs as the final distribution; "
            "cache it with --hooks resid_post."
        )
    if not names:
        raise InterpError(
            f"the store holds none of the lens sites {', '.join(wanted[:3])}...; cache resid_pre/resid_post."
        )
    token_lists = [store.input_ids[i, : int(store.lengths[i])] for i in range(store.n_prompts)]
    position_info = _position_info(store.positions, token_lists, store.decode)
    activations = _with_pos_axis({name: store[name].float() for name in set(names) | {final_name}}, store.positions)
    return activations, final_name, store.readout, store.tokenizer, store.prompts.texts, position_info, store.provenance


def _lens_sites(sites, n_layers: int) -> list[str]:
    names = expand_sites([sites] if isinstance(sites, str) else list(sites), n_layers)
    for name in names:
        site = parse_site(name)
        if site.kind not in ("resid_pre", "resid_mid", "resid_post", "embed", "final_norm", "attn_out", "mlp_out"):
            raise InterpError(
                "the logit lens decodes residual-stream sites and sublayer outputs; "
                f"{name} is not one of them (use resid_pre, resid_mid, resid_post, attn_out or mlp_out)."
            )
    return list(names)


def _with_pos_axis(activations: Mapping[str, Tensor], positions) -> dict[str, Tensor]:
    return {name: value.unsqueeze(1) if positions == "last" else value for name, value in activations.items()}


def _position_info(positions, token_lists, decode) -> tuple[Tensor, tuple[tuple[str, ...], ...], Tensor]:
    lengths = [len(ids) for ids in token_lists]
    if positions == "last":
        read = torch.tensor([[n - 1] for n in lengths])
    elif positions == "all":
        width = max(lengths)
        read = torch.arange(width).expand(len(lengths), width).clone()
    else:
        read = torch.tensor([[p if p >= 0 else n + p for p in positions] for n in lengths])
    valid = read < torch.tensor(lengths).unsqueeze(1)
    tokens = tuple(
        tuple(decode([int(ids[p])])[0] if ok else "" for p, ok in zip(row.tolist(), valid_row.tolist()))
        for ids, row, valid_row in zip(token_lists, read, valid)
    )
    return read, tokens, valid


def _last_valid(valid: Tensor) -> Int[Tensor, " prompt"]:
    """Each prompt's last valid position along the positions read."""
    return valid.long().cumsum(-1).argmax(-1)


def _resolve_targets(
    targets, tokenizer, final_logprobs: Tensor, n_prompts: int, last: Int[Tensor, " prompt"]
) -> Tensor:
    if targets is None:  # the model's own prediction at each prompt's last position (not the padding)
        return final_logprobs[torch.arange(n_prompts), last].argmax(-1)
    return per_prompt_token_ids(
        targets, tokenizer, n_prompts, final_logprobs.shape[-1], "target", "the lens follows one token"
    )


def _translate(translator: Translator, name: str, resid: Tensor) -> Tensor:
    translated = translator(name, resid)
    if translated.shape != resid.shape:
        raise InterpError(
            f"the translator changed the shape at {name} from {tuple(resid.shape)} to {tuple(translated.shape)}; "
            "it must map d_model to d_model."
        )
    return translated


def _depth_key(name: str) -> tuple[float, int]:
    site = parse_site(name)
    if site.layer is None:
        return (-1.0, 0) if site.kind in ("embed", "pos_embed") else (float("inf"), 0)
    return (float(site.layer), _SITE_ORDER[site.kind])


def _site_label(name: str) -> str:
    site = parse_site(name)
    return site.kind if site.layer is None else f"L{site.layer} {site.kind}"


def _check_metric(metric: str) -> str:
    if metric not in _METRIC_TITLES:
        raise InterpError(f"unknown lens metric {metric!r}; use one of {', '.join(_METRIC_TITLES)}.")
    return metric


class _Vocab:
    """Token id -> string, memoized (decoding one id at a time is slow for big vocabularies)."""

    def __init__(self, tokenizer):
        self.tokenizer = tokenizer
        self.cache: dict[int, str] = {}

    def __call__(self, token_id: int) -> str:
        if token_id not in self.cache:
            self.cache[token_id] = self.tokenizer.decode([token_id]) if self.tokenizer is not None else str(token_id)
        return self.cache[token_id]


def _csv(text: str) -> str:
    return '"' + str(text).replace('"', '""') + '"'
