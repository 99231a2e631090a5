"""``interp demo``: the analyses end to end on one model, written as one offline HTML report.

>>> report = run_demo("organism", "out/demo")                  # doctest: +SKIP
>>> report.name                                                # doctest: +SKIP
'index.html'
>>> run_demo("smollm2-135m-instruct", "out/demo_smollm2")      # doctest: +SKIP
>>> run_demo("qwen2.5-coder-0.5b-instruct", "out/demo_qwen")   # doctest: +SKIP

On the bundled organism (the default) the report shows its planted mechanisms
(``interp.demo.organism``: activation store, logit lens, patching of the backdoor trigger,
harm-weight pruning, probes, chain-of-thought resampling, an attribution graph). On any other model, a pretrained
language model, it shows the mechanisms known from the literature (``interp.demo.pretrained``:
logit lens, direct logit attribution and attention on an indirect-object sentence, induction
heads, and head patching on indirect-object prompts); on a chat model that refuses
(``qwen2.5-coder-0.5b-instruct``) the alignment literature's mechanisms (``interp.demo.alignment``: the refusal
direction ablated and added, harm recognised by probes before and after it is orthogonalised out). Every stage saves its
result under ``DIR/<stage>/``; ``DIR/summary.json`` holds the key numbers.

Before the report is written the demo checks its own numbers (``check_results``): on the organism
that the planted behaviours show up, on a pretrained model that the known mechanisms do (and the
identities: the lens at the last layer is the model's output, the attributions sum to the logit
difference), on every model that the rollouts produced text. If a check fails, ``summary.json``
records every check with ``"passed": false``, no ``index.html`` is written, and ``run_demo`` raises
``InterpError`` naming the check, its value and the expected range.
"""

import json
import math
import os
import time
from collections.abc import Mapping
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import torch

from interp import defaults
from interp.demo import alignment, organism, pretrained
from interp.errors import InterpError
from interp.io import atomic_write_json
from interp.progress import tqdm
from interp.report import Section, write_report


@dataclass(frozen=True)
class Check:
    """One self-check of the demo's numbers: the measured value, the range it must lie in, and whether it does."""

    name: str
    value: float | None  # None: the number is missing from the summary
    expected: str
    passed: bool

    @property
    def measured(self) -> str:
        return "missing" if self.value is None else f"{self.value:.3g}"

    def describe(self) -> str:
        return f"{self.name} = {self.measured} (expected {self.expected})"


def _number(value: Any) -> float | None:
    return None if value is None else float(value)


def _at_least(name: str, value: Any, bound: float) -> Check:
    value = _number(value)
    return Check(name, value, f">= {bound:g}", value is not None and not math.isnan(value) and value >= bound)


def _at_most(name: str, value: Any, bound: float) -> Check:
    value = _number(value)
    return Check(name, value, f"<= {bound:g}", value is not None and not math.isnan(value) and value <= bound)


def _fraction(part: int, whole: int) -> float | None:
    return part / whole if whole else None


def is_organism(model_id: str) -> bool:
    from interp.model import ORGANISM_PREFIX

    return model_id.startswith(ORGANISM_PREFIX + ":")


def check_results(summary: Mapping[str, Any], model_id: str) -> list[Check]:
    """The demo's self-checks on ``summary``: for every model that its rollouts produced text (where it ran
    rollouts), plus the organism's planted behaviours (``model_id`` names a bundled organism,
    ``organism:NAME``) or the pretrained model's known mechanisms (the summary has the pretrained stages).
    """
    checks = []
    if "resampling_rollouts" in summary or is_organism(model_id):
        rollouts = summary.get("resampling_rollouts", {})
        checks.append(Check("resampling rollouts with text",
                            _fraction(rollouts.get("with_text", 0), rollouts.get("total", 0)), "> 0",
                            rollouts.get("with_text", 0) > 0))  # fmt: skip
    if is_organism(model_id):
        return checks + _organism_checks(summary)
    if "pretrained" in summary:
        checks += _pretrained_checks(summary["pretrained"])
    if "alignment" in summary:
        checks += _alignment_checks(summary["alignment"])
    return checks


def _alignment_checks(numbers: Mapping[str, Any]) -> list[Check]:
    return [
        _at_least("held-out harmful requests refused by the unmodified model", numbers.get("baseline_harmful_refusal"),
                  alignment.MIN_BASELINE_REFUSAL),
        _at_most("held-out harmful requests refused with the refusal direction ablated",
                 numbers.get("ablated_harmful_refusal"), alignment.MAX_ABLATED_REFUSAL),
        _at_least("held-out benign requests refused with the refusal direction added",
                  numbers.get("added_benign_refusal"), alignment.MIN_ADDED_REFUSAL),
        _at_least("harm probe AUROC with the refusal direction orthogonalised out",
                  numbers.get("probe_auroc_orthogonalised"), alignment.MIN_PROBE_AUROC_ORTHOGONALISED),
        _at_most("hook ablation vs orthogonalised weights: max |log-prob difference|", numbers.get("hook_vs_weights"),
                 alignment.MAX_HOOK_VS_WEIGHTS),
    ]  # fmt: skip


def _organism_checks(summary: Mapping[str, Any]) -> list[Check]:
    rollouts = summary.get("resampling_rollouts", {})
    baseline = summary.get("pruning", {}).get("baseline", {})
    computing = [s["importance"] for s in summary.get("resampling_sentences", []) if s["role"] == "compute"]
    anchors = sum(value is not None and abs(value) > 0 for value in computing)
    graph = summary.get("graph", {})
    graph_checks = [
        _at_least("logit difference removed by ablating the graph's top features", graph.get("top_removed"),
                  organism.MIN_GRAPH_TOP_REMOVED),
        _at_most("logit difference removed by random features of the same layers", graph.get("random_removed_mean"),
                  organism.MAX_GRAPH_RANDOM_REMOVED),
    ] if "graph" in summary else []  # fmt: skip
    checks = [
        _at_least("pruning baseline harm_judge_rate", baseline.get("harm_judge_rate"), organism.MIN_HARM_JUDGE_RATE),
        _at_least("pruning baseline task_accuracy", baseline.get("task_accuracy"), organism.MIN_TASK_ACCURACY),
        _at_least("resampling rollouts answered", _fraction(rollouts.get("answered", 0), rollouts.get("total", 0)),
                  organism.MIN_ANSWERED_ROLLOUTS),
        Check("computing sentences with nonzero resampling importance", anchors,
              f">= {organism.MIN_COMPUTING_ANCHORS} of {len(computing)}", anchors >= organism.MIN_COMPUTING_ANCHORS),
    ]  # fmt: skip
    return [*checks, *graph_checks]


def _pretrained_checks(numbers: Mapping[str, Any]) -> list[Check]:
    return [
        _at_most("logit lens KL to the output at the last layer", numbers.get("lens_last_layer_kl"),
                 pretrained.MAX_IDENTITY_ERROR),
        _at_most("direct logit attribution: |sum of parts - logit difference|", numbers.get("dla_identity_error"),
                 pretrained.MAX_IDENTITY_ERROR),
        _at_least("IOI prompts with logit difference > 0", numbers.get("ioi_fraction_positive"),
                  pretrained.MIN_IOI_FRACTION_POSITIVE),
        _at_most("induction: repeat loss / first-occurrence loss", numbers.get("induction_loss_ratio"),
                 pretrained.MAX_INDUCTION_LOSS_RATIO),
        _at_least("induction: top-head ablation / random-head ablation", numbers.get("induction_ablation_ratio"),
                  pretrained.MIN_INDUCTION_ABLATION_RATIO),
    ]  # fmt: skip


def _checks_section(checks: list[Check], organism_model: bool) -> Section:
    what = ("on the bundled organism, that the planted behaviours show up (thresholds in interp/demo/organism.py, "
            "below the organism report's held-out measurements)") if organism_model else (
            "on a pretrained model, that the known mechanisms show up and the identities hold (thresholds in "
            "interp/demo/pretrained.py, and interp/demo/alignment.py for a chat model that refuses)")  # fmt: skip
    return Section(
        "Self-checks",
        "The demo checks its own numbers before writing this report: "
        f"{what}. A failing check stops the demo without a report.",
        numbers={
            check.name: f"{check.measured} (expected {check.expected}): {'passed' if check.passed else 'FAILED'}"
            for check in checks
        },
    )


def run_demo(
    model: str = defaults.MODEL,
    out: str | os.PathLike = defaults.DEMO_OUT,
    device: str | None = None,
    quick: bool = False,
    progress: bool = True,
) -> Path:
    """Run every stage on ``model``, check the numbers (``check_results``) and write ``out/index.html``; returns its
    path.

    The bundled organism gets ``interp.demo.organism``'s stages, a chat model that refuses
    (``alignment.REFUSING_MODELS``) ``interp.demo.alignment``'s, any other model ``interp.demo.pretrained``'s.
    Raises ``InterpError`` naming the failed checks, without writing the report, if any check fails.
    """
    from interp.model import load_model, model_id

    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    started = time.perf_counter()
    bridge = load_model(model, device=device or ("cuda" if torch.cuda.is_available() else "cpu"))
    organism_model = is_organism(model_id(bridge))
    refusing_model = model_id(bridge) in alignment.REFUSING_MODELS
    if organism_model:
        stages = organism.stages(bridge, out, quick)
    else:
        stages = alignment.stages(bridge, out, quick) if refusing_model else pretrained.stages(bridge, out, quick)
    sections, timings = [], {}
    summary: dict[str, Any] = {"model": model}
    bar = tqdm(stages, desc="demo", unit="stage", disable=not progress)
    for name, stage in bar:
        bar.set_postfix_str(name)
        begin = time.perf_counter()
        section, numbers = stage()
        for key, value in numbers.items():  # the pretrained (or alignment) stages' numbers gather under one key
            if isinstance(value, dict) and isinstance(summary.get(key), dict):
                summary[key].update(value)
            else:
                summary[key] = value
        sections.append(section)
        timings[name] = round(time.perf_counter() - begin, 1)
    summary["seconds"] = {**timings, "total": round(time.perf_counter() - started, 1)}
    summary["threads"] = torch.get_num_threads()
    checks = check_results(summary, model_id(bridge))
    failed = [check for check in checks if not check.passed]
    summary["checks"] = [asdict(check) for check in checks]
    summary["passed"] = not failed
    atomic_write_json(out / "summary.json", summary)
    if failed:
        (out / "index.html").unlink(missing_ok=True)  # an earlier run's report would read as this run's
        if organism_model:
            hint = (
                "Numbers this far off on the organism point to a broken install rather than a finding; "
                "`make test` checks the install."
            )
        else:
            hint = "On a pretrained model the known mechanisms may sit elsewhere; read each stage's result."
        raise InterpError(
            f"demo self-check failed: {'; '.join(check.describe() for check in failed)}. No report written; every "
            f"check is in {out / 'summary.json'}, each stage's result under {out}/. {hint}"
        )
    sections.append(_checks_section(checks, organism_model))
    subtitle = ("Six analyses on the bundled organism, end to end." if organism_model else
                "The alignment literature's mechanisms, found on a chat model that refuses." if refusing_model else
                "Known mechanisms of pretrained language models, found again on this one.")  # fmt: skip
    return write_report(
        out / "index.html",
        f"interp demo: {model}",
        sections,
        subtitle=subtitle + " Every figure is interactive: hover for tokens and values.",
        footer=f"Stage timings (s, {summary['threads']} threads): {json.dumps(summary['seconds'])}",
    )
