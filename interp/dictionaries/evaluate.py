"""How good a dictionary is, and what its features do: reconstruction, sparsity, the downstream cost of splicing it into
the model, and for every feature its frequency, top-activating contexts and the logits it promotes.

Spliced through hooks: an autoencoder's reconstruction replaces its site's activation, a transcoder's prediction
replaces its output site's, at every real position from ``skip_first`` on (the positions it was trained on).

- FVU = sum ||y - y_hat||^2 / sum ||y - mean(y)||^2 over the evaluated tokens (explained variance = 1 - FVU);
- L0 = active latents per token; dead = latents that never fire on these tokens; dense = latents on for more
  than ``dense_above`` of them;
- CE loss recovered = (CE_zero - CE_spliced) / (CE_zero - CE_clean), with CE_zero the next-token loss when the
  spliced site is zero-ablated instead (1: as good as the model, 0: as bad as no site at all);
- KL = the mean KL(model || spliced model) of the next-token distributions;
- a feature's logits: its decoder row times the unembedding, the tokens it promotes (largest) and suppresses.
"""

from dataclasses import dataclass
from typing import Any

import torch
from jaxtyping import Float, Int
from torch import Tensor

from interp.data import PromptSet, iter_batches, pad_token_id, tokenize_prompts
from interp.dictionaries.dictionary import SparseDictionary
from interp.dictionaries.interventions import spliced as spliced_in
from interp.errors import InterpError
from interp.io import ResultFormat
from interp.model import model_id
from interp.progress import tqdm
from interp.provenance import Provenance
from interp.results import Result

FORMAT = ResultFormat(
    kind="dictionary_eval",
    version=1,
    name="dictionary evaluation",
    meta_file="evaluation.json",
    tensors_file="evaluation.safetensors",
    create="interp.dictionaries.evaluate_dictionary(dictionary, model, prompts).save(DIR)",
    load="DictionaryEval.load(DIR)",
)


@dataclass(frozen=True)
class DictionaryEval(Result):
    """The evaluation of one dictionary on some prompts; per-feature arrays are indexed by latent."""

    FORMAT = FORMAT
    FIGURE_FILE = "evaluation.html"

    site: str
    output_site: str
    n_tokens: int
    fvu: float
    l0: float
    dead_fraction: float
    dense_fraction: float
    ce_clean: float
    ce_spliced: float
    ce_zero_ablated: float
    kl_spliced: float
    frequency: Float[Tensor, " d_sae"]  # share of tokens each latent fires on
    max_activation: Float[Tensor, " d_sae"]
    top_prompt: Int[Tensor, "d_sae top"]  # where each latent fired most: prompt index (-1: fewer firings)
    top_position: Int[Tensor, "d_sae top"]
    top_activation: Float[Tensor, "d_sae top"]
    promoted_ids: Int[Tensor, "d_sae n_logits"]
    promoted_values: Float[Tensor, "d_sae n_logits"]
    suppressed_ids: Int[Tensor, "d_sae n_logits"]
    suppressed_values: Float[Tensor, "d_sae n_logits"]
    prompt_tokens: tuple[tuple[str, ...], ...]  # each prompt's token strings (for the contexts)
    vocabulary: tuple[str, ...]  # the strings of the token ids above, in order of first use
    vocabulary_ids: Int[Tensor, " vocab_used"]
    provenance: Provenance | None = None

    def __post_init__(self) -> None:
        d_sae = len(self.frequency)
        for name in (
            "max_activation",
            "top_prompt",
            "top_position",
            "top_activation",
            "promoted_ids",
            "promoted_values",
            "suppressed_ids",
            "suppressed_values",
        ):
            if len(getattr(self, name)) != d_sae:
                raise InterpError(f"DictionaryEval.{name} has {len(getattr(self, name))} rows for {d_sae} latents.")
        if len(self.vocabulary) != len(self.vocabulary_ids):
            raise InterpError("DictionaryEval.vocabulary must name each of vocabulary_ids.")

    @property
    def explained_variance(self) -> float:
        return 1.0 - self.fvu

    @property
    def ce_loss_recovered(self) -> float:
        """(CE_zero - CE_spliced) / (CE_zero - CE_clean); NaN when zero-ablation costs nothing."""
        gap = self.ce_zero_ablated - self.ce_clean
        return (self.ce_zero_ablated - self.ce_spliced) / gap if gap > 0 else float("nan")

    def token(self, token_id: int) -> str:
        index = (self.vocabulary_ids == int(token_id)).nonzero()
        return self.vocabulary[int(index[0, 0])] if len(index) else f"<{int(token_id)}>"

    def contexts(self, feature: int, width: int = 8) -> list[tuple[float, str, str, str]]:
        """The top-activating contexts of ``feature``: (activation, text before, the token, text after)."""
        found = []
        for prompt, position, value in zip(
            self.top_prompt[feature].tolist(),
            self.top_position[feature].tolist(),
            self.top_activation[feature].tolist(),
        ):
            if prompt < 0:
                continue
            tokens = self.prompt_tokens[prompt]
            before = "".join(tokens[max(0, position - width) : position])
            found.append((value, before, tokens[position], "".join(tokens[position + 1 : position + 1 + width // 2])))
        return found

    def summary(self) -> str:
        return (
            f"{self.site}{' -> ' + self.output_site if self.output_site else ''}: "
            f"FVU {self.fvu:.3f}, L0 {self.l0:.1f}, "
            f"dead {self.dead_fraction:.1%}, dense {self.dense_fraction:.1%}, CE loss recovered "
            f"{self.ce_loss_recovered:.3f} (clean {self.ce_clean:.3f}, spliced {self.ce_spliced:.3f}, zero-ablated "
            f"{self.ce_zero_ablated:.3f}), KL {self.kl_spliced:.4f}, over {self.n_tokens:,} tokens"
        )

    def figure(self):
        from interp.dictionaries.dashboard import frequency_figure

        return frequency_figure(self)


def evaluate_dictionary(
    dictionary: SparseDictionary,
    model,
    prompts: PromptSet | list[str],
    batch_size: int = 8,
    skip_first: int = 1,
    n_top: int = 8,
    n_logits: int = 8,
    dense_above: float = 0.1,
    progress: bool = True,
) -> DictionaryEval:
    """Evaluate ``dictionary`` on ``model`` over ``prompts`` (see the module docstring for every number)."""
    dictionary.check_usable(model)
    prompt_set = prompts if isinstance(prompts, PromptSet) else PromptSet.from_texts(list(prompts))
    token_lists = tokenize_prompts(model, prompt_set)
    stats = _Stats(dictionary.d_sae, n_top)
    pad = pad_token_id(model)
    batches = list(iter_batches(token_lists, batch_size, pad))
    with torch.no_grad():
        for batch in tqdm(batches, desc="evaluating the dictionary", unit="batch", disable=not progress):
            _evaluate_batch(dictionary, model, batch, skip_first, stats)
    if stats.n_tokens == 0:
        raise InterpError(f"the prompts hold no token past the first {skip_first}; give longer prompts.")
    promoted, suppressed = _feature_logits(dictionary, model, n_logits)
    used = torch.unique(torch.cat([promoted[0].flatten(), suppressed[0].flatten()]))
    return DictionaryEval(
        site=dictionary.site,
        output_site=dictionary.output_site if dictionary.is_transcoder else "",
        n_tokens=stats.n_tokens,
        fvu=stats.fvu(),
        l0=stats.active / stats.n_tokens,
        dead_fraction=float((stats.fired == 0).float().mean()),
        dense_fraction=float((stats.fired / stats.n_tokens > dense_above).float().mean()),
        ce_clean=stats.ce["clean"] / stats.n_predictions,
        ce_spliced=stats.ce["spliced"] / stats.n_predictions,
        ce_zero_ablated=stats.ce["zero"] / stats.n_predictions,
        kl_spliced=stats.kl / stats.n_predictions,
        frequency=stats.fired.float() / stats.n_tokens,
        max_activation=stats.top_values[:, 0].clamp_min(0),
        top_prompt=stats.top_prompt,
        top_position=stats.top_position,
        top_activation=stats.top_values.clamp_min(0),
        promoted_ids=promoted[0],
        promoted_values=promoted[1],
        suppressed_ids=suppressed[0],
        suppressed_values=suppressed[1],
        prompt_tokens=tuple(tuple(model.tokenizer.decode([t]) for t in ids.tolist()) for ids in token_lists),
        vocabulary=tuple(model.tokenizer.decode([t]) for t in used.tolist()),
        vocabulary_ids=used,
        provenance=Provenance(
            model_id=model_id(model),
            weights_hash=dictionary.weights_hash,
            dataset_hash=prompt_set.hash,
            hooks=(dictionary.site,),
        ),
    )


# ---- one batch --------------------------------------------------------------------------------------------


class _Stats:
    def __init__(self, d_sae: int, n_top: int) -> None:
        self.n_tokens = self.n_predictions = 0
        self.active = 0.0
        self.error = self.sum_sq = 0.0
        self.sum: Tensor | None = None
        self.fired = torch.zeros(d_sae, dtype=torch.long)
        self.top_values = torch.full((d_sae, n_top), -1.0)
        self.top_prompt = torch.full((d_sae, n_top), -1, dtype=torch.long)
        self.top_position = torch.full((d_sae, n_top), -1, dtype=torch.long)
        self.ce = {"clean": 0.0, "spliced": 0.0, "zero": 0.0}
        self.kl = 0.0

    def fvu(self) -> float:
        assert self.sum is not None
        total = self.sum_sq - float((self.sum**2).sum()) / self.n_tokens
        return self.error / total if total > 0 else float("nan")

    def add_codes(self, codes: Tensor, prompts: Tensor, positions: Tensor) -> None:
        self.fired += (codes > 0).sum(0)
        self.active += float((codes > 0).sum())
        n_top = self.top_values.shape[1]
        values, rows = codes.topk(min(n_top, codes.shape[0]), dim=0)  # [top, d_sae]
        merged_values = torch.cat([self.top_values, values.T], dim=1)
        merged_prompts = torch.cat([self.top_prompt, prompts[rows].T], dim=1)
        merged_positions = torch.cat([self.top_position, positions[rows].T], dim=1)
        order = merged_values.argsort(dim=1, descending=True, stable=True)[:, :n_top]
        self.top_values = merged_values.gather(1, order)
        self.top_prompt = torch.where(self.top_values > 0, merged_prompts.gather(1, order), -1)
        self.top_position = torch.where(self.top_values > 0, merged_positions.gather(1, order), -1)


def _evaluate_batch(dictionary: SparseDictionary, model, batch, skip_first: int, stats: _Stats) -> None:
    tokens, mask = batch.tokens, batch.attention_mask
    positions = torch.arange(tokens.shape[1])[None, :].expand_as(tokens)
    spliced_here = mask.bool() & (positions >= skip_first)  # [batch, pos]
    read_site, write_site = dictionary.site, dictionary.write_site
    captured: dict[str, Tensor] = {}

    def capture(name: str):
        def hook(acts: Tensor, hook: Any = None) -> Tensor:
            captured[name] = acts.detach()
            return acts

        return hook

    hooks = [(read_site, capture("in"))] + ([(write_site, capture("out"))] if write_site != read_site else [])
    with model.hooks(fwd_hooks=hooks):
        clean = model(tokens, attention_mask=mask).float()
    x = captured["in"].float()
    y = captured.get("out", captured["in"]).float()
    rows_x, rows_y = x[spliced_here], y[spliced_here]
    codes = dictionary.encode(rows_x)
    reconstruction = dictionary.decode(codes, rows_x)
    stats.error += float(((rows_y - reconstruction) ** 2).sum())
    stats.sum_sq += float((rows_y**2).sum())
    stats.sum = rows_y.sum(0) if stats.sum is None else stats.sum + rows_y.sum(0)
    stats.n_tokens += rows_x.shape[0]
    prompt_index = torch.tensor(batch.indices)[:, None].expand_as(tokens)
    stats.add_codes(codes, prompt_index[spliced_here], positions[spliced_here])

    def zeroed(acts: Tensor, hook: Any = None) -> Tensor:
        out = acts.clone()
        out[spliced_here] = 0
        return out

    # positions past a prompt's end are spliced too: nothing real reads them (right padding, causal attention)
    with spliced_in(model, dictionary, skip_first):
        spliced = model(tokens, attention_mask=mask).float()
    with model.hooks(fwd_hooks=[(write_site, zeroed)]):
        zero = model(tokens, attention_mask=mask).float()
    targets = tokens[:, 1:]
    predicted = mask[:, 1:].bool()  # a real next token to predict
    for name, logits in (("clean", clean), ("spliced", spliced), ("zero", zero)):
        loss = torch.nn.functional.cross_entropy(logits[:, :-1][predicted], targets[predicted], reduction="sum")
        stats.ce[name] += float(loss)
    log_p, log_q = clean[:, :-1][predicted].log_softmax(-1), spliced[:, :-1][predicted].log_softmax(-1)
    stats.kl += float((log_p.exp() * (log_p - log_q)).sum())
    stats.n_predictions += int(predicted.sum())


def _feature_logits(
    dictionary: SparseDictionary, model, n_logits: int
) -> tuple[tuple[Tensor, Tensor], tuple[Tensor, Tensor]]:
    """For each latent, the ``n_logits`` tokens its decoder row promotes most and suppresses most (row @ W_U)."""
    from interp.store.readout import Readout

    W_U = Readout.from_model(model).W_U.float()  # [d_model, d_vocab]
    if W_U.shape[0] != dictionary.d_out:
        raise InterpError(
            f"the dictionary writes width {dictionary.d_out}, the model's residual stream is {W_U.shape[0]}."
        )
    found: list[list[Tensor]] = [[], [], [], []]
    for start in range(0, dictionary.d_sae, 512):  # [512, d_vocab] at a time
        logits = dictionary.W_dec[start : start + 512].float() @ W_U
        top, bottom = logits.topk(n_logits, dim=-1), (-logits).topk(n_logits, dim=-1)
        for index, part in enumerate((top.indices, top.values, bottom.indices, -bottom.values)):
            found[index].append(part)
    ids, values, low_ids, low_values = (torch.cat(parts) for parts in found)
    return (ids, values), (low_ids, low_values)
