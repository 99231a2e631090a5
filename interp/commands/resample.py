"""``interp resample``: sample rollouts for one problem or several, and ``interp resample analyze DIR``.

One ``--problem FILE`` writes its run to ``--out``; several files (or ``--problems FILE.jsonl``)
write each problem's run to its own subdirectory (the file's stem, or ``problem_0000`` ... for
the lines of a JSONL file). Under ``torchrun`` the ranks take the problems round-robin; each
run resumes on its own, whichever rank picks it up next time.
"""

import argparse
from pathlib import Path

from interp.commands.common import HelpFormatter, add_model_arguments, load_model_from_args
from interp.errors import InterpError
from interp.experiments.flags import add_config_flags, set_config_defaults
from interp.experiments.resampling import ResamplingConfig

# the flags of ResamplingConfig's fields (its prompt, solution and answers come from --problem FILE):
# sampling on `interp resample`, the analysis on `interp resample analyze` (and, for --analyze, as defaults)
SAMPLING_FLAGS = (
    "n",
    "temperature",
    "top_p",
    "max_new_tokens",
    "seed",
    "batch_size",
    "forced",
    "forced_max_new_tokens",
    "backend",
    "tensor_parallel_size",
)
ANALYSIS_FLAGS = ("embedder", "similarity_threshold", "match_threshold", "matrix")

RUN_EXAMPLE = "interp resample --model organism --problem problem.json --n 50 --out runs/p1"
MANY_EXAMPLE = (
    "torchrun --nproc-per-node 4 -m interp resample --model organism --problems problems.jsonl --n 50 --out runs"
)
ANALYZE_EXAMPLE = "interp resample analyze runs/p1"

PROBLEM_HELP = (  # the same text as interp.resampling.problems.PROBLEM_HELP, without importing the library for --help
    "JSON file: {\"prompt\": text the chain continues (e.g. ending in '<think>\\n'), "
    '"solution": the base chain of thought (optional: the model writes one if absent), '
    '"gt_answer": the correct answer (optional), "answer_regex": regex with one group '
    "(optional; default: the first \\boxed{})}. A Thought Anchors problem.json "
    '({"problem", "gt_answer"}) also works.'
)


def register(subparsers) -> argparse.ArgumentParser:
    """Register ``resample`` with an ``analyze`` subcommand; returns the ``resample`` parser."""
    parser = subparsers.add_parser(
        "resample",
        help="Chain-of-thought resampling: roll out from every sentence's prefix; rank sentences by importance.",
        description=(
            "Roll a model out N times from the prefix before each sentence of a chain of thought "
            "(and after the last one), grade the answers, and write rollouts.jsonl + run.json to "
            "--out (an interrupted run resumes). `interp resample analyze DIR` then computes the "
            "per-sentence importance metrics and figures."
        ),
        epilog=f"examples:\n  {RUN_EXAMPLE}\n  {MANY_EXAMPLE}\n  {ANALYZE_EXAMPLE}",
        formatter_class=HelpFormatter,
    )
    add_model_arguments(parser)
    parser.add_argument(
        "--problem", type=Path, nargs="+", help=PROBLEM_HELP + " Several files: one run per file, in --out/STEM."
    )
    parser.add_argument(
        "--problems",
        type=Path,
        default=None,
        help="JSONL file of problems (one object per line, the fields of --problem): one run per line, in "
        "--out/problem_0000, ...",
    )
    parser.add_argument(
        "--out", type=Path, help="run directory to create or resume (several problems: their parent directory)"
    )
    add_config_flags(parser, ResamplingConfig, SAMPLING_FLAGS)
    parser.add_argument("--analyze", action="store_true", help="also run the analysis when the rollouts are done")
    parser.set_defaults(handler=run_command)

    sub = parser.add_subparsers(dest="resample_command", metavar="analyze")
    analyze_parser = sub.add_parser(
        "analyze",
        help="Compute per-sentence importance from a run directory and write result.json, metrics.csv and "
        "HTML figures.",
        description="Compute per-sentence importance metrics, the sentence-to-sentence matrix and figures from a run "
        "directory.",
        epilog=f"example:\n  {ANALYZE_EXAMPLE}",
        formatter_class=HelpFormatter,
    )
    analyze_parser.add_argument("dir", type=Path, help="run directory written by `interp resample`")
    add_config_flags(analyze_parser, ResamplingConfig, ANALYSIS_FLAGS)
    analyze_parser.add_argument(
        "--result-dir", type=Path, default=None, help="where to write the analysis (default: DIR/analysis)"
    )
    analyze_parser.set_defaults(handler=analyze_command)
    set_config_defaults(parser, ResamplingConfig, ANALYSIS_FLAGS)  # the run parser needs them only for --analyze
    parser.set_defaults(result_dir=None)
    return parser


def problems_from_args(args: argparse.Namespace) -> list[tuple[Path, str, dict]]:
    """``(run directory, where the problem came from, problem)`` for every problem the flags name, in order."""
    from interp.resampling.problems import load_problem, problem_from_record

    if args.problems is not None:
        from interp.io import read_jsonl

        if not args.problems.is_file():
            raise InterpError(
                f"--problems {args.problems} is not a file; pass a JSONL file with one problem object per line."
            )
        rows = read_jsonl(args.problems, hint=f"each line must be one problem object: {PROBLEM_HELP}")
        if not rows:
            raise InterpError(f"--problems {args.problems} holds no problems; write one JSON object per line.")
        return [
            (
                args.out / f"problem_{k:04d}",
                f"{args.problems} (problem {k + 1})",
                problem_from_record(row, f"problem {k + 1} of {args.problems}"),
            )
            for k, row in enumerate(rows)
        ]
    if len(args.problem) == 1:
        return [(args.out, str(args.problem[0]), load_problem(args.problem[0]))]
    stems = [path.stem for path in args.problem]
    repeated = sorted({stem for stem in stems if stems.count(stem) > 1})
    if repeated:
        raise InterpError(
            f"several problem files are named {repeated[0]!r} and would share --out/{repeated[0]}; rename them, or "
            "list them in one --problems FILE.jsonl."
        )
    return [(args.out / path.stem, str(path), load_problem(path)) for path in args.problem]


def run_command(args: argparse.Namespace) -> int:
    """``interp resample --model M --problem FILE [FILE ...] --n N --out DIR`` (or ``--problems FILE.jsonl``)."""
    from interp.distributed import check_enough_work, current_world, hide_launcher_environment
    from interp.resampling import LocalBackend, SamplingConfig, VLLMBackend
    from interp.resampling.engine import Backend

    if (not args.problem and args.problems is None) or args.out is None:
        raise InterpError(
            f"interp resample needs --problem FILE (or --problems FILE.jsonl) and --out DIR, e.g. {RUN_EXAMPLE}"
        )
    if args.problem and args.problems is not None:
        raise InterpError("pass either --problem FILE [FILE ...] or --problems FILE.jsonl, not both.")
    problems = problems_from_args(args)
    world = current_world()
    check_enough_work(world, len(problems), "problems", fix="")
    config = SamplingConfig(
        n=args.n,
        temperature=args.temperature,
        top_p=args.top_p,
        max_new_tokens=args.max_new_tokens,
        seed=args.seed,
        batch_size=args.batch_size or args.n,
        forced=args.forced,
        forced_max_new_tokens=args.forced_max_new_tokens,
    )
    if args.backend == "vllm":
        if world.local_size > 1:
            raise InterpError(
                "the vllm backend runs one engine per machine over --tensor-parallel-size GPUs, but torchrun started "
                f"{world.local_size} "
                "ranks on this machine; start one rank per machine (torchrun --nproc-per-node 1 --nnodes M), or use "
                "--backend local."
            )
        if world.is_distributed:
            hide_launcher_environment()  # vLLM's own workers must not read torchrun's RANK / WORLD_SIZE as theirs
        backend: Backend = VLLMBackend(args.model, tensor_parallel_size=args.tensor_parallel_size, seed=args.seed)
    else:
        args.device = world.device_for(args.device)
        backend = LocalBackend(load_model_from_args(args))
    for out, source, problem in world.take(problems):
        code = _run_problem(args, backend, config, problem, source, out)
        if code:
            return code
    return 0


def _run_problem(args: argparse.Namespace, backend, config, problem: dict, source: str, out: Path) -> int:
    """Sample (or resume) one problem's rollouts into ``out``; analyze them with ``--analyze``."""
    from interp.provenance import hash_json
    from interp.resampling import Chain, run_rollouts
    from interp.resampling.io import read_run_manifest

    solution = problem["solution"]
    manifest_path = out / "run.json"
    if solution is None and manifest_path.exists():  # resuming: reuse the chain written before
        solution = read_run_manifest(manifest_path)["solution"]
    if solution is None:
        solution = backend.generate(
            problem["prompt"],
            1,
            temperature=args.temperature,
            top_p=args.top_p,
            max_new_tokens=args.max_new_tokens,
            seed=args.seed,
        )[0]
        print(f"no solution in {source}: the model wrote a base chain of {len(solution)} characters")
    chain = Chain.from_text(problem["prompt"], solution)
    run = run_rollouts(
        backend,
        chain,
        out,
        config=config,
        gt_answer=problem["gt_answer"],
        answer=problem["answer_regex"],
        extra_provenance={"problem_file": source, "problem_hash": hash_json(problem)},
    )
    n_no_answer = sum(1 for r in run.records if r["answer"] is None)
    print(f"{len(run.records)} rollouts over {chain.n_sentences} sentences in {out} ({n_no_answer} without an answer)")
    if args.analyze:
        return _analyze_and_write(run, args)
    print(f"next: interp resample analyze {out}")
    return 0


def analyze_command(args: argparse.Namespace) -> int:
    """``interp resample analyze DIR``."""
    from interp.resampling import RolloutRun

    return _analyze_and_write(RolloutRun.load(args.dir), args)


def _analyze_and_write(run, args: argparse.Namespace) -> int:
    from interp.experiments import registry
    from interp.resampling import analyze

    embedder = (  # a registered embedder f(texts) -> array, else a sentence-transformers model, as in a TOML run
        registry.resolve("embedder", args.embedder)
        if registry.is_function("embedder", args.embedder)
        else args.embedder
    )
    result = analyze(
        run,
        embedder,
        similarity_threshold=args.similarity_threshold,
        match_threshold=args.match_threshold,
        matrix=args.matrix,
    )
    out = args.result_dir or (run.directory / "analysis")
    result.save(out)
    if not run.is_complete():
        print(f"note: the run in {run.directory} is incomplete; unsampled prefixes show as NaN")
    print(
        f"analysis of {len(result.sentences)} sentences written to {out} (result.json, metrics.csv, importance.html, "
        "graph.html)"
    )
    return 0
