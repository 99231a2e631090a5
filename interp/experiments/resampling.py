"""``analysis = "resampling"``: chain-of-thought resampling (Thought Anchors): rollouts from every sentence's prefix,
then each sentence's importance."""

from dataclasses import dataclass
from pathlib import Path
from typing import ClassVar

from interp import defaults
from interp.experiments import registry
from interp.experiments.base import IMPORTS, Experiment, check_choices, doc


@dataclass(frozen=True, kw_only=True)
class ResamplingConfig(Experiment):
    """Chain-of-thought resampling: rollouts from every sentence's prefix (OUT/rollouts, resumed), then each sentence's
    importance."""

    ANALYSIS: ClassVar[str] = "resampling"
    name: str = doc("experiment name, shown in figures and logs", default="resampling")
    prompt: str = doc("the text the chain of thought continues (e.g. ending in '<think>\\n')")
    solution: str | None = doc(
        "the base chain of thought (default: the model writes one, kept in OUT/rollouts/run.json)", default=None
    )
    gt_answer: str | int | None = doc("the correct answer (without it, accuracy metrics are 0)", default=None)
    answer: str | None = doc(
        "regex with one group that extracts the answer (default: the first \\boxed{})", default=None
    )
    n: int = doc("rollouts per prefix", default=defaults.RESAMPLE_N)
    temperature: float = doc("sampling temperature", default=defaults.RESAMPLE_TEMPERATURE)
    top_p: float = doc("nucleus sampling threshold", default=defaults.RESAMPLE_TOP_P)
    max_new_tokens: int = doc("tokens per rollout", default=defaults.RESAMPLE_MAX_NEW_TOKENS)
    seed: int = doc("base seed (each prefix derives its own)", default=defaults.RESAMPLE_SEED)
    batch_size: int | None = doc("rollouts per generate call (default: all n of a prefix at once)", default=None)
    forced: bool = doc("also sample answers forced right after each prefix", default=True)
    forced_max_new_tokens: int = doc(
        "tokens per forced-answer rollout", default=defaults.RESAMPLE_FORCED_MAX_NEW_TOKENS
    )
    backend: str = doc(
        "local (the model on this machine) or vllm (large models, several GPUs; pip install 'interp[vllm]')",
        choices=("local", "vllm"),
        default="local",
    )
    tensor_parallel_size: int = doc("GPUs of the vllm backend", default=defaults.VLLM_TENSOR_PARALLEL_SIZE)
    embedder: str = doc(
        f"sentence-transformers model of the similarity filter, or a registered embedder f(texts) -> array; {IMPORTS}",
        default=defaults.EMBEDDER,
    )
    similarity_threshold: float = doc(
        "cosine below which a resampled sentence counts as different", default=defaults.SIMILARITY_THRESHOLD
    )
    match_threshold: float = doc(
        "cosine at which a rollout sentence counts as a base sentence (matrix)", default=defaults.MATCH_THRESHOLD
    )
    matrix: bool = doc("compute the sentence-to-sentence matrix (embeds every rollout sentence)", default=True)

    def __post_init__(self) -> None:
        check_choices(self)

    def run(self, out: Path, model=None, progress: bool = True):
        from interp.directories import claim_directory
        from interp.resampling import Chain, LocalBackend, SamplingConfig, VLLMBackend, analyze, run_rollouts
        from interp.resampling.engine import Backend
        from interp.resampling.io import read_run_manifest

        claim_directory(out, self.to_dict())
        backend: Backend
        if self.backend == "vllm":
            backend = VLLMBackend(self.model, tensor_parallel_size=self.tensor_parallel_size, seed=self.seed)
        else:
            backend = LocalBackend(self.load_model(model))
        rollouts, solution = out / "rollouts", self.solution
        if solution is None and (rollouts / "run.json").exists():  # resuming: the chain the model wrote before
            solution = read_run_manifest(rollouts / "run.json")["solution"]
        if solution is None:
            solution = backend.generate(
                self.prompt,
                1,
                temperature=self.temperature,
                top_p=self.top_p,
                max_new_tokens=self.max_new_tokens,
                seed=self.seed,
            )[0]
        config = SamplingConfig(
            n=self.n,
            batch_size=self.batch_size or self.n,
            forced=self.forced,
            forced_max_new_tokens=self.forced_max_new_tokens,
            temperature=self.temperature,
            top_p=self.top_p,
            max_new_tokens=self.max_new_tokens,
            seed=self.seed,
        )
        run = run_rollouts(
            backend,
            Chain.from_text(self.prompt, solution),
            rollouts,
            config=config,
            answer=self.answer,
            gt_answer=None if self.gt_answer is None else str(self.gt_answer),
            progress=progress,
        )
        embedder = (
            registry.resolve("embedder", self.embedder)
            if registry.is_function("embedder", self.embedder)
            else self.embedder
        )
        result = analyze(
            run,
            embedder,
            similarity_threshold=self.similarity_threshold,
            match_threshold=self.match_threshold,
            matrix=self.matrix,
            progress=progress,
        )
        result.save(out)
        return result
