"""Per-sentence importance metrics of chain-of-thought resampling, as pure functions.

Notation: sentence ``i`` of a chain of ``n`` sentences; prefix ``p`` is the chain before
sentence ``p`` (prefix 0 is the prompt alone, prefix ``n`` the whole chain). Rollouts from
prefix ``i`` resample sentence ``i``; rollouts from prefix ``i + 1`` keep it.

Conventions follow the Thought Anchors reference code, so the published numbers reproduce:
rollouts without an answer are dropped before any metric; an accuracy over no graded
rollouts is 0; a metric that needs the next prefix is 0 where there is none; KL divergences
use additive smoothing ``alpha = 1e-9`` over the union of the two answer sets.

>>> acc = np.array([0.5, 0.75, 0.75, 1.0])
>>> resampling_importance_accuracy(acc).tolist()
[0.25, 0.0, 0.25, 0.0]
>>> round(answer_kl(["1", "1", "2"], ["1", "2", "2"]), 3)  # (1/3) ln 2
0.231
"""

import math
from collections import Counter
from collections.abc import Sequence

import numpy as np
from jaxtyping import Float

from interp import defaults
from interp.resampling.text import normalize_answer

KL_ALPHA = 1e-9
SIMILARITY_THRESHOLD = defaults.SIMILARITY_THRESHOLD  # counterfactual filter: resampled vs original sentence
MATCH_THRESHOLD = defaults.MATCH_THRESHOLD  # sentence-to-sentence matrix: "sentence j reappears in a rollout"
RESILIENCE_THRESHOLD = 0.6  # resilience: "the idea reappears later"


def accuracy(correct: Sequence[bool | None]) -> float:
    """Share of ``True`` among graded rollouts (None = no answer, left out); 0 if none.

    >>> accuracy([True, False, None, True])
    0.6666666666666666
    """
    graded = [c for c in correct if c is not None]
    return sum(1 for c in graded if c) / len(graded) if graded else 0.0


def answer_kl(answers_p: Sequence[str | None], answers_q: Sequence[str | None], alpha: float = KL_ALPHA) -> float:
    """KL(P || Q) between the answer distributions of two rollout sets.

    Answers are binned after :func:`normalize_answer`; empty / None answers are dropped;
    counts are smoothed by ``alpha`` over the union of answers. 0 if either set is empty.

    >>> answer_kl(["4", "4"], ["4"])
    0.0
    """
    p_counts = Counter(a for a in (_norm(x) for x in answers_p) if a)
    q_counts = Counter(a for a in (_norm(x) for x in answers_q) if a)
    if not p_counts or not q_counts:
        return 0.0
    support = set(p_counts) | set(q_counts)
    p_total = sum(p_counts.values()) + alpha * len(support)
    q_total = sum(q_counts.values()) + alpha * len(support)
    kl = 0.0
    for a in support:
        p = (p_counts[a] + alpha) / p_total
        q = (q_counts[a] + alpha) / q_total
        kl += p * math.log(p / q)
    return max(0.0, kl)


def _norm(answer: str | None) -> str:
    return normalize_answer(answer) if answer else ""


def resampling_importance_accuracy(
    prefix_accuracy: Float[np.ndarray, " prefix"],
) -> Float[np.ndarray, " prefix"]:
    """``acc[i + 1] - acc[i]``: how much keeping sentence ``i`` (vs resampling it) changes
    accuracy. The last entry has no successor and is 0. Also used for forced-answer accuracy.

    >>> resampling_importance_accuracy(np.array([0.2, 0.9])).tolist()
    [0.7, 0.0]
    """
    acc = np.asarray(prefix_accuracy, dtype=np.float64)
    out = np.zeros_like(acc)
    out[:-1] = acc[1:] - acc[:-1]
    return out


def resampling_importance_kl(
    prefix_answers: Sequence[Sequence[str | None]], alpha: float = KL_ALPHA
) -> Float[np.ndarray, " prefix"]:
    """``KL(P_i || P_{i+1})`` between the answer distributions of consecutive prefixes;
    the last entry is 0. Also used for forced-answer KL.

    >>> resampling_importance_kl([["1"], ["1"], ["1"]]).tolist()
    [0.0, 0.0, 0.0]
    """
    out = np.zeros(len(prefix_answers), dtype=np.float64)
    for i in range(len(prefix_answers) - 1):
        out[i] = answer_kl(prefix_answers[i], prefix_answers[i + 1], alpha)
    return out


def cosine_similarity(a: Float[np.ndarray, "m dim"], b: Float[np.ndarray, "n dim"]) -> Float[np.ndarray, "m n"]:
    """Cosine similarity of every row of ``a`` with every row of ``b`` (0 for zero rows).

    >>> cosine_similarity(np.eye(2), np.array([[1.0, 1.0]])).round(3).tolist()
    [[0.707], [0.707]]
    """
    a = np.asarray(a, dtype=np.float64)
    b = np.asarray(b, dtype=np.float64)
    na = np.linalg.norm(a, axis=-1, keepdims=True)
    nb = np.linalg.norm(b, axis=-1, keepdims=True)
    na[na == 0] = 1.0
    nb[nb == 0] = 1.0
    return (a / na) @ (b / nb).T


def different_trajectories_fraction(
    similarity: Float[np.ndarray, " rollout"], threshold: float = SIMILARITY_THRESHOLD
) -> float:
    """Share of rollouts whose resampled sentence has cosine ``< threshold`` to the original.

    >>> different_trajectories_fraction(np.array([0.9, 0.5, 0.79, 0.8]))
    0.5
    """
    sim = np.asarray(similarity, dtype=np.float64)
    return float((sim < threshold).sum() / sim.size) if sim.size else 0.0


def overdeterminedness(resampled: Sequence[str]) -> float:
    """``1 - (unique resampled sentences) / (rollouts)``: how often resampling gives back
    exactly the same sentence.

    >>> overdeterminedness(["a.", "a.", "b.", "c."])
    0.25
    """
    return 1.0 - len(set(resampled)) / len(resampled) if len(resampled) else 0.0


def counterfactual_importance_accuracy(
    correct: Sequence[bool | None],
    similarity: Float[np.ndarray, " rollout"],
    next_correct: Sequence[bool | None],
    threshold: float = SIMILARITY_THRESHOLD,
) -> float:
    """``acc(dissimilar rollouts of prefix i) - acc(rollouts of prefix i + 1)``.

    Only rollouts whose resampled sentence differs in meaning (cosine ``< threshold``)
    count; 0 when there is none or no rollout from the next prefix.

    >>> counterfactual_importance_accuracy([True, False, False], np.array([0.9, 0.1, 0.2]), [True])
    -1.0
    """
    sim = np.asarray(similarity, dtype=np.float64)
    _check_len(correct, sim)
    dissimilar = [c for c, s in zip(correct, sim) if s < threshold]
    if not dissimilar or not next_correct:
        return 0.0
    return accuracy(dissimilar) - accuracy(next_correct)


def counterfactual_importance_kl(
    answers: Sequence[str | None],
    similarity: Float[np.ndarray, " rollout"],
    next_answers: Sequence[str | None],
    threshold: float = SIMILARITY_THRESHOLD,
    alpha: float = KL_ALPHA,
) -> float:
    """``KL(P_dissimilar || P_{next} + P_similar)``: the answer distribution after a
    different sentence vs after the same (or a similar) one; 0 as in the accuracy variant.

    >>> counterfactual_importance_kl(["1", "2"], np.array([0.9, 0.1]), ["1"]) > 10
    True
    """
    sim = np.asarray(similarity, dtype=np.float64)
    _check_len(answers, sim)
    dissimilar = [a for a, s in zip(answers, sim) if s < threshold]
    similar = [a for a, s in zip(answers, sim) if s >= threshold]
    if not dissimilar or not next_answers:
        return 0.0
    return answer_kl(dissimilar, list(next_answers) + similar, alpha)


def _check_len(values: Sequence, sim: np.ndarray) -> None:
    if len(values) != sim.size:
        from interp.errors import InterpError

        raise InterpError(
            f"got {len(values)} rollout outcomes but {sim.size} similarities; pass one "
            "similarity per rollout (resampled sentence vs original)"
        )


def sentence_importance_matrix(
    sentence_embeddings: Float[np.ndarray, "sentence dim"],
    rollout_sentence_embeddings: Sequence[Sequence[Float[np.ndarray, "rollout_sentence dim"]]],
    threshold: float = MATCH_THRESHOLD,
) -> Float[np.ndarray, "sentence sentence"]:
    """``M[i, j]`` (``j > i``): how much keeping sentence ``i`` raises the chance that
    sentence ``j`` (cosine ``>= threshold`` to any sentence of a rollout) shows up:
    match rate over rollouts from prefix ``i + 1`` minus that over rollouts from prefix ``i``.

    Args:
        sentence_embeddings: the base chain's sentences.
        rollout_sentence_embeddings: for each prefix ``p``, one array per rollout holding the
            embeddings of that rollout's sentences (an empty rollout: shape ``[0, dim]``).

    >>> e = np.eye(3)
    >>> rolls = [[e[[0]]], [e[[1, 2]]], [e[[2]]]]  # prefix 1 keeps sentence 0 and says 1, 2
    >>> sentence_importance_matrix(e, rolls)[0].tolist()
    [0.0, 1.0, 1.0]
    """
    emb = np.asarray(sentence_embeddings, dtype=np.float64)
    n = emb.shape[0]
    rates = np.zeros((len(rollout_sentence_embeddings), n), dtype=np.float64)
    for p, rollouts in enumerate(rollout_sentence_embeddings):
        rollouts = [r for r in rollouts if np.asarray(r).shape[0] > 0]
        if not rollouts:
            continue
        hits = np.zeros(n)
        for r in rollouts:
            hits += (cosine_similarity(emb, r) >= threshold).any(axis=1)
        rates[p] = hits / len(rollouts)
    has = np.array([any(np.asarray(r).shape[0] > 0 for r in rs) for rs in rollout_sentence_embeddings])
    matrix = np.zeros((n, n), dtype=np.float64)
    for i in range(min(n, len(rollout_sentence_embeddings) - 1)):
        if not (has[i] and has[i + 1]):
            continue
        matrix[i, i + 1 :] = rates[i + 1, i + 1 :] - rates[i, i + 1 :]
    return matrix
