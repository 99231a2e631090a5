"""Chain-of-thought resampling: which reasoning sentences causally drive the final answer.

The method of *Thought Anchors* (Bogdan, Macar et al. 2025) and *Thought Branches* (Macar,
Bogdan et al. 2025): split a chain of thought into sentences, roll the model out N times
from the prefix before each sentence (and from the prefix including it), grade the
answers, and measure how much each sentence changes the outcome.

>>> from interp.resampling import split_sentences, resampling_importance_accuracy
>>> split_sentences("<think>First, 2 + 2 = 4. Then add 1.</think>")
['First, 2 + 2 = 4.', 'Then add 1.']

Typical use (a loaded model; see ``interp resample --help`` for the command line)::

    chain = Chain.from_text(prompt, solution)
    run = run_rollouts(LocalBackend(model), chain, "runs/p1", config=SamplingConfig(n=50),
                       gt_answer="6.17")
    result = analyze(run)            # per-sentence metrics + sentence-to-sentence matrix
    result.figure().show(); result.save("runs/p1/analysis")
"""

from interp.resampling.config import SamplingConfig
from interp.resampling.engine import Chain, LocalBackend, ResilienceResult, RolloutRun, resilience, run_rollouts
from interp.resampling.metrics import (
    accuracy,
    answer_kl,
    cosine_similarity,
    counterfactual_importance_accuracy,
    counterfactual_importance_kl,
    different_trajectories_fraction,
    overdeterminedness,
    resampling_importance_accuracy,
    resampling_importance_kl,
    sentence_importance_matrix,
)
from interp.resampling.result import (
    METRICS,
    ResamplingResult,
    SentenceEmbedder,
    analyze,
    load_embedder,
)
from interp.resampling.text import (
    Grade,
    RegexExtractor,
    Sentence,
    answers_match,
    extract_boxed,
    extract_boxed_answers,
    grade,
    make_extractor,
    normalize_answer,
    sentence_spans,
    split_sentences,
)
from interp.resampling.vllm_backend import VLLMBackend

# forced-answer importance uses the same formulas on forced-answer rollouts
forced_importance_accuracy = resampling_importance_accuracy
forced_importance_kl = resampling_importance_kl


__all__ = [
    "METRICS",
    "Chain",
    "Grade",
    "LocalBackend",
    "RegexExtractor",
    "ResamplingResult",
    "ResilienceResult",
    "RolloutRun",
    "SamplingConfig",
    "Sentence",
    "SentenceEmbedder",
    "VLLMBackend",
    "accuracy",
    "analyze",
    "answer_kl",
    "answers_match",
    "cosine_similarity",
    "counterfactual_importance_accuracy",
    "counterfactual_importance_kl",
    "different_trajectories_fraction",
    "extract_boxed",
    "extract_boxed_answers",
    "forced_importance_accuracy",
    "forced_importance_kl",
    "grade",
    "load_embedder",
    "make_extractor",
    "normalize_answer",
    "overdeterminedness",
    "resampling_importance_accuracy",
    "resampling_importance_kl",
    "resilience",
    "run_rollouts",
    "sentence_importance_matrix",
    "sentence_spans",
    "split_sentences",
]
