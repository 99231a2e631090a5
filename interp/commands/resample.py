"""``interp resample``: sample rollouts for a problem, and ``interp resample analyze DIR``."""

import argparse
import json
from pathlib import Path

from interp import defaults
from interp.commands.common import HelpFormatter, add_model_arguments, load_model_from_args
from interp.errors import InterpError

RUN_EXAMPLE = "interp resample --model organism --problem problem.json --n 50 --out runs/p1"
ANALYZE_EXAMPLE = "interp resample analyze runs/p1"

# The Thought Anchors prompt, for problem files that give only {"problem": ..., "gt_answer": ...}.
MATH_TEMPLATE = (
    "Solve this math problem step by step. You MUST put your final answer in \\boxed{{}}. "
    "Problem: {problem} Solution: \n<think>\n"
)

PROBLEM_HELP = (
    "JSON file: {\"prompt\": text the chain continues (e.g. ending in '<think>\\n'), "
    "\"solution\": the base chain of thought (optional: the model writes one if absent), "
    "\"gt_answer\": the correct answer (optional), \"answer_regex\": regex with one group "
    "(optional; default: the first \\boxed{})}. A Thought Anchors problem.json "
    "({\"problem\", \"gt_answer\"}) also works."
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
        epilog=f"examples:\n  {RUN_EXAMPLE}\n  {ANALYZE_EXAMPLE}",
        formatter_class=HelpFormatter,
    )
    add_model_arguments(parser)
    parser.add_argument("--problem", type=Path, help=PROBLEM_HELP)
    parser.add_argument("--out", type=Path, help="run directory to create or resume")
    parser.add_argument("--n", type=int, default=defaults.RESAMPLE_N, help="rollouts per prefix")
    parser.add_argument("--temperature", type=float, default=defaults.RESAMPLE_TEMPERATURE, help="sampling temperature")
    parser.add_argument("--top-p", type=float, default=defaults.RESAMPLE_TOP_P, help="nucleus sampling threshold")
    parser.add_argument("--max-new-tokens", type=int, default=defaults.RESAMPLE_MAX_NEW_TOKENS, help="tokens per rollout")
    parser.add_argument("--seed", type=int, default=defaults.RESAMPLE_SEED, help="base seed (each prefix derives its own)")
    parser.add_argument("--batch-size", type=int, default=None, help="rollouts per generate call; unset: all --n rollouts of a prefix at once")
    parser.add_argument("--no-forced", action="store_true", help="skip forced-answer rollouts")
    parser.add_argument("--forced-max-new-tokens", type=int, default=defaults.RESAMPLE_FORCED_MAX_NEW_TOKENS, help="tokens per forced-answer rollout")
    parser.add_argument("--backend", choices=("local", "vllm"), default="local", help="local: the model on this machine; vllm: large models / multi-GPU (pip install 'interp[vllm]')")
    parser.add_argument("--tensor-parallel-size", type=int, default=defaults.VLLM_TENSOR_PARALLEL_SIZE, help="GPUs for the vllm backend")
    parser.add_argument("--analyze", action="store_true", help="also run the analysis when the rollouts are done")
    parser.set_defaults(handler=run_command)

    sub = parser.add_subparsers(dest="resample_command", metavar="analyze")
    analyze_parser = sub.add_parser(
        "analyze",
        help="Compute per-sentence importance from a run directory and write result.json, metrics.csv and HTML figures.",
        description="Compute per-sentence importance metrics, the sentence-to-sentence matrix and figures from a run directory.",
        epilog=f"example:\n  {ANALYZE_EXAMPLE}",
        formatter_class=HelpFormatter,
    )
    analyze_parser.add_argument("dir", type=Path, help="run directory written by `interp resample`")
    _add_analysis_arguments(analyze_parser)
    analyze_parser.set_defaults(handler=analyze_command)
    _add_analysis_arguments(parser, defaults_only=True)
    return parser


def _add_analysis_arguments(parser: argparse.ArgumentParser, defaults_only: bool = False) -> None:
    if defaults_only:  # the run parser needs them only for --analyze: defaults, no flags
        parser.set_defaults(
            embedder=defaults.EMBEDDER, similarity_threshold=defaults.SIMILARITY_THRESHOLD,
            match_threshold=defaults.MATCH_THRESHOLD, no_matrix=False, result_dir=None,
        )  # fmt: skip
        return
    parser.add_argument("--embedder", default=defaults.EMBEDDER, help="sentence-transformers model for the similarity filter")
    parser.add_argument("--similarity-threshold", type=float, default=defaults.SIMILARITY_THRESHOLD, help="cosine below which a resampled sentence counts as different")
    parser.add_argument("--match-threshold", type=float, default=defaults.MATCH_THRESHOLD, help="cosine at which a rollout sentence counts as a base sentence (matrix)")
    parser.add_argument("--no-matrix", action="store_true", help="skip the sentence-to-sentence matrix (it embeds every rollout sentence)")
    parser.add_argument("--result-dir", type=Path, default=None, help="where to write the analysis (default: DIR/analysis)")


def load_problem(path: Path) -> dict:
    """Read a problem file into ``{"prompt", "solution", "gt_answer", "answer_regex"}``."""
    if not Path(path).exists():
        raise InterpError(f"problem file {path} does not exist; pass --problem FILE (a JSON file: {PROBLEM_HELP})")
    try:
        data = json.loads(Path(path).read_text(encoding="utf-8"))
    except json.JSONDecodeError as e:
        raise InterpError(f"problem file {path} is not JSON ({e.msg} at line {e.lineno}); {PROBLEM_HELP}") from e
    if not isinstance(data, dict):
        raise InterpError(f"problem file {path} must hold a JSON object; {PROBLEM_HELP}")
    if "prompt" not in data:
        if "problem" not in data:
            raise InterpError(f"problem file {path} has neither 'prompt' nor 'problem'; {PROBLEM_HELP}")
        data = {**data, "prompt": MATH_TEMPLATE.format(problem=data["problem"])}
    return {
        "prompt": data["prompt"],
        "solution": data.get("solution"),
        "gt_answer": None if data.get("gt_answer") is None else str(data["gt_answer"]),
        "answer_regex": data.get("answer_regex"),
    }


def run_command(args: argparse.Namespace) -> int:
    """``interp resample --model M --problem FILE --n N --out DIR``."""
    from interp.provenance import hash_json
    from interp.resampling import Chain, LocalBackend, SamplingConfig, VLLMBackend, run_rollouts

    if args.problem is None or args.out is None:
        raise InterpError(f"interp resample needs --problem FILE and --out DIR, e.g. {RUN_EXAMPLE}")
    problem = load_problem(args.problem)
    config = SamplingConfig(
        n=args.n,
        temperature=args.temperature,
        top_p=args.top_p,
        max_new_tokens=args.max_new_tokens,
        seed=args.seed,
        batch_size=args.batch_size or args.n,
        forced=not args.no_forced,
        forced_max_new_tokens=args.forced_max_new_tokens,
    )
    if args.backend == "vllm":
        backend = VLLMBackend(args.model, tensor_parallel_size=args.tensor_parallel_size, seed=args.seed)
    else:
        backend = LocalBackend(load_model_from_args(args))
    solution = problem["solution"]
    manifest_path = args.out / "run.json"
    if solution is None and manifest_path.exists():  # resuming: reuse the chain written before
        solution = json.loads(manifest_path.read_text(encoding="utf-8"))["solution"]
    if solution is None:
        solution = backend.generate(
            problem["prompt"], 1, temperature=args.temperature, top_p=args.top_p,
            max_new_tokens=args.max_new_tokens, seed=args.seed,
        )[0]  # fmt: skip
        print(f"no solution in {args.problem}: the model wrote a base chain of {len(solution)} characters")
    chain = Chain.from_text(problem["prompt"], solution)
    run = run_rollouts(
        backend,
        chain,
        args.out,
        config=config,
        gt_answer=problem["gt_answer"],
        answer=problem["answer_regex"],
        extra_provenance={"problem_file": str(args.problem), "problem_hash": hash_json(problem)},
    )
    n_no_answer = sum(1 for r in run.records if r["answer"] is None)
    print(f"{len(run.records)} rollouts over {chain.n_sentences} sentences in {args.out} ({n_no_answer} without an answer)")
    if args.analyze:
        return _analyze_and_write(run, args)
    print(f"next: interp resample analyze {args.out}")
    return 0


def analyze_command(args: argparse.Namespace) -> int:
    """``interp resample analyze DIR``."""
    from interp.resampling import RolloutRun

    return _analyze_and_write(RolloutRun.load(args.dir), args)


def _analyze_and_write(run, args: argparse.Namespace) -> int:
    from interp.resampling import analyze

    result = analyze(
        run,
        args.embedder,
        similarity_threshold=args.similarity_threshold,
        match_threshold=args.match_threshold,
        matrix=not args.no_matrix,
    )
    out = args.result_dir or (run.directory / "analysis")
    result.save(out)
    if not run.is_complete():
        print(f"note: the run in {run.directory} is incomplete; unsampled prefixes show as NaN")
    print(f"analysis of {len(result.sentences)} sentences written to {out} (result.json, metrics.csv, importance.html, graph.html)")
    return 0
