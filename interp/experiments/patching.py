"""``analysis = "patching"``: activation or attribution patching of one site, clean against corrupt prompts."""

from dataclasses import dataclass
from pathlib import Path
from typing import ClassVar, Literal

from interp import defaults
from interp.errors import InterpError
from interp.experiments.base import DatasetSpec, Experiment, check_choices, doc

METRICS = ("logit_diff", "probability", "kl")  # what a patching experiment measures
METHODS = ("activation", "attribution")  # exact patching, or its gradient estimate


@dataclass(frozen=True, kw_only=True)
class PatchingConfig(Experiment):
    """Activation or attribution patching of one site: which layer, position and head carry a behaviour."""

    ANALYSIS: ClassVar[str] = "patching"
    name: str = doc("experiment name, shown in figures and logs", default="patching")
    clean: DatasetSpec = doc("the clean prompts")
    corrupt: DatasetSpec = doc("the corrupt prompts: same order and token length as the clean ones")
    metric: str = doc(
        "logit_diff (needs answer and wrong), probability (needs answer) or kl (to the clean run's next-token "
        "distribution)",
        choices=METRICS,
        default="logit_diff",
    )
    answer: str | None = doc("the answer token, e.g. ' mary' or id:123 (or answer_field)", default=None)
    wrong: str | None = doc(
        "the wrong-answer token of logit_diff, e.g. ' john' or id:123 (or wrong_field)", default=None
    )
    answer_field: str | None = doc("read each prompt's answer token from this field of the clean records", default=None)
    wrong_field: str | None = doc("read each prompt's wrong token from this field of the clean records", default=None)
    site: str = doc(
        "resid_pre, resid_mid, resid_post, attn_out, mlp_out, attn_head_out, attn_head_value, attn_head_pattern, ...",
        default=defaults.PATCH_SITE,
    )
    method: str = doc(
        "activation (exact) or attribution (the gradient estimate)", choices=METHODS, default="activation"
    )
    by_position: bool = doc(
        "one cell per position; false: each cell patches every position", default=defaults.PATCH_BY_POSITION
    )
    direction: str = doc(
        "denoising: clean into the corrupt run; noising: corrupt into the clean run",
        choices=defaults.PATCH_DIRECTIONS,
        default=defaults.PATCH_DIRECTION,
    )
    normalize: bool = doc(
        "report (value - corrupt) / (clean - corrupt): 0 = the corrupt run, 1 = the clean run", default=False
    )
    batch_size: int | None = doc(
        f"most rows (cells x prompts) per forward (default: from a {defaults.PATCH_MEMORY_BUDGET_BYTES / 2**30:g} GiB "
        "budget)",
        default=None,
    )
    chat_template: bool = doc("wrap each prompt as a user turn with the tokenizer's chat template", default=False)

    def __post_init__(self) -> None:
        check_choices(self)
        if self.metric != "kl" and self.answer is None and self.answer_field is None:
            raise InterpError(f"metric {self.metric} needs `answer` (a token) or `answer_field`.")
        if self.metric == "logit_diff" and self.wrong is None and self.wrong_field is None:
            raise InterpError("metric logit_diff needs `wrong` (a token) or `wrong_field`.")

    def run(self, out: Path, model=None, progress: bool = True):
        from interp.patching import PatchingResult

        return self._once(out, (self.clean, self.corrupt), PatchingResult.load, lambda: self._patch(model, progress))

    def _patch(self, model, progress: bool):
        import torch

        from interp import metrics
        from interp.patching import activation_patching, attribution_patching
        from interp.patching.inputs import model_device, pair_tokens

        model = self.load_model(model)
        clean = self.clean.prompts(model, self.chat_template)
        clean_tokens, corrupt_tokens = (
            tokens.to(model_device(model))
            for tokens in pair_tokens(model, clean, self.corrupt.prompts(model, self.chat_template))
        )

        def answer_tokens(value: str | None, name: str | None, key: str) -> str | list[str]:
            if name:
                return [str(v) for v in clean.field(name)]
            if value is None:  # refused by __post_init__
                raise InterpError(f"metric {self.metric} needs `{key}` (a token) or `{key}_field`.")
            return value

        metric: metrics.Metric
        with torch.no_grad():
            if self.metric == "kl":
                metric = metrics.kl_divergence(model(clean_tokens))
            elif self.metric == "logit_diff":
                answer = answer_tokens(self.answer, self.answer_field, "answer")
                metric = metrics.logit_diff(
                    answer, answer_tokens(self.wrong, self.wrong_field, "wrong"), model.tokenizer
                )
            else:
                metric = metrics.probability(answer_tokens(self.answer, self.answer_field, "answer"), model.tokenizer)
            if self.normalize:
                metric = metrics.normalized(metric, model(clean_tokens), model(corrupt_tokens))
        direction: Literal["denoising", "noising"] = "noising" if self.direction == "noising" else "denoising"
        if self.method == "attribution":
            return attribution_patching(
                model,
                clean_tokens,
                corrupt_tokens,
                metric,
                site=self.site,
                by_position=self.by_position,
                direction=direction,
            )
        return activation_patching(
            model,
            clean_tokens,
            corrupt_tokens,
            metric,
            site=self.site,
            by_position=self.by_position,
            direction=direction,
            batch_size=self.batch_size,
            progress=progress,
        )
