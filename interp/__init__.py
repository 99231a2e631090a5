"""interp: a mechanistic-interpretability workbench for alignment research.

Load a causal LM through transformer_lens' TransformerBridge, cache activations once to disk
as safetensors, and run hook-based analyses that end in interactive Plotly figures.
"""

__version__ = "0.1.0"

from interp.errors import InterpError  # noqa: E402

_LAZY = {
    "load_model": "interp.model",
    "PromptSet": "interp.data",
    "ActivationStore": "interp.store",
    "cache_activations": "interp.store",
    "capture_activations": "interp.store.capture",
    "logit_lens": "interp.lens",
    "TunedLens": "interp.lens.tuned",
    "train_tuned_lens": "interp.lens.tuned",
    "lens_kl": "interp.lens.tuned",
    "activation_patching": "interp.patching",
    "attribution_patching": "interp.patching",
    "importance_scores": "interp.pruning",
    "set_difference": "interp.pruning",
    "pruned": "interp.pruning",
    "train_probes": "interp.probes",
    "run_rollouts": "interp.resampling",
    "analyze": "interp.resampling",
    "run_demo": "interp.demo",
}


def __getattr__(name: str):
    # Lazy so `import interp` (and `interp --help`) stays fast: torch loads only when needed.
    if name in _LAZY:
        import importlib

        return getattr(importlib.import_module(_LAZY[name]), name)
    raise AttributeError(f"module 'interp' has no attribute {name!r}")


__all__ = ["InterpError", "__version__", *_LAZY]
