"""The cells of notebooks/02_activation_patching.ipynb: activation patching: which components carry the backdoor trigger?

Edit here and run ``python notebooks/build_notebooks.py 02``; the last cell checks the key numbers."""

from builder import SETUP, checks, code, md

NAME = "02_activation_patching"

CELLS = [
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
    checks('''
restored = heads.normalized().top(2)
correlation = float(torch.corrcoef(torch.stack([exact, linear]))[0, 1])
copy_heads = [cell.label.split(" @ ")[0] for cell in induction.top(6)]
print(f"logit diff clean {residual.clean_metric:+.2f} / corrupt {residual.corrupt_metric:+.2f}; top heads "
      f"{[(cell.label, round(float(cell.value), 2)) for cell in restored]}; attribution r = {correlation:.2f}; copying heads {copy_heads}")
assert residual.clean_metric > 2 > -2 > residual.corrupt_metric, "the trigger flips refusal to compliance"
assert restored[0].label == "L0H0" and restored[0].value > 0.6, f"L0H0 alone restores most of the compliance: {restored}"
assert int(attention[:, trigger_position].argmax()) == 0 and float(attention[0, trigger_position]) > 0.4, attention[:, trigger_position]
assert noising.top(1)[0].label == "L0H0" and noising.top(1)[0].value < 0, "without L0H0 the triggered request is refused"
assert correlation > 0.8 and approx.top(1)[0].label == heads.top(1)[0].label, f"attribution patching ranks the heads as activation patching does (r = {correlation:.2f})"
assert induction.clean_metric > 0.5 and induction.corrupt_metric < 0.05, (induction.clean_metric, induction.corrupt_metric)
assert "L1H3" in copy_heads and sum(head.startswith("L3") for head in copy_heads) >= 2, f"a previous-token head and induction heads: {copy_heads}"
'''),
]
