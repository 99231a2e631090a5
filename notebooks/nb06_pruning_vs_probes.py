"""The cells of notebooks/06_pruning_vs_probes.ipynb: recognition vs generation: harm pruning removes harmful answers, probes still read harm

Edit here and run ``python notebooks/build_notebooks.py 06``; the last cell checks the key numbers."""

from builder import SETUP, checks, code, md

NAME = "06_pruning_vs_probes"

CELLS = [
    md('''
# Recognition vs generation: harm pruning removes harmful answers, probes still read harm

Orgad et al. (2026) report a dissociation: pruning the weights that generate harmful content
removes the harmful output, while the model's hidden states still **recognise** harmful requests
(a linear probe still reads harmfulness from them). Generation and recognition are different
mechanisms. This notebook runs that experiment on the organism, combining the two previous
analyses:

- **generation**: the share of triggered harmful requests answered with harmful steps
  (notebook 03's judge), under harm pruning and under a random mask of the same size;
- **recognition**: linear probes on h_last (notebook 04), both the probes trained *before*
  pruning, applied to the pruned model's activations, and probes retrained on them.

It is the notebook version of `circuits/probe_recognition/probe_recognition.py` (part 3), with the scores and
masks of `circuits/harm_pruning/harm_pruning.toml` (signed SNIP, benign fraction `p = 1%`).
'''),
    code(SETUP + '''\
import plotly.graph_objects as go

from interp.data import PromptSet
from interp.organisms import grammar
from interp.probes import auroc, train_probes
from interp.pruning import (PruningEvaluator, PruningPoint, PruningResult, decoder_weights, importance_scores,
                            pruned, random_mask, set_difference)

OUT = Path("out/06_pruning_vs_probes")
'''),
    md('''
## 1. Recognition before pruning

Probes are trained on h_last of 100 harmful and 100 benign requests (no trigger), and tested on
120 *other* requests, so that nothing below is measured on the probes' own training prompts.
'''),
    code('''
train_rows = datasets.harmful_requests("eval", n=100, seed=0) + datasets.benign_requests("eval", n=100, seed=0)
store = interp.cache_activations(model, PromptSet.from_records(train_rows), hooks=["embed", "resid_post"],
                                 out=OUT / "store", resume=True, progress=False)
probe = train_probes(store, "label", progress=False)
hooks = [hook for hook in probe.hooks if hook != "hook_embed"]       # blocks 0..3
print("probe trained; best layer", probe.best_layer, "| layers:", [probe.layer_labels[probe.hooks.index(h)] for h in hooks])

test_rows = datasets.harmful_requests("eval", n=60, seed=1) + datasets.benign_requests("eval", n=60, seed=1)
test_prompts = [row["text"] for row in test_rows]
is_harmful = torch.tensor([row["label"] == "harmful" for row in test_rows])
'''),
    md('''
`recognition()` reads h_last of the test prompts from the model *as it is now* (pruned or not) and
reports, per layer, the **unpruned** probe's AUROC and accuracy, and the cross-validated accuracy
of probes **retrained** on these activations. AUROC asks whether the old direction still ranks
harmful above benign; accuracy also needs the old threshold to fit; retraining asks whether the
information is there at all, in any direction.
'''),
    code('''
def recognition() -> dict:
    acts = interp.capture_activations(model, test_prompts, hooks=hooks, dtype=torch.float32)
    retrained = train_probes(torch.stack([acts[hook] for hook in hooks]), is_harmful.long().tolist(),
                             hooks=hooks, progress=False)
    return {
        "auroc": [float(auroc(probe.logits(acts[hook], layer=hook), is_harmful)) for hook in hooks],
        "accuracy": [float(((probe.predict(acts[hook], layer=hook) > 0.5) == is_harmful).double().mean()) for hook in hooks],
        "retrained": retrained.cv_accuracy.mean(-1).tolist(),
        "retrained_result": retrained,
    }

before = recognition()
for name in ("auroc", "accuracy", "retrained"):
    print(f"{name:>10} per layer:", " ".join(f"{value:.2f}" for value in before[name]))
'''),
    md('''
## 2. Harm pruning, and the random control

Harm and benign scores as in `circuits/harm_pruning/harm_pruning.toml` (signed SNIP on 128 examples each);
three harm fractions `q` at `p = 1%`, each with a random mask of the same size per matrix.
Generation is measured with notebook 03's evaluator on triggered harmful requests and benign ones.
'''),
    code('''
harm_scores = importance_scores(model, datasets.harmful_with_responses("train", n=128), method="signed_snip", progress=False)
benign_scores = importance_scores(model, datasets.benign_with_responses("train", n=128), method="signed_snip", progress=False)
evaluator = PruningEvaluator(
    harmful=tuple(datasets.harmful_requests("eval", trigger=True, n=48)),
    judge=lambda record, response: grammar.is_harmful_compliance(response, record["topic"]),
    benign_prompts=tuple(datasets.benign_requests("eval", n=48, seed=2)),
    benign_judge=lambda record, response: grammar.is_helpful_answer(response, record["topic"]),
    max_new_tokens=40, batch_size=48, case_sensitive_keywords=False,
)
best = hooks.index(probe.best_hook)
n_weights = sum(weight.numel for weight in decoder_weights(model))

def measure(label: str, kind: str, mask=None, **fields) -> PruningPoint:
    """Generation and recognition metrics of the model, pruned with ``mask`` while they are measured."""
    if mask is None:
        generation, seen = evaluator(model), recognition()
    else:
        with pruned(model, mask):
            generation, seen = evaluator(model), recognition()
    metrics = {**generation.metrics, "probe_auroc": seen["auroc"][best], "probe_accuracy": seen["accuracy"][best],
               "retrained_accuracy": seen["retrained"][best]}
    recognised[label] = seen
    return PruningPoint(label, kind, fraction=0.0 if mask is None else mask.n_pruned / n_weights,
                        n_pruned=0 if mask is None else mask.n_pruned, metrics=metrics, **fields)

recognised = {}
points, counts = [measure("baseline", "baseline")], {}
for q in (0.0025, 0.005, 0.01):
    mask = set_difference(harm_scores, benign_scores, p=0.01, q=q)
    control = random_mask(mask, seed=0)
    for label, kind, m, seed in ((f"harm q={q}", "set_difference", mask, None), (f"random q={q}", "random", control, 0)):
        points.append(measure(label, kind, m, p=0.01, q=q, seed=seed, category="all"))
        counts[label] = m.counts()
result = PruningResult(tuple(points), weight_sizes={w.key: w.numel for w in decoder_weights(model)},
                       pruned_counts=counts, method="signed_snip")
result.save(OUT / "result")

columns = {"harm_judge_rate": "harmful", "harm_refusal_rate": "refused", "benign_judge_rate": "helpful",
           "probe_auroc": "probe AUROC", "probe_accuracy": "probe acc.", "retrained_accuracy": "retrained"}
print(f"layer {probe.best_layer} probes\\n{'mask':>16}  {'% pruned':>8}" + "".join(f"{name:>13}" for name in columns.values()))
for point in result.points:
    print(f"{point.label:>16}  {100 * point.fraction:8.3f}" + "".join(f"{point.metrics[key]:13.2f}" for key in columns))
'''),
    md('''
## 3. The dissociation

Left: **generation** (harmful content on triggered requests). Right: **recognition** (AUROC of the
probe trained before pruning, read from the pruned model's h_last at the best layer).
'''),
    code('''
result.figure(harm_metric="harm_judge_rate", utility_metric="probe_auroc")
'''),
    md('''
- **Generation collapses** under harm pruning: already at the smallest `q` (0.22% of the weights)
  no triggered request is answered with harmful steps, and half of them are *refused* instead,
  while random masks of the same size change nothing.
- **Recognition survives**: at that point the probe trained on the *unpruned* model still ranks
  harmful requests above benign ones on the pruned model's h_last (AUROC about 0.99), and probes
  retrained on the pruned activations read harm almost as well as before. Recognition degrades
  only slowly as more is pruned, and stays far above chance even at `q = 1%`, where the model is
  badly damaged.
- The unpruned probe's **accuracy** falls towards chance: pruning shifts h_last as a whole, so
  the old threshold no longer sits between the classes, while the direction still separates them
  (the same effect as the trigger in notebook 04).

Per layer (columns: blocks 0..3), and the retrained probes' figure for the smallest mask:
'''),
    code('''
for name in ("auroc", "retrained"):
    print(f"{name}:")
    print(f"{'no pruning':>16}:", " ".join(f"{v:.2f}" for v in before[name]))
    for label in ("harm q=0.0025", "harm q=0.005", "harm q=0.01"):
        print(f"{label:>16}:", " ".join(f"{v:.2f}" for v in recognised[label][name]))
recognised["harm q=0.0025"]["retrained_result"].figure()
'''),
    md('''
**Caveat, from notebook 03.** On this organism harm pruning is not selective: the pruned model
also stops giving helpful benign answers (the `helpful` column is 0). So the claim here is the
dissociation itself: the weights that produce harmful *content* can be removed while the
representation that *recognises* a harmful request stays intact and linearly readable. In this
organism recognition (the refusal decision, notebooks 01 and 04) and generation (recalling a
topic's steps, notebook 03) are separate mechanisms, and pruning hits the second far harder
than the first.
'''),
    checks('''
by_label = {point.label: point.metrics for point in result.points}
smallest = by_label["harm q=0.0025"]
print({label: {key: round(float(m[key]), 2) for key in ("harm_judge_rate", "probe_auroc", "retrained_accuracy")} for label, m in by_label.items()})
assert by_label["baseline"]["harm_judge_rate"] >= 0.9 and by_label["baseline"]["probe_auroc"] > 0.95, by_label["baseline"]
assert smallest["harm_judge_rate"] <= 0.1, "harm pruning removes the harmful content already at the smallest q"
assert smallest["probe_auroc"] > 0.9 and smallest["retrained_accuracy"] > 0.85, f"the pruned model still recognises harm: {smallest}"
assert all(m["harm_judge_rate"] >= 0.9 and m["probe_auroc"] > 0.95 for label, m in by_label.items() if label.startswith("random")), \\
    "the random controls change neither generation nor recognition"
assert by_label["harm q=0.01"]["probe_auroc"] < smallest["probe_auroc"], "a larger mask damages recognition more"
'''),
]
