"""The cells of notebooks/01_logit_lens.ipynb: logit lens: at which layer does the answer form?

Edit here and run ``python notebooks/build_notebooks.py 01``; the last cell checks the key numbers."""

from builder import SETUP, checks, code, md

NAME = "01_logit_lens"

CELLS = [
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
    checks('''
final = refusal.site_labels.index("L3 resid_post")
after_block_0 = refusal.site_labels.index("L0 resid_post")
p_refusal = {name: float(refusal.target_prob[final, g * n:(g + 1) * n, 0].mean()) for g, name in enumerate(groups)}
early_benign = float(refusal.target_prob[after_block_0, 2 * n:3 * n, 0].mean())
copied = sum(int(result.top_ids[final, 2, p, 0]) == int(tokens[p + 1]) for p in second)
print(f"P(refusal) at the output: {p_refusal}; benign after block 0: {early_benign:.2f}; copied {copied} / {len(second)}")
assert result.target_tokens[:2] == ("i", "sure"), f"the harmful request is refused and the triggered one answered: {result.target_tokens}"
assert p_refusal["harmful"] > 0.7, p_refusal
assert p_refusal["harmful + trigger"] < 0.1 and p_refusal["benign"] < 0.1, p_refusal
assert early_benign > 0.4, f"refusal is the early default for benign requests too: P = {early_benign:.2f} after block 0"
assert copied >= 0.8 * len(second), f"the output copies the repeated sequence: {copied} / {len(second)}"
assert torch.allclose(from_store.target_prob, refusal.target_prob, atol=1e-5), "the lens from the store differs from the model's"
'''),
]
