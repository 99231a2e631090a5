"""The demo's stages on a pretrained language model: mechanisms known from the literature, found again.

- **Logit lens** (nostalgebraist 2020) on three prompts: an indirect-object sentence, a fact, a
  repeated phrase. Identity: at the last layer the lens is the model's own output (KL 0).
- **Direct logit attribution** of ``logit(" Mary") - logit(" John")`` on "When Mary and John went to
  the store, John gave a drink to" to every layer's attention and MLP and to every head. Identity:
  the parts sum to the logit difference. Then the top head's attention pattern from the last token.
- **Induction heads** (Olsson et al. 2022) on repeated random tokens: the repeat's loss against the
  first occurrence's, every head's induction score, and mean-ablating the top-5 heads against random
  heads of the same layers.
- **Indirect object identification** (Wang et al. 2022) on ``interp.mechanisms.ioi`` prompts (ABBA and BABA,
  ABC-corrupted): the baseline logit difference, then activation and attribution patching of every
  head (denoising), and their agreement.

The thresholds below are what ``interp.demo.check_results`` holds the numbers to. On
SmolLM2-135M-Instruct the findings behind them are in ``circuits/induction_smollm2/`` and
``circuits/ioi_smollm2/``.
"""

from collections.abc import Callable
from pathlib import Path

import torch

from interp.report import Section

# Self-checks (interp.demo.check_results) for a pretrained model.
MAX_IDENTITY_ERROR = (
    1e-3  # lens KL at the last layer (nats) and |sum of DLA parts - logit difference|: both 0 up to float error
)
MIN_IOI_FRACTION_POSITIVE = 0.9  # IOI prompts with logit(IO) > logit(S): 100% of 120 on SmolLM2 (circuits/ioi_smollm2/)
MAX_INDUCTION_LOSS_RATIO = 0.3  # repeat loss / first loss: 0.24 on SmolLM2 (circuits/induction_smollm2/)
MIN_INDUCTION_ABLATION_RATIO = (
    2.0  # top-5 ablation's loss increase / random-5's: 22.9x on SmolLM2 (the issue's target: 2x)
)

IOI_SENTENCE = "When Mary and John went to the store, John gave a drink to"
LENS_PROMPTS = (IOI_SENTENCE, "The capital of France is", "one two three four five six, one two three four five")


def stages(model, out: Path, quick: bool) -> list[tuple[str, Callable[[], tuple[Section, dict]]]]:
    """(name, run) per stage, in order; each run returns its report section and ``{"pretrained": numbers}``."""
    return [
        ("lens", lambda: _stage_lens(model, out)),
        ("dla", lambda: _stage_dla(model, out)),
        ("induction", lambda: _stage_induction(model, out, quick)),
        ("ioi", lambda: _stage_ioi(model, out, quick)),
    ]


def _stage_lens(model, out: Path) -> tuple[Section, dict]:
    from interp.lens import logit_lens

    result = logit_lens(model, list(LENS_PROMPTS), positions="all")
    result.save(out / "lens")
    last_kl = float(result.kl_to_final[-1][result.valid].abs().max())
    first = result.first_layer_where_top()
    first_sites = [None if i is None else result.site_labels[i] for i in first]
    numbers = {"first site where the final top-1 token is top-1 (per prompt)": first_sites,
               "KL to the output at the last layer (identity: 0)": f"{last_kl:.2e}"}  # fmt: skip
    section = Section(
        "Logit lens",
        "Every layer's residual stream decoded through the final norm and unembedding, at every position. Hover for "
        "the top tokens and their probabilities. On many pretrained models the middle layers decode to little through "
        "the output's basis; a tuned lens (interp lens train) reads them better (circuits/tuned_lens_smollm2/).",
        figures=tuple(result.figure("prob", prompt=i) for i in range(len(LENS_PROMPTS))),
        numbers=numbers,
        code=f"interp lens --model {model.cfg.model_name} --prompts PROMPTS --positions all --out lens_out",
    )
    return section, {"pretrained": {"lens_last_layer_kl": last_kl, "lens_first_top_site": numbers[next(iter(numbers))]}}


def _stage_dla(model, out: Path) -> tuple[Section, dict]:
    from interp.mechanisms.attention import attention_pattern
    from interp.mechanisms.dla import direct_logit_attribution

    result = direct_logit_attribution(model, [IOI_SENTENCE], answer=" Mary", wrong=" John")
    result.save(out / "dla")
    top = result.top(5, kind="head")
    mover = next(
        (label for label, value in result.top(20, kind="head") if value > 0), top[0][0]
    )  # writes the answer: a name mover
    layer, head = _parse_head(mover)
    pattern = attention_pattern(model, IOI_SENTENCE, layer, head)
    pattern.save(out / "attention")
    strongest = [f"{position}:{token!r} {weight:.2f}" for position, token, weight in pattern.strongest(query=-1, k=3)]
    error = max(result.identity_error, result.head_identity_error)
    numbers = {"logit difference": round(float(result.logit_diff.flatten()[0]), 3),
               "top heads (direct effect)": [f"{label} ({value:+.2f})" for label, value in top],
               f"{mover} (the top head writing ' Mary') attends from the last token to": strongest,
               "|sum of parts - logit difference| (identity: 0)": f"{error:.2e}"}  # fmt: skip
    section = Section(
        "Direct logit attribution and attention",
        f"How much each layer's attention and MLP, and each head, writes logit(' Mary') - logit(' John') directly on "
        f"{IOI_SENTENCE!r} (the final norm's scale frozen at the clean run). Then where the top head looks from the "
        "last token, for the top head that writes ' Mary': a name-mover head attends to the indirect object.",
        figures=(result.figure(), pattern.figure()),
        numbers=numbers,
        code=f"interp dla --model {model.cfg.model_name} --prompt '{IOI_SENTENCE}' --answer ' Mary' "
        "--wrong ' John' --out dla_out",
    )
    return section, {"pretrained": {"dla_identity_error": error, "dla_top_heads": numbers["top heads (direct effect)"]}}


def _parse_head(label: str) -> tuple[int, int]:
    """``"L17H3"`` -> (17, 3)."""
    layer, _, head = label.removeprefix("L").partition("H")
    return int(layer), int(head)


def _stage_induction(model, out: Path, quick: bool) -> tuple[Section, dict]:
    from interp.mechanisms.induction import induction_heads

    result = induction_heads(
        model, n_sequences=4 if quick else 8, length=30 if quick else 40, top_k=5, n_random=5, progress=False
    )
    result.save(out / "induction")
    numbers = {"loss on the first occurrence (nats)": round(result.loss_first, 3),
               "loss on the repeat (nats)": round(result.loss_repeat, 3), "repeat / first": round(result.loss_ratio, 3),
               "top induction heads (score)": [f"L{layer}H{head} ({score:.2f})"
                                               for layer, head, score in result.top(5)],
               "repeat-loss increase, top-5 ablated / 5 random same-layer heads ablated":
                   round(result.ablation_ratio, 2)}  # fmt: skip
    section = Section(
        "Induction heads",
        "Sequences of random tokens repeated once: the first half cannot be predicted, the repeat can by copying. "
        "A head's induction score is its attention from a repeated token to the token after that token's first "
        "occurrence. Mean-ablating the top-5 heads should undo the copying far more than ablating 5 random heads "
        "of the same layers.",
        figures=(result.figure(),),
        numbers=numbers,
        code="python circuits/induction_smollm2/induction_smollm2.py --out runs/induction_smollm2",
    )
    return section, {
        "pretrained": {"induction_loss_ratio": result.loss_ratio, "induction_ablation_ratio": result.ablation_ratio}
    }


def _stage_ioi(model, out: Path, quick: bool) -> tuple[Section, dict]:
    from interp.mechanisms.ioi import ioi_prompts
    from interp.metrics import logit_diff
    from interp.patching import activation_patching, attribution_patching

    prompts = ioi_prompts(model.tokenizer, n_prompts=8 if quick else 16, seed=0)
    metric = logit_diff(answer=prompts.io_ids, wrong=prompts.s_ids)
    with torch.no_grad():
        baseline = metric(model(prompts.clean_tokens.to(model.cfg.device)).float().cpu())
    exact = activation_patching(
        model,
        prompts.clean_tokens,
        prompts.corrupt_tokens,
        metric,
        site="attn_head_out",
        by_position=False,
        progress=False,
    )
    linear = attribution_patching(
        model, prompts.clean_tokens, prompts.corrupt_tokens, metric, site="attn_head_out", by_position=False
    )
    exact.save(out / "ioi" / "heads")
    linear.save(out / "ioi" / "heads_attribution")
    correlation = float(torch.corrcoef(torch.stack([exact.effect.flatten(), linear.effect.flatten()]))[0, 1])
    fraction = float((baseline > 0).float().mean())
    numbers = {"prompts (ABBA and BABA)": len(prompts),
               "mean logit difference, IO - S": round(float(baseline.mean()), 3),
               "prompts with logit difference > 0": f"{fraction:.0%}",
               "top heads (activation patching, denoising)": [f"{cell.label} ({cell.effect:+.2f})"
                                                              for cell in exact.top(5)],
               "fast path ran": exact.fast_path,
               "attribution vs activation patching, correlation over heads": round(correlation, 3)}  # fmt: skip
    section = Section(
        "Indirect object identification: head patching",
        "Prompts like 'When Mary and John went to the store, John gave a drink to' (the indirect object ' Mary' "
        "should follow) and their ABC corruption (all three names replaced by others). Each head's output is "
        "patched from the clean run into the corrupt one (denoising); the metric is logit(IO) - logit(S). "
        "Attribution patching estimates the same from one backward pass.",
        figures=(exact.figure(), linear.figure()),
        numbers=numbers,
        code="python circuits/ioi_smollm2/ioi_smollm2.py",
    )
    return section, {"pretrained": {"ioi_fraction_positive": fraction, "ioi_logit_diff": float(baseline.mean()),
                                    "ioi_attribution_correlation": correlation,
                                    "ioi_fast_path": exact.fast_path}}  # fmt: skip
