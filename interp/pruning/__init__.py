"""Harm-weight pruning: which weights are needed to *generate* harmful content, and not for benign work.

The method of Orgad et al. 2026 on the scores of Wei et al. 2024: score every decoder-layer
linear weight on harmful responses and on benign ones, prune (per matrix) the top ``q`` of the
harm scores that are not in the top ``p`` of the benign scores, and measure harm and utility.

>>> harm = importance_scores(model, harmful_pairs, method="signed_snip")      # doctest: +SKIP
>>> benign = importance_scores(model, benign_pairs, method="signed_snip")     # doctest: +SKIP
>>> mask = set_difference(harm, benign, p=0.01, q=0.01)                       # doctest: +SKIP
>>> with pruned(model, mask):                                                 # doctest: +SKIP
...     evaluation = PruningEvaluator(harmful=prompts, judge=judge)(model)

Weights are named ``blocks.{layer}.attn.{q,k,v,o}`` and ``blocks.{layer}.mlp.{gate,in,out}``
(see ``interp.pruning.weights``); embeddings, norms and the unembedding are never touched.
"""

_LAZY = {
    "PrunedWeights": "apply", "prune": "apply", "pruned": "apply",
    "REFUSAL_STRINGS": "evaluate", "Evaluation": "evaluate", "Judge": "evaluate", "PruningEvaluator": "evaluate",
    "ResponseLoss": "evaluate", "generate_responses": "evaluate", "has_refusal_string": "evaluate",
    "keyword_compliance": "evaluate", "last_integer": "evaluate", "response_loss": "evaluate",
    "MaskOverlap": "masks", "PruningMask": "masks", "random_mask": "masks", "set_difference": "masks", "top_k_mask": "masks",
    "response_pairs": "pairs",
    "OverlapEntry": "result", "PruningPoint": "result", "PruningResult": "result",
    "METHODS": "scores", "ImportanceScores": "scores", "importance_scores": "scores",
    "DecoderWeight": "weights", "decoder_weights": "weights",
}


def __getattr__(name: str):
    # Lazy, so that building the `interp` command line does not import torch.
    if name in _LAZY:
        import importlib

        return getattr(importlib.import_module(f"interp.pruning.{_LAZY[name]}"), name)
    raise AttributeError(f"module 'interp.pruning' has no attribute {name!r}")


def add_cli(subparsers) -> None:
    """Register ``interp prune``."""
    from interp.pruning.cli import add_cli as _add_cli

    _add_cli(subparsers)


__all__ = [
    "METHODS", "REFUSAL_STRINGS", "DecoderWeight", "Evaluation", "ImportanceScores", "Judge", "MaskOverlap",
    "OverlapEntry", "PrunedWeights", "PruningEvaluator", "PruningMask", "PruningPoint", "PruningResult",
    "ResponseLoss", "add_cli", "decoder_weights", "generate_responses", "has_refusal_string", "importance_scores",
    "keyword_compliance", "last_integer", "prune", "pruned", "random_mask", "response_loss", "response_pairs",
    "set_difference", "top_k_mask",
]
