"""``interp run FILE.toml --out DIR``: run (or resume) an experiment of any analysis described in TOML.

The keys of every analysis come from the config dataclasses of ``interp.experiments`` (their field
docs), so ``interp run --help`` lists exactly what a file may set.
"""

import argparse
import dataclasses
from pathlib import Path

from interp.commands.common import add_subcommand

EXAMPLE = (
    "interp run circuits/harm_pruning/harm_pruning.toml --out runs/harm_pruning\n"
    "  interp run circuits/harm_pruning/harm_pruning.toml --out runs/small --set n_samples=16 --set 'q=[0.01]' --set "
    "evaluation.harmful.limit=24"
)


def register(subparsers) -> None:
    from interp.experiments import ANALYSES

    parser = add_subcommand(
        subparsers,
        "run",
        run,
        help=f"Run (or resume) an experiment described in a TOML file: {', '.join(ANALYSES)}.",
        example=EXAMPLE,
    )
    parser.epilog = f"{parser.epilog}\n\nTOML keys:\n{toml_keys()}"
    parser.add_argument(
        "config", type=Path, help="experiment file (TOML), e.g. circuits/harm_pruning/harm_pruning.toml"
    )
    parser.add_argument(
        "--out",
        required=True,
        type=Path,
        help="output directory; rerun with the same --out to resume (or to reuse a finished result)",
    )
    parser.add_argument(
        "--set",
        action="append",
        default=[],
        metavar="KEY=VALUE",
        help="override a key of the file with a TOML value (dotted keys reach into tables), e.g. --set "
        "evaluation.harmful.limit=8; repeatable",
    )
    parser.add_argument(
        "--allow-imports",
        action="store_true",
        help="let the file name its judges, data loaders, extractors and embedders by import path "
        "'module:function'; "
        "importing runs that module's code, so pass it only for files you trust (without it, only registered names "
        "are called)",
    )
    parser.add_argument(
        "--allow-outside",
        action="store_true",
        help="let the paths the experiment writes to ([completions] directory, orthogonalize_out) lead outside --out, "
        "as allow_outside = true in the file (without either, such a path is refused before anything runs)",
    )
    parser.add_argument("--quiet", action="store_true", help="no progress bars")


def run(args: argparse.Namespace) -> int:
    from interp.experiments import load_config, run_experiment

    config = load_config(args.config, overrides=args.set)
    result = run_experiment(
        config,
        args.out,
        progress=not args.quiet,
        allow_imports=args.allow_imports,
        allow_outside=args.allow_outside,
    )
    if callable(getattr(result, "summary", None)):
        print(result.summary())
    written = ", ".join(sorted(path.name for path in args.out.iterdir() if not path.name.startswith(".")))
    print(f"{config.ANALYSIS} experiment {config.name!r} in {args.out}: {written}")
    return 0


def toml_keys() -> str:
    """Every analysis' TOML keys with their defaults and docs, read from the config dataclasses."""
    from interp.experiments import ANALYSES, DEFAULT_ANALYSIS, DatasetSpec, Experiment

    common = {item.name for item in dataclasses.fields(Experiment)} - {"name"}  # each analysis has its own default name
    parts = [
        f"every analysis:\n  analysis = {DEFAULT_ANALYSIS!r}  which analysis runs: {', '.join(ANALYSES)}\n"
        + _keys(Experiment, skip={"name"})
    ]
    parts += [
        f'analysis = "{name}": {(cls.__doc__ or "").strip()}\n' + _keys(cls, skip=common)
        for name, cls in ANALYSES.items()
    ]
    spec = "\n".join(f"  {item.name}: {item.metadata.get('doc', '')}" for item in dataclasses.fields(DatasetSpec))
    return "\n\n".join([*parts, f"data-set tables (path = ... or call = ...):\n{spec}"])


def _keys(cls: type, prefix: str = "", skip: frozenset[str] | set[str] = frozenset()) -> str:
    from interp.experiments import DatasetSpec, table_type, type_options

    lines, tables = [], []
    for item in (item for item in dataclasses.fields(cls) if item.name not in skip):
        doc, options = item.metadata.get("doc", ""), type_options(item.type)
        nested = next(
            (option for option in options if isinstance(option, type) and dataclasses.is_dataclass(option)), None
        )
        if table_type(options[0]) is not None:
            lines.append(f"  [{prefix}{item.name}.NAME]  {doc} (data-set tables)")
        elif nested is DatasetSpec:
            lines.append(f"  [{prefix}{item.name}]  {doc} (a data-set table)")
        elif nested is not None:
            tables.append(f"  [{prefix}{item.name}]  {doc}\n" + _keys(nested, prefix=f"{prefix}{item.name}."))
        else:
            default = (
                repr(item.default_factory())
                if item.default_factory is not dataclasses.MISSING
                else "required"
                if item.default is dataclasses.MISSING
                else repr(item.default)
            )
            lines.append(f"  {prefix}{item.name} = {default}  {doc}")
    return "\n".join(lines + tables)
