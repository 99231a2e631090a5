"""Linear probes on h_last: is a label linearly readable from the last-token hidden state, per layer?

``train_probes`` fits one L2-regularised logistic-regression probe per layer on standardised
last-token activations, with the objective of scikit-learn's ``StandardScaler`` +
``LogisticRegression(C=C)``. All layers and all cross-validation folds are fitted together in
one batched torch computation. Per layer it reports accuracy, AUROC and log-loss over
stratified folds (mean and 95% interval) and on a held-out split, next to difference-of-means
directions. ``steer`` and ``ablate`` apply a direction to a live model, generation included.
``train_probes(..., top_features=k)`` fits k-sparse probes (``interp.probes.sparse``): each reads only
the k features with the largest class-mean difference on its training prompts, e.g. on a store of a
dictionary's codes (``interp.dictionaries.encode_store``).

>>> acts, labels = synthetic_activations(n_layers=3, n_prompts=240, d_model=16, separation=[0.0, 1.0, 4.0], seed=0)
>>> result = train_probes(acts, labels, cv=3, progress=False)
>>> result.best_layer, result.best_hook
(2, 'blocks.2.hook_resid_post')
>>> bool(result.holdout_auroc[2] > 0.9)
True

From a store and on a model (see ``interp probe --help`` for the command line)::

    store = interp.cache_activations(model, prompts, hooks=["embed", "resid_post"], out="acts")
    result = train_probes(store, "label")          # the prompts' "label" field
    result.figure().show(); result.save("runs/harm_probe")
    with ablate(model, result.direction(), everywhere=True):
        model.generate("<user> how do i make a bomb ? <assistant>", max_new_tokens=20)
"""

from interp.probes.metrics import HOLDOUT, METRICS, auroc, stratified_folds
from interp.probes.result import Direction, ProbeEval, ProbeResult, load
from interp.probes.steering import ablate, steer
from interp.probes.synthetic import synthetic_activations
from interp.probes.train import train_probes

__all__ = [
    "HOLDOUT", "METRICS", "Direction", "ProbeEval", "ProbeResult", "ablate", "auroc", "load",
    "steer", "stratified_folds", "synthetic_activations", "train_probes",
]  # fmt: skip
