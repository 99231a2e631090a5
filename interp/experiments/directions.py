"""``analysis = "directions"``: the refusal direction of Arditi et al. 2024 as a TOML experiment.

``find_directions`` on harmful and benign instructions (each a file read as ``interp direction
find`` reads it, or a registered data loader), split into training and scoring prompts as that
command splits them; the ``DirectionResult`` is written to ``--out`` beside ``config.json``, and a
rerun of the same config and data loads it instead of scoring again. With ``orthogonalize_out``
a Hugging Face model directory orthogonalised against the chosen direction is written there too
(outside ``--out``; a rerun finds it written and leaves it).

>>> config = load_config(
...     "circuits/refusal_direction/refusal_direction.toml", overrides=["harmful.path='advbench.csv'"]
... )  # doctest: +SKIP
>>> result = run_experiment(config, "runs/refusal_direction")  # doctest: +SKIP
"""

import dataclasses
import json
import math
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any, ClassVar

from interp import defaults
from interp.errors import InterpError
from interp.experiments import registry
from interp.experiments.base import IMPORTS, Experiment, doc

# find_directions' defaults, from interp.defaults (reading a TOML file imports no torch)
REFUSAL_STARTS = defaults.DIRECTION_REFUSAL_STARTS
MAX_KL = defaults.DIRECTION_MAX_KL
MAX_LAYER_FRACTION = defaults.DIRECTION_MAX_LAYER_FRACTION
BATCH_SIZE = defaults.DIRECTION_BATCH_SIZE
SPLITS = ("train", "heldout")


@dataclass(frozen=True)
class InstructionsSpec:
    """Instructions: a file (as ``interp direction find --harmful F`` reads it) or a registered data loader."""

    path: str | None = doc(
        "CSV with a header (AdvBench: 'goal'), JSONL or TXT (one per line); relative to the TOML file",
        path=True,
        default=None,
    )
    column: str | None = doc(
        "the field holding the instruction (default: the first of goal, prompt, behavior, instruction, text)",
        default=None,
    )
    call: str | None = doc(
        f"a registered data loader that returns a list of dicts ({', '.join(registry.builtin('data'))}); {IMPORTS}",
        default=None,
    )
    kwargs: Mapping[str, Any] = doc("keyword arguments for `call`", default_factory=dict)

    def __post_init__(self) -> None:
        if (self.path is None) == (self.call is None):
            raise InterpError(
                "an instruction set needs exactly one of `path` (a CSV, JSONL or TXT file) or `call` (a registered "
                "data loader)."
            )

    def read(self, label: str):
        """The instructions as a ``PromptSet`` with ``label``; a ``split`` field (train / heldout) is kept."""
        from interp.directions.prompts import instructions_from_records, read_instructions

        if self.path is not None:
            return read_instructions(self.path, label=label, column=self.column)
        if self.call is None:  # refused by __post_init__
            raise InterpError(
                "an instruction set needs exactly one of `path` (a file) or `call` (a registered data loader)."
            )
        records = registry.resolve("data", self.call)(**dict(self.kwargs))
        if not isinstance(records, (list, tuple)) or not records or not all(isinstance(r, Mapping) for r in records):
            raise InterpError(f"{self.describe()} must return a non-empty list of dicts, got {type(records).__name__}.")
        return instructions_from_records(records, label, self.column, source=self.describe(), splits=SPLITS)

    def load(self) -> list[dict[str, Any]]:
        """The records (what the experiment's inputs hash covers)."""
        return [dict(record) for record in self.read("").records]

    def describe(self) -> str:
        return self.path or f"{self.call}({', '.join(f'{k}={v!r}' for k, v in dict(self.kwargs).items())})"


@dataclass(frozen=True, kw_only=True)
class DirectionsConfig(Experiment):
    """Refusal direction (Arditi et al. 2024): difference-of-means candidates per layer and post-instruction position,
    selected by ablation/addition/KL."""

    ANALYSIS: ClassVar[str] = "directions"
    name: str = doc("experiment name, shown in figures and logs", default="refusal_direction")
    harmful: InstructionsSpec = doc(
        "harmful instructions; a 'split' field (train/heldout) is used, else every 4th is held out for scoring"
    )
    benign: InstructionsSpec = doc("benign instructions, split the same way")
    n_train: int | None = doc("at most this many training prompts per class (default: all)", default=None)
    n_val: int | None = doc("at most this many held-out prompts per class for the scores (default: all)", default=None)
    layers: tuple[int, ...] | None = doc("the layers whose candidates are scored (default: all)", default=None)
    positions: tuple[int, ...] | None = doc(
        "negative offsets from the prompt's end (default: the post-instruction template tokens, or -1 without a "
        "template)",
        default=None,
    )
    refusal_starts: tuple[str, ...] = doc("words whose first tokens count as a refusal start", default=REFUSAL_STARTS)
    max_kl: float = doc("selection filter: KL on benign prompts under ablation", default=MAX_KL)
    max_layer_fraction: float = doc(
        "selection filter: layer < this fraction of the layers, in (0, 1]", default=MAX_LAYER_FRACTION
    )
    chat_template: bool = doc(
        "wrap each instruction as a user turn of the tokenizer's chat template (false: as they are)", default=True
    )
    batch_size: int = doc("prompts per forward pass", default=BATCH_SIZE)
    orthogonalize_out: str | None = doc(
        "also write the model orthogonalised against the chosen direction to this new directory (outside --out; "
        "relative to the TOML file; needs allow_outside); adding or changing it does not score the candidates again",
        path=True,
        output=True,
        default=None,
    )

    def __post_init__(self) -> None:
        if not 0 < self.max_layer_fraction <= 1:
            raise InterpError(f"max_layer_fraction must be a number in (0, 1], got {self.max_layer_fraction!r}.")
        if self.max_kl < 0:
            raise InterpError(f"max_kl must be a number >= 0, got {self.max_kl!r}.")
        if self.positions is not None and (not self.positions or any(p >= 0 for p in self.positions)):
            raise InterpError(
                "positions must be negative offsets from the prompt's end, e.g. [-1] for the last token, got "
                f"{list(self.positions)}."
            )
        if self.layers is not None and (not self.layers or any(layer < 0 for layer in self.layers)):
            raise InterpError(f"layers must be layer numbers >= 0, got {list(self.layers)}.")
        if not self.refusal_starts or not all(word.strip() for word in self.refusal_starts):
            raise InterpError(
                f"refusal_starts must be non-empty words such as 'I', 'Sorry', got {list(self.refusal_starts)}."
            )
        if self.orthogonalize_out is not None and not self.orthogonalize_out.strip():
            raise InterpError("orthogonalize_out must be a directory path, got an empty string.")

    def prompts(self) -> tuple:
        """(harmful, benign, held-out harmful, held-out benign) as ``interp direction find`` splits and trims them."""
        from interp.directions import split_instructions

        (harmful, val_harmful), (benign, val_benign) = (
            split_instructions(spec.read(label)) for spec, label in ((self.harmful, "harmful"), (self.benign, "benign"))
        )
        if self.n_train is not None:
            harmful, benign = (p.select(range(min(self.n_train, len(p)))) for p in (harmful, benign))
        if self.n_val is not None:
            val_harmful, val_benign = (p.select(range(min(self.n_val, len(p)))) for p in (val_harmful, val_benign))
        return harmful, benign, val_harmful, val_benign

    def run(self, out: Path, model=None, progress: bool = True):
        from interp.directions import DirectionResult, find_directions

        target = self._orthogonalize_target(Path(out))  # refused before anything runs
        for table, spec in (("harmful", self.harmful), ("benign", self.benign)):
            if spec.path is not None and not Path(spec.path).is_file():
                raise InterpError(
                    f"[{table}] path {spec.path} is not a file; point it at your instructions: --set "
                    f"{table}.path=/path/to/file.csv (CSV, JSONL or TXT)."
                )
        loaded: list = []

        def get_model():
            if not loaded:
                loaded.append(self.load_model(model))
            return loaded[0]

        def compute():
            harmful, benign, val_harmful, val_benign = self.prompts()
            return find_directions(
                get_model(),
                harmful,
                benign,
                val_harmful,
                val_benign,
                positions=self.positions,
                layers=self.layers,
                refusal_starts=self.refusal_starts,
                max_kl=self.max_kl,
                max_layer_fraction=self.max_layer_fraction,
                chat_template=self.chat_template,
                batch_size=self.batch_size,
                progress=progress,
            )

        # config.json describes the result in `out`; the orthogonalised model carries its own record
        result = dataclasses.replace(self, orthogonalize_out=None)._once(
            out, (self.harmful, self.benign), DirectionResult.load, compute
        )
        if target is not None and not self._already_orthogonalized(target, result):
            from interp.directions import save_orthogonalized

            save_orthogonalized(get_model(), result.direction, target)
        return result

    def _orthogonalize_target(self, out: Path) -> Path | None:
        """``orthogonalize_out`` checked: not --out, not inside it or around it, not the model's own directory,
        writable."""
        if self.orthogonalize_out is None:
            return None
        from interp.checks import check_output_path
        from interp.directions.interventions import ORTHOGONALIZATION_FILE

        target, out = Path(self.orthogonalize_out).resolve(), out.resolve()
        if target == out or target.is_relative_to(out) or out.is_relative_to(target):
            raise InterpError(
                f"orthogonalize_out {target} must lie outside --out {out} (which holds the direction result); choose "
                "another directory."
            )
        if Path(self.model).exists() and Path(self.model).resolve() == target:
            raise InterpError(f"orthogonalize_out {target} is the model's own directory; choose a new directory.")
        check_output_path(target, flag="orthogonalize_out")
        if target.is_dir() and any(target.iterdir()) and not (target / ORTHOGONALIZATION_FILE).is_file():
            raise InterpError(
                f"orthogonalize_out {target} exists, is not empty and holds no orthogonalised model; choose a new or "
                "empty directory."
            )
        return target

    @staticmethod
    def _already_orthogonalized(target: Path, result) -> bool:
        """Whether ``target`` holds the model orthogonalised against ``result``'s direction (else an empty or new
        directory)."""
        from interp.directions import describe_saved
        from interp.directions.interventions import ORTHOGONALIZATION_FILE

        if not (target / ORTHOGONALIZATION_FILE).is_file():
            return False
        found, wanted = describe_saved(target).get("direction", {}), json.loads(json.dumps(result.direction.describe()))
        same = all(found.get(key) == wanted[key] for key in ("layer", "position", "weights_hash")) and math.isclose(
            found.get("norm", math.nan), wanted["norm"], rel_tol=1e-6
        )
        if not same:
            raise InterpError(
                f"orthogonalize_out {target} holds a model orthogonalised against another direction (layer "
                f"{found.get('layer')}, "
                f"position {found.get('position')}); delete it or choose a new directory."
            )
        return True
