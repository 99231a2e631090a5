"""interp: a mechanistic-interpretability workbench for alignment research.

Load a causal LM through transformer_lens' TransformerBridge, cache activations once to disk
as safetensors, and run hook-based analyses that end in interactive Plotly figures.

The key functions of every analysis are here, ``interp.<name>``, imported on first use so that
``import interp`` (and ``interp --help``) stays fast: torch loads only when needed.
"""

__version__ = "0.1.0"

from typing import TYPE_CHECKING

from interp.errors import InterpError
from interp.lazy import lazy_exports

# name -> the module it lives in: the functions of the README's table, plus the model and prompt set they take
_LAZY = {
    "load_model": "interp.model",
    "PromptSet": "interp.data",
    "ActivationStore": "interp.store",
    "cache_activations": "interp.store",
    "capture_activations": "interp.store",
    "logit_lens": "interp.lens",
    "TunedLens": "interp.lens",
    "train_tuned_lens": "interp.lens",
    "lens_kl": "interp.lens",
    "generate_texts": "interp.lens",
    "direct_logit_attribution": "interp.mechanisms.dla",
    "attention_pattern": "interp.mechanisms.attention",
    "induction_heads": "interp.mechanisms.induction",
    "mean_ablated": "interp.mechanisms.induction",
    "ioi_prompts": "interp.mechanisms.ioi",
    "logit_differences": "interp.mechanisms.ioi",
    "ablation_removed": "interp.mechanisms.ioi",
    "activation_patching": "interp.patching",
    "attribution_patching": "interp.patching",
    "importance_scores": "interp.pruning",
    "set_difference": "interp.pruning",
    "random_mask": "interp.pruning",
    "pruned": "interp.pruning",
    "run_sweep": "interp.pruning",
    "recognition_after_pruning": "interp.pruning",
    "train_probes": "interp.probes",
    "ablate": "interp.probes",
    "steer": "interp.probes",
    "find_directions": "interp.directions",
    "merge_scores": "interp.directions",
    "ablated": "interp.directions",
    "added": "interp.directions",
    "orthogonalized": "interp.directions",
    "save_orthogonalized": "interp.directions",
    "read_instructions": "interp.directions",
    "Chain": "interp.resampling",
    "run_rollouts": "interp.resampling",
    "analyze": "interp.resampling",
    "resilience": "interp.resampling",
    "train_dictionary": "interp.dictionaries",
    "load_dictionary": "interp.dictionaries",
    "feature_attribution": "interp.dictionaries",
    "feature_patching": "interp.dictionaries",
    "feature_logit_attribution": "interp.dictionaries",
    "ablated_features": "interp.dictionaries",
    "steered": "interp.dictionaries",
    "encode_store": "interp.dictionaries",
    "evaluate_dictionary": "interp.dictionaries.evaluate",
    "attribute": "interp.graphs",
    "prune_graph": "interp.graphs",
    "compute_graph_scores": "interp.graphs",
    "intervene": "interp.graphs",
    "load_transcoders": "interp.graphs",
    "organism_report": "interp.organisms.evaluate",
    "run_demo": "interp.demo",
}
__getattr__, __dir__ = lazy_exports(__name__, _LAZY, globals())

if TYPE_CHECKING:  # what IDEs and type checkers see as interp.<name>
    from interp.data import PromptSet
    from interp.demo import run_demo
    from interp.dictionaries import (
        ablated_features,
        encode_store,
        feature_attribution,
        feature_logit_attribution,
        feature_patching,
        load_dictionary,
        steered,
        train_dictionary,
    )
    from interp.dictionaries.evaluate import evaluate_dictionary
    from interp.directions import (
        ablated,
        added,
        find_directions,
        merge_scores,
        orthogonalized,
        read_instructions,
        save_orthogonalized,
    )
    from interp.graphs import attribute, compute_graph_scores, intervene, load_transcoders, prune_graph
    from interp.lens import TunedLens, generate_texts, lens_kl, logit_lens, train_tuned_lens
    from interp.mechanisms.attention import attention_pattern
    from interp.mechanisms.dla import direct_logit_attribution
    from interp.mechanisms.induction import induction_heads, mean_ablated
    from interp.mechanisms.ioi import ablation_removed, ioi_prompts, logit_differences
    from interp.model import load_model
    from interp.organisms.evaluate import organism_report
    from interp.patching import activation_patching, attribution_patching
    from interp.probes import ablate, steer, train_probes
    from interp.pruning import (
        importance_scores,
        pruned,
        random_mask,
        recognition_after_pruning,
        run_sweep,
        set_difference,
    )
    from interp.resampling import Chain, analyze, resilience, run_rollouts
    from interp.store import ActivationStore, cache_activations, capture_activations

__all__ = ["InterpError", "__version__", *_LAZY]
