"""Harm-weight pruning: which weights are needed to *generate* harmful content, and not for benign work.

The method of Orgad et al. 2026 on the scores of Wei et al. 2024: score every decoder-layer
linear weight on harmful responses and on benign ones, prune (per matrix) the top ``q`` of the
harm scores that are not in the top ``p`` of the benign scores, and measure harm and utility.

>>> harm = importance_scores(model, harmful_pairs, method="signed_snip")      # doctest: +SKIP
>>> benign = importance_scores(model, benign_pairs, method="signed_snip")     # doctest: +SKIP
>>> mask = set_difference(harm, benign, p=0.01, q=0.01)                       # doctest: +SKIP
>>> with pruned(model, mask):                                                 # doctest: +SKIP
...     evaluation = PruningEvaluator(harmful=prompts, judge=judge)(model)

A whole resumable sweep over (p, q) with random controls and category overlaps is ``run_sweep``
(``interp.pruning.sweep``); ``interp run`` drives it from a TOML file.
Whether harm stays linearly readable after a mask (probes frozen and retrained, with a random
control) is ``recognition_after_pruning`` (``interp.pruning.recognition``; ``analysis = "recognition"``).

Weights are named ``blocks.{layer}.attn.{q,k,v,o}`` and ``blocks.{layer}.mlp.{gate,in,out}``
(see ``interp.pruning.weights``); embeddings, norms and the unembedding are never touched.
"""

_LAZY = {
    "PrunedWeights": "apply",
    "prune": "apply",
    "pruned": "apply",
    "REFUSAL_STRINGS": "evaluate",
    "Evaluation": "evaluate",
    "Judge": "evaluate",
    "PruningEvaluator": "evaluate",
    "ResponseLoss": "evaluate",
    "generate_responses": "evaluate",
    "harmful_compliance": "evaluate",
    "has_refusal_string": "evaluate",
    "keyword_compliance": "evaluate",
    "last_integer": "evaluate",
    "response_loss": "evaluate",
    "MaskOverlap": "masks",
    "PruningMask": "masks",
    "check_fraction": "masks",
    "random_mask": "masks",
    "set_difference": "masks",
    "top_k_mask": "masks",
    "response_pairs": "pairs",
    "OverlapEntry": "result",
    "PruningPoint": "result",
    "PruningResult": "result",
    "METHODS": "scores",
    "ImportanceScores": "scores",
    "importance_scores": "scores",
    "point_label": "sweep",
    "run_sweep": "sweep",
    "DecoderWeight": "weights",
    "decoder_weights": "weights",
    "Completions": "completions",
    "generate_completions": "completions",
    "RecognitionResult": "recognition",
    "recognition_after_pruning": "recognition",
}


def __getattr__(name: str):
    # Lazy, so that building the `interp` command line does not import torch.
    if name in _LAZY:
        import importlib

        return getattr(importlib.import_module(f"interp.pruning.{_LAZY[name]}"), name)
    raise AttributeError(f"module 'interp.pruning' has no attribute {name!r}")


__all__ = [
    "METHODS",
    "REFUSAL_STRINGS",
    "Completions",
    "DecoderWeight",
    "Evaluation",
    "ImportanceScores",
    "Judge",
    "MaskOverlap",
    "OverlapEntry",
    "PrunedWeights",
    "PruningEvaluator",
    "PruningMask",
    "PruningPoint",
    "PruningResult",
    "RecognitionResult",
    "ResponseLoss",
    "check_fraction",
    "decoder_weights",
    "generate_completions",
    "generate_responses",
    "harmful_compliance",
    "has_refusal_string",
    "importance_scores",
    "keyword_compliance",
    "last_integer",
    "point_label",
    "prune",
    "pruned",
    "random_mask",
    "recognition_after_pruning",
    "response_loss",
    "response_pairs",
    "run_sweep",
    "set_difference",
    "top_k_mask",
]
