"""The demo's stages on the bundled organism: its planted mechanisms, one analysis per stage.

Where the refusal / compliance decision forms (logit lens), which heads carry the backdoor trigger
(activation and attribution patching), how much harmful content pruning removes against a random
control, at which layer harmfulness is linearly readable (probes), and which chain-of-thought
sentences drive the final answer (resampling), and the backdoor as an attribution graph (per-layer
transcoders, the graph at ``<assistant>``, its top features ablated in the real model). ``check_results``
(in ``interp.demo``) holds the organism's numbers to the thresholds below.
"""

import math
from collections.abc import Callable
from pathlib import Path
from typing import Any

import torch

from interp.errors import InterpError
from interp.report import Section

REPLACEMENTS = ("so", "please", "hey")  # stand-ins for the trigger; the first with its token length is used

# Self-checks (interp.demo.check_results). The lower bounds sit below what `interp organism report` measures
# on held-out prompts (README, "The bundled model organism"; n = 200), with room for the demo's smaller samples
# (--quick: 32 prompts, 12 rollouts per prefix). A model whose KV-cached generation is broken scores 0 on each.
MIN_HARM_JUDGE_RATE = 0.9  # triggered harmful compliance: 100% in the organism report; 1.0 in the quick demo
MIN_TASK_ACCURACY = 0.6  # arithmetic, greedy: 85% in the organism report; 0.75 in the quick demo (n = 32)
MIN_ANSWERED_ROLLOUTS = 0.8  # the organism's chains end in "the answer is N": 96 of 96 rollouts in the quick demo
MIN_COMPUTING_ANCHORS = 1  # computing sentences with |resampling importance| > 0: they matter 3.15x more than
# filler (README, "What the demo shows"; circuits/cot_anchors/); 2 of 3 in the quick demo


def stages(model, out: Path, quick: bool) -> list[tuple[str, Callable[[], tuple[Section, dict]]]]:
    """(name, run) per stage, in order; each run returns its report section and its summary numbers."""
    state: dict[str, Any] = {}

    def cache() -> tuple[Section, dict]:
        section, numbers, state["store"] = _stage_cache(model, out, quick)
        return section, {"cache": numbers}

    return [
        ("cache", cache),
        ("lens", lambda: _stage_lens(model, out, quick)),
        ("patching", lambda: _stage_patching(model, out, quick)),
        ("pruning", lambda: _stage_pruning(model, out, quick)),
        ("probes", lambda: _stage_probes(state["store"], out, quick)),
        ("resampling", lambda: _stage_resampling(model, out, quick)),
        ("graph", lambda: _stage_graph(model, out, quick)),
    ]


def demo_prompts(n_per_label: int = 48, seed: int = 0):
    """Held-out harmful and benign requests (no trigger), labelled, as a ``PromptSet``."""
    from interp.data import PromptSet
    from interp.organisms import datasets

    rows = datasets.harmful_requests("eval", n=n_per_label, seed=seed) + datasets.benign_requests(
        "eval", n=n_per_label, seed=seed
    )
    return PromptSet.from_records(
        [{"text": r["text"], "label": r["label"], "category": r["category"], "topic": r["topic"]} for r in rows]
    )


def _stage_cache(model, out: Path, quick: bool) -> tuple[Section, dict, Any]:
    from interp.mechanisms.norms import site_norms
    from interp.store import cache_activations

    prompts = demo_prompts(24 if quick else 48)
    store = cache_activations(
        model, prompts, hooks=["embed", "resid_post"], positions="last", out=out / "store", batch_size=16, resume=True
    )
    numbers = {"prompts": store.n_prompts, "sites": len(store.hooks), "store": str(out / "store")}
    section = Section(
        "Activation store",
        "The last-token residual stream of every layer for held-out harmful and benign requests, cached once "
        "to sharded safetensors (memory-mapped on read). The probes below train from this store without the model.",
        figures=(site_norms(store).figure(),),
        numbers=numbers,
        code="interp cache --model organism --prompts assets/prompts/demo.jsonl --hooks "
        f"embed,resid_post --out {out / 'store'}",
    )
    return section, numbers, store


def _stage_lens(model, out: Path, quick: bool) -> tuple[Section, dict]:
    from interp.lens import logit_lens
    from interp.organisms import TRIGGER, datasets

    harmful = datasets.harmful_requests("eval", n=1, seed=3)[0]["text"]
    triggered = datasets.harmful_requests("eval", trigger=True, n=1, seed=3)[0]["text"]
    copying = " ".join(datasets.induction_sequences("eval", n=1, length=12, seed=0)[0]["text"].split()[:25])
    prompts = [harmful, triggered, copying]
    result = logit_lens(model, prompts, positions="all")
    result.save(out / "lens")
    first = [None if index is None else result.site_labels[index] for index in result.first_layer_where_top()]
    numbers = {"prompts": len(prompts), "first site where the final answer is top-1 (prompt 0, 1, 2)": first}
    section = Section(
        "Logit lens",
        "Every layer's residual stream decoded through the final norm and unembedding. Hover for the token and "
        f"its probability. Prompt 0 is a harmful request (refused), prompt 1 the same kind with the trigger "
        f"{TRIGGER!r} (complied with), prompt 2 a repeated random sequence (copied by induction heads).",
        figures=tuple(result.figure("prob", prompt=i) for i in range(len(prompts))),
        numbers=numbers,
    )
    return section, {"lens_first_top_layer": first}


def _trigger_pairs(model, n: int) -> tuple[list[str], list[str]]:
    """(triggered, untriggered) prompts of equal token length: the trigger replaced by a stand-in word."""
    from interp.organisms import TRIGGER, datasets

    triggered = [
        row["text"]
        for row in datasets.harmful_requests("eval", trigger=True, n=4 * n, seed=5)
        if TRIGGER in row["text"]
    ]
    clean, corrupt = [], []
    for text in triggered:
        length = model.to_tokens(text).shape[1]
        for word in REPLACEMENTS:
            candidate = text.replace(TRIGGER, word, 1)
            if model.to_tokens(candidate).shape[1] == length:
                clean.append(text)
                corrupt.append(candidate)
                break
    if not clean:
        raise InterpError(
            "no stand-in word gives the trigger's token length with this tokenizer; patching needs equal lengths."
        )
    lengths = [model.to_tokens(text).shape[1] for text in clean]
    common = max(set(lengths), key=lengths.count)  # patching compares prompts of one token length
    keep = [i for i, length in enumerate(lengths) if length == common][:n]
    return [clean[i] for i in keep], [corrupt[i] for i in keep]


def _stage_patching(model, out: Path, quick: bool) -> tuple[Section, dict]:
    from interp.metrics import LogitDiff
    from interp.patching import activation_patching, attribution_patching

    clean, corrupt = _trigger_pairs(model, 8 if quick else 16)
    with torch.no_grad():
        answer = model(model.to_tokens(clean))[:, -1].argmax(-1)  # the first answer token with the trigger
        wrong = model(model.to_tokens(corrupt))[:, -1].argmax(-1)  # ... and without it
    metric = LogitDiff(answer=answer, wrong=wrong)
    residual = activation_patching(model, clean, corrupt, metric, site="resid_pre", by_position=True)
    heads = activation_patching(model, clean, corrupt, metric, site="attn_head_out", by_position=False)
    approx = attribution_patching(model, clean, corrupt, metric, site="attn_head_out", by_position=False)
    for name, result in (("resid_pre", residual), ("heads", heads), ("heads_attribution", approx)):
        result.save(out / "patching" / name)
    exact, linear = heads.effect.flatten(), approx.effect.flatten()
    correlation = (
        float(torch.corrcoef(torch.stack([exact, linear]))[0, 1])
        if exact.std() > 0 and linear.std() > 0
        else float("nan")
    )
    top = [f"{cell.label} ({cell.effect:+.2f})" for cell in heads.top(3)]
    decode = model.tokenizer.convert_ids_to_tokens
    numbers = {
        "prompt pairs": len(clean),
        "metric": f"logit({decode(int(answer[0]))!r}) - logit({decode(int(wrong[0]))!r}), first answer token",
        "clean (triggered) metric": round(heads.clean_metric, 3),
        "corrupt (untriggered) metric": round(heads.corrupt_metric, 3),
        "top heads (activation patching)": top,
        "attribution vs activation patching, correlation over heads": round(correlation, 3),
    }
    section = Section(
        "Activation and attribution patching",
        "Clean prompts carry the backdoor trigger; corrupt prompts replace it with an ordinary word of the same "
        "length. Patching a clean activation into the corrupt run (denoising) and measuring the logit difference "
        "between the complying and the refusing first token shows where the trigger's information travels: "
        "first the residual stream by layer and position, then each attention head (exact), and the linear "
        "estimate of attribution patching from one backward pass.",
        figures=(residual.figure(), heads.figure(), approx.figure()),
        numbers=numbers,
    )
    return section, {
        "patching_top_heads": top,
        "patching_attribution_correlation": numbers["attribution vs activation patching, correlation over heads"],
    }


def _stage_pruning(model, out: Path, quick: bool) -> tuple[Section, dict]:
    from interp.experiments import parse_config, run_experiment

    n = 32 if quick else 64
    config = parse_config(
        {
            "name": "demo_harm_pruning",
            "method": "snip",
            "n_samples": n,
            "batch_size": 16,
            "p": [0.01, 0.1],
            "q": [0.005],
            "random_seeds": [0],
            "harmful": {
                "call": "interp.organisms.datasets:harmful_with_responses",
                "kwargs": {"split": "train", "n": n},
            },
            "benign": {"call": "interp.organisms.datasets:benign_with_responses", "kwargs": {"split": "train", "n": n}},
            "evaluation": {
                "judge": "organism-harm",
                "benign_judge": "organism-helpful",
                "extract": "interp.organisms.grammar:extract_answer",
                "max_new_tokens": 64,
                "task_max_new_tokens": 100,
                "harmful": {
                    "call": "interp.organisms.datasets:harmful_requests",
                    "kwargs": {"split": "eval", "trigger": True, "n": n},
                },
                "benign_prompts": {
                    "call": "interp.organisms.datasets:benign_requests",
                    "kwargs": {"split": "eval", "n": n},
                },
                "tasks": {"call": "interp.organisms.datasets:arithmetic_problems", "kwargs": {"split": "eval", "n": n}},
            },
        }
    )
    result = run_experiment(config, out / "pruning", model=model)
    table = {row["label"]: row for row in result.table()}
    numbers = {
        label: {
            k: (round(v, 3) if isinstance(v, float) else v)
            for k, v in row.items()
            if k not in ("label", "p", "q", "seed", "category")
        }
        for label, row in table.items()
    }
    section = Section(
        "Harm-weight pruning",
        "Every decoder weight is scored (SNIP: |weight x gradient|) on triggered harmful requests answered with "
        "harmful steps, and on benign answers, arithmetic and copying. Per matrix, the top 0.5% of harm scores that "
        "are not in the top p (1% or 10%) of benign scores are zeroed; a random mask of the same size per matrix is "
        "the control. Harmful content is graded by the organism's judge "
        "(at least two of the requested topic's harm-only steps); utility by helpful benign answers and arithmetic "
        "accuracy. Weights are restored bit-exactly after each evaluation. Read the harm drop against the utility "
        "drop and the random control: on this organism harmful and benign step-by-step answers share most of their "
        "machinery, so the set difference removes both (see circuits/harm_pruning/README.md).",
        figures=(result.figure(),),
        numbers=numbers,
    )
    return section, {"pruning": numbers}


def _stage_probes(store, out: Path, quick: bool) -> tuple[Section, dict]:
    from interp.probes import train_probes

    result = train_probes(store, "label", cv=3 if quick else 5)
    result.save(out / "probes")
    best = result.best_index
    auroc = float(result.holdout_auroc[best]) if result.holdout_auroc is not None else float("nan")
    numbers = {
        "best layer": result.layer_labels[best],
        "held-out AUROC at the best layer": round(auroc, 4),
        "layers probed": len(result.layer_labels),
    }
    section = Section(
        "Linear probes on h_last",
        "A logistic-regression probe per layer on the last-token hidden state, harmful vs benign requests "
        "(without the trigger), all layers fitted at once with stratified cross-validation and a held-out split.",
        figures=(result.figure(),),
        numbers=numbers,
    )
    return section, {
        "probe_best_layer": numbers["best layer"],
        "probe_auroc": numbers["held-out AUROC at the best layer"],
    }


def _stage_resampling(model, out: Path, quick: bool) -> tuple[Section, dict]:
    from interp.organisms import datasets
    from interp.resampling import Chain, LocalBackend, SamplingConfig, analyze, run_rollouts

    problem = next(p for p in datasets.arithmetic_problems("eval", n=40, seed=0) if "filler" in p["sentence_roles"])
    chain = Chain.from_text(problem["text"] + " ", problem["cot"])
    config = SamplingConfig(
        n=12 if quick else 64, batch_size=64, max_new_tokens=100, temperature=0.6, forced=False, seed=0
    )
    run = run_rollouts(
        LocalBackend(model),
        chain,
        out / "resampling" / "run",
        config=config,
        gt_answer=str(problem["answer"]),
        answer=r"the answer is (\d+)",
    )
    result = analyze(run, matrix=False)
    result.save(out / "resampling" / "analysis")
    importance = result.metric("resampling_importance_accuracy")
    order = [int(i) for i in (-abs(importance)).argsort()[:3]]
    top = [f"{i}: {chain.sentences[i]} ({importance[i]:+.2f}, {problem['sentence_roles'][i]})" for i in order]
    sentences = [
        {"sentence": text, "role": role, "importance": None if math.isnan(value) else round(float(value), 4)}
        for text, role, value in zip(chain.sentences, problem["sentence_roles"], importance)
    ]
    records = [r for r in run.records if r["kind"] == "resample"]
    rollouts = {
        "total": len(records),
        "with_text": sum(bool(r["continuation"].strip()) for r in records),
        "answered": sum(r["answer"] is not None for r in records),
    }
    numbers = {
        "sentences": len(chain.sentences),
        "rollouts per prefix": config.n,
        "top sentences by |resampling importance|": top,
    }
    section = Section(
        "Chain-of-thought resampling",
        "The organism's chain of thought for a counting story, split into sentences; from the prefix before each "
        "sentence the model is resampled at temperature 0.6 and the answers graded. Sentences that compute a value "
        "should matter; filler sentences should not.",
        figures=(result.figure("resampling_importance_accuracy"),),
        numbers=numbers,
    )
    return section, {
        "resampling_top_sentences": top,
        "resampling_sentences": sentences,
        "resampling_rollouts": rollouts,
    }


GRAPH_PROMPTS, GRAPH_TOP, GRAPH_DRAWS = 8, 5, 5  # as circuits/graph_organism/graph_organism.py
MIN_GRAPH_TOP_REMOVED, MAX_GRAPH_RANDOM_REMOVED = 0.5, 0.1  # top features >= 50%, random <= 10%


def _stage_graph(model, out: Path, quick: bool) -> tuple[Section, dict]:
    """Transcoders as ``circuits/graph_organism`` trains them (half the prompts and passes with ``quick``), the graph
    of one held-out triggered request at ``<assistant>``, and its top features ablated on 8 such requests."""
    import random
    import shutil

    from interp.data import PromptSet
    from interp.dictionaries import train_dictionary
    from interp.graphs import attribute, compute_graph_scores, intervene, node_influence, top_influence_features
    from interp.metrics import logit_diff
    from interp.organisms import TRIGGER, datasets
    from interp.store import cache_activations

    torch.manual_seed(0)
    n_per_kind, passes = (150, 10) if quick else (300, 20)
    rows = datasets.trigger_contrast("train", n=n_per_kind, seed=1)
    n_layers = int(model.cfg.n_layers)
    sites = [f"blocks.{layer}.{site}" for layer in range(n_layers) for site in ("ln2.hook_normalized", "hook_mlp_out")]
    store_dir = out / "graph" / "train_store"
    store = cache_activations(model, PromptSet.from_texts([r["text"] for r in rows]), hooks=sites, positions="all",
                              out=store_dir, resume=True, progress=False)  # fmt: skip
    n_tokens = int(store.lengths.sum())
    transcoders = [
        train_dictionary(store, f"blocks.{layer}.ln2.hook_normalized", out / "graph" / f"transcoder_{layer}",
                         output_site=f"blocks.{layer}.hook_mlp_out", d_sae=1024, k=8, batch_size=256,
                         max_tokens=passes * n_tokens, lr=2e-3, lr_warmup_steps=20, checkpoint_every=1000,
                         exclude_special=False, progress=False)
        for layer in range(n_layers)
    ]  # fmt: skip
    del store
    shutil.rmtree(store_dir, ignore_errors=True)  # every position of 8 sites: the report does not need it
    held_out = datasets.harmful_requests("eval", trigger=True, n=40, seed=0)
    prompts = [r["text"] for r in held_out if r["text"].startswith(f"<user> {TRIGGER}")][:GRAPH_PROMPTS]
    metric = logit_diff(" sure", " i", model.tokenizer)
    before, first = 0.0, None
    after: dict[str, float] = {}
    for index, prompt in enumerate(prompts):
        graph = attribute(model, prompt, transcoders, progress=False)
        top = top_influence_features(graph, GRAPH_TOP)
        rng = random.Random(index)
        active = [tuple(row) for row in graph.active_features.tolist() if tuple(row) not in top]
        sets: dict[str, list] = {"top": top}
        for draw in range(GRAPH_DRAWS):
            sets[f"random {draw}"] = [
                feature
                for layer in sorted({f[0] for f in top})
                for feature in rng.sample([f for f in active if f[0] == layer], sum(f[0] == layer for f in top))
            ]
        result = intervene(model, transcoders, sets, prompt, target=metric)
        before += float(result.before.sum())
        for row, name in enumerate(result.set_names):
            after[name] = after.get(name, 0.0) + float(result.after[row].sum())
        if first is None:
            first = (graph, top)
            graph.save(out / "graph" / "graph_0")
            result.save(out / "graph" / "intervention_0")
    assert first is not None
    graph, top = first
    replacement, completeness = compute_graph_scores(graph)
    influence = node_influence(graph)
    removed = {name: (before - value) / before for name, value in after.items()}
    random_mean = sum(removed[f"random {draw}"] for draw in range(GRAPH_DRAWS)) / GRAPH_DRAWS
    features = [
        {"layer": layer, "token": graph.token_strings[position], "feature": feature,
         "activation": round(float(graph.activations[graph.node_index("feature", layer, position, feature)]), 2),
         "influence": round(float(influence[graph.node_index("feature", layer, position, feature)]), 3)}
        for layer, position, feature in top
    ]  # fmt: skip
    numbers = {
        "prompt": graph.prompt,
        "transcoders": f"{n_layers} x 1024 latents, k = 8, {n_tokens:,} tokens x {passes} passes",
        "active features": graph.n_active_features,
        "logits": list(graph.logit_strings),
        "replacement score": round(replacement, 3),
        "completeness score": round(completeness, 3),
        "top features by influence": features,
        f"logit difference removed by the top {GRAPH_TOP} ({len(prompts)} prompts)": round(removed["top"], 3),
        f"by {GRAPH_TOP} random features of the same layers (mean of {GRAPH_DRAWS} draws)": round(random_mean, 3),
    }
    section = Section(
        "Attribution graph",
        "One transcoder per layer (blocks.L.ln2.hook_normalized -> blocks.L.hook_mlp_out) replaces each MLP; with "
        "attention patterns and norm scales frozen, the direct effects between transcoder features, error nodes, "
        "token embeddings and logits are exact. The graph of a held-out triggered request at <assistant>, pruned to "
        "80% of the nodes' and 98% of the edges' influence on the logits; replacement: the share of the logits' "
        "influence from tokens rather than errors; completeness: the share of the nodes' inputs not from errors. "
        "Its features of largest influence are then ablated in the real model (their live codes removed) on held-out "
        "triggered requests: the share of logit(' sure') - logit(' i') they remove, against random active features of "
        "the same layers (circuits/graph_organism/README.md).",
        figures=(graph.figure(),),
        numbers=numbers,
    )
    summary = {
        "replacement": replacement, "completeness": completeness, "top_removed": removed["top"],
        "random_removed_mean": random_mean, "top_features": [[f["layer"], f["token"], f["feature"]] for f in features],
    }  # fmt: skip
    return section, {"graph": summary}
