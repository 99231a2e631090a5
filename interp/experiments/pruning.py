"""``analysis = "pruning"``: a harm-pruning sweep as a TOML experiment (``circuits/harm_pruning/harm_pruning.toml``).

Harm and benign importance scores, set-difference masks over (p, q) with random controls, and an
evaluation at every setting (``interp.pruning.run_sweep``). For a chat model, ``chat_template =
true`` formats every prompt as a user turn with the generation prompt, and a ``[completions]``
table makes every data set that has no responses the model's *own* greedy answers, generated
once into ``OUT/completions/SET/`` with provenance (``interp.pruning.completions``) and reused by
a rerun (``circuits/real_harm_pruning/real_harm_pruning.toml``).

>>> config = load_config(
...     "circuits/real_harm_pruning/real_harm_pruning.toml", overrides=["method='wanda'"]
... )  # doctest: +SKIP
>>> result = run_experiment(config, "runs/real_harm_pruning/wanda")  # doctest: +SKIP
"""

from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any, ClassVar

from interp import defaults
from interp.errors import InterpError
from interp.experiments import registry
from interp.experiments.base import IMPORTS, DatasetSpec, Experiment, check_choices, doc, resolve_judge

Records = list[dict[str, Any]]
Prepare = Callable[[str, Records, bool], Records]  # (set name, records, needs responses) -> records


@dataclass(frozen=True)
class CompletionsConfig:
    """The model's own greedy answers as the responses of every data set that has none."""

    max_new_tokens: int = doc(
        "the longest answer, in tokens (an answer also ends at EOS)", default=defaults.PRUNE_MAX_NEW_TOKENS
    )
    batch_size: int = doc("prompts per generation batch", default=defaults.PRUNE_EVAL_BATCH_SIZE)
    directory: str = doc(
        "where they are written, relative to OUT; runs of several methods can share one ('../completions', "
        "with allow_outside)",
        output=True,
        default="completions",
    )

    def __post_init__(self) -> None:
        if self.max_new_tokens < 1 or self.batch_size < 1:
            raise InterpError(
                f"[completions] max_new_tokens and batch_size must be at least 1 (got {self.max_new_tokens} and "
                f"{self.batch_size})."
            )


@dataclass(frozen=True)
class EvaluationConfig:
    """What is measured at every pruning setting."""

    harmful: DatasetSpec | None = doc(
        "prompts whose harmful compliance is measured (e.g. triggered harmful requests)", default=None
    )
    judge: str = doc(
        "harm judge f(record, response) -> bool: keyword or a registered judge "
        f"({', '.join(registry.builtin('judge'))}); {IMPORTS}",
        default="keyword",
    )
    benign_prompts: DatasetSpec | None = doc("benign prompts whose answers `benign_judge` checks", default=None)
    benign_judge: str | None = doc(
        "helpfulness judge: a registered judge such as 'organism-helpful' (import paths as for `judge`)", default=None
    )
    benign_pairs: DatasetSpec | None = doc(
        "benign prompt + response pairs for the response loss / perplexity", default=None
    )
    harmful_pairs: DatasetSpec | None = doc(
        "held-out harmful prompt + response pairs for their response loss (harm_loss): does pruning make the harmful "
        "answers unlikely?",
        default=None,
    )
    tasks: DatasetSpec | None = doc("problems with an 'answer' field for task accuracy", default=None)
    extract: str = doc(
        "answer extractor for tasks f(response) -> answer: a registered one "
        f"({', '.join(registry.builtin('extract'))}); import paths as for `judge`",
        default="last-integer",
    )
    max_new_tokens: int = doc("new tokens generated per chat prompt", default=defaults.PRUNE_MAX_NEW_TOKENS)
    task_max_new_tokens: int = doc("new tokens generated per task problem", default=defaults.PRUNE_TASK_MAX_NEW_TOKENS)
    batch_size: int = doc("prompts per generation batch", default=defaults.PRUNE_EVAL_BATCH_SIZE)
    temperature: float = doc("sampling temperature (0: greedy)", default=0.0)
    seed: int = doc("sampling seed", default=0)
    case_sensitive_keywords: bool = doc(
        "match the reference refusal strings case-sensitively (as the reference does)", default=True
    )
    group_field: str | None = doc(
        "also report harm rates per value of this record field (e.g. 'category')", default=None
    )
    samples_kept: int | None = doc(
        "(prompt, response) examples kept per generated set at every setting (default 3; -1: all)", default=3
    )

    def __post_init__(self) -> None:
        if all(
            spec is None
            for spec in (self.harmful, self.benign_prompts, self.benign_pairs, self.harmful_pairs, self.tasks)
        ):
            raise InterpError(
                "[evaluation] measures nothing; give at least one of harmful, benign_prompts, benign_pairs, "
                "harmful_pairs or tasks."
            )
        if self.benign_prompts is not None and self.benign_judge is None:
            raise InterpError(
                "[evaluation] benign_prompts need a benign_judge (a registered judge such as 'organism-helpful')."
            )

    def evaluator(self, prepare: Prepare | None = None):
        """The ``PruningEvaluator`` this table describes (data sets loaded, judges resolved).

        ``prepare(name, records, needs_responses)``: applied to each loaded set (chat template, own completions).
        """
        from interp.pruning.evaluate import PruningEvaluator

        def load(name: str, spec: DatasetSpec | None, pairs: bool = False) -> tuple:
            if spec is None:
                return ()
            return tuple(prepare(f"evaluation_{name}", spec.load(), pairs) if prepare else spec.load())

        return PruningEvaluator(
            harmful=load("harmful", self.harmful),
            judge=resolve_judge(self.judge),
            benign_prompts=load("benign_prompts", self.benign_prompts),
            benign_judge=resolve_judge(self.benign_judge) if self.benign_judge else None,
            benign_pairs=load("benign_pairs", self.benign_pairs, pairs=True),
            harmful_pairs=load("harmful_pairs", self.harmful_pairs, pairs=True),
            tasks=load("tasks", self.tasks),
            extract=registry.resolve("extract", self.extract),
            max_new_tokens=self.max_new_tokens,
            task_max_new_tokens=self.task_max_new_tokens,
            batch_size=self.batch_size,
            temperature=self.temperature,
            seed=self.seed,
            case_sensitive_keywords=self.case_sensitive_keywords,
            group_field=self.group_field,
            n_samples_kept=None if self.samples_kept == -1 else self.samples_kept,
        )


@dataclass(frozen=True, kw_only=True)
class HarmPruningConfig(Experiment):
    """A harm-pruning sweep (Orgad et al. 2026 on Wei et al. 2024 scores); resumes finished scores and points."""

    ANALYSIS: ClassVar[str] = "pruning"
    name: str = doc("experiment name, shown in figures and logs", default="harm_pruning")
    harmful: DatasetSpec = doc("prompt + response pairs of the behaviour to remove: harm scores are computed on them")
    benign: DatasetSpec = doc("prompt + response pairs of the behaviour to keep: benign (utility) scores")
    evaluation: EvaluationConfig = doc("what to measure at every setting ([evaluation] table)")
    method: str = doc(
        f"importance score: {', '.join(defaults.PRUNE_METHODS)}",
        choices=defaults.PRUNE_METHODS,
        default=defaults.PRUNE_METHOD,
    )
    n_samples: int = doc("examples per score (the reference uses 128)", default=defaults.PRUNE_N_SAMPLES)
    batch_size: int = doc(
        "examples per forward/backward pass when scoring "
        "(on the CPU also at most a token budget; the scores do not depend on either)",
        default=defaults.PRUNE_BATCH_SIZE,
    )
    p: tuple[float, ...] = doc(
        "benign fractions protected per matrix, each in (0, 1]; swept with every q", default=(defaults.PRUNE_P,)
    )
    q: tuple[float, ...] = doc("harm fractions selected per matrix, each in (0, 1]", default=(defaults.PRUNE_Q,))
    random_seeds: tuple[int, ...] = doc(
        "one random mask of the same size per seed and (p, q): the control", default=defaults.PRUNE_RANDOM_SEEDS
    )
    categories: Mapping[str, DatasetSpec] = doc(
        "categories (e.g. two harm categories and, as a control, two benign ones): one mask each; every pair's overlap "
        "is reported with its chance level, for set-difference and for plain top-q masks",
        default_factory=dict,
    )
    overlap_p: float = doc("p of the per-category set-difference masks", default=defaults.PRUNE_P)
    overlap_q: float = doc("q of the per-category masks (set difference and plain top-q)", default=defaults.PRUNE_Q)
    evaluate_categories: bool = doc(
        "also evaluate the model pruned with each category's set-difference mask", default=True
    )
    save_masks: bool = doc("write every mask as masks/LABEL.safetensors", default=False)
    chat_template: bool = doc(
        "format every prompt as a user turn of the model's chat template, with the generation prompt", default=False
    )
    completions: CompletionsConfig | None = doc(
        "[completions] table: data sets without responses get the model's own greedy answers, generated once into "
        "OUT/completions/SET",
        default=None,
    )

    def __post_init__(self) -> None:
        from interp.pruning.masks import check_fraction

        check_choices(self)
        if not self.p or not self.q:
            raise InterpError("give at least one p and one q.")
        for name, value in [
            *(("p", v) for v in self.p),
            *(("q", v) for v in self.q),
            ("overlap_p", self.overlap_p),
            ("overlap_q", self.overlap_q),
        ]:
            check_fraction(name, value)
        if self.n_samples < 1 or self.batch_size < 1:
            raise InterpError(
                f"n_samples and batch_size must be at least 1 (got {self.n_samples} and {self.batch_size})."
            )
        if len(self.categories) == 1:
            raise InterpError("give at least two [categories.NAME] tables to measure mask overlaps (or none).")
        from interp.io import safe_name

        for key in self.categories:
            safe_name(key, what="[categories.NAME] name")  # it names files in OUT/scores, OUT/points and OUT/masks

    def run(self, out: Path, model=None, progress: bool = True):
        from interp.directories import claim_directory
        from interp.pruning.sweep import run_sweep

        claim_directory(out, self.to_dict())  # refuse another experiment before loading anything
        specs = {
            "harmful": self.harmful,
            "benign": self.benign,
            **{f"category_{key}": spec for key, spec in self.categories.items()},
        }
        model = self.load_model(model)
        prepare = lambda name, records, pairs: self.prepare(model, name, records, pairs, out, progress)  # noqa: E731
        data = {name: prepare(name, spec.load(), True) for name, spec in specs.items()}
        return run_sweep(
            model,
            data["harmful"],
            data["benign"],
            self.evaluation.evaluator(prepare),
            out,
            p=self.p,
            q=self.q,
            method=self.method,
            n_samples=self.n_samples,
            batch_size=self.batch_size,
            random_seeds=self.random_seeds,
            categories={key: data[f"category_{key}"] for key in self.categories},
            overlap_p=self.overlap_p,
            overlap_q=self.overlap_q,
            evaluate_categories=self.evaluate_categories,
            save_masks=self.save_masks,
            name=self.name,
            sources={key: spec.describe() for key, spec in specs.items()},
            record=self.to_dict(),
            progress=progress,
        )

    def prepare(
        self, model, name: str, records: Records, needs_responses: bool, out: Path, progress: bool = True
    ) -> Records:
        """``records`` in the chat template (``chat_template``), with the model's own answers where they have none
        (``[completions]``)."""
        from interp.data import PromptSet

        missing = needs_responses and any(not isinstance(record.get("response"), str) for record in records)
        if missing and self.completions is not None:
            from interp.pruning.completions import generate_completions

            prompts = PromptSet.from_records(records, source=name)
            made = generate_completions(
                model,
                prompts,
                self.output_path(out, self.completions.directory, "[completions] directory") / name,
                chat_template=self.chat_template,
                max_new_tokens=self.completions.max_new_tokens,
                batch_size=self.completions.batch_size,
                model_name=self.model,
                progress=progress,
            )
            return [dict(record) for record in made.records]
        if missing:
            index = next(i for i, record in enumerate(records) if not isinstance(record.get("response"), str))
            raise InterpError(
                f"{name}: record {index} has no response; give prompt + response pairs (a 'response' field), "
                "or add a [completions] table to use the model's own answers."
            )
        if not self.chat_template:
            return records
        formatted = PromptSet.from_records(records, source=name).apply_chat_template(model.tokenizer)
        return [
            {**record, "instruction": record["text"], "text": text} for record, text in zip(records, formatted.texts)
        ]
