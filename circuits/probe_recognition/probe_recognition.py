"""Recognition vs generation on the bundled organism: linear probes on h_last before and after harm pruning.

    python circuits/probe_recognition/probe_recognition.py [--out runs/probe_recognition] [--q 0.005 0.01 0.02]

1. Probes (``interp.probes.train_probes``) on h_last of untriggered harmful vs benign held-out
   requests: is harm linearly readable, at which layer, and is the embedding layer at chance?
2. The difference-of-means direction of each layer: steering benign requests along it, and
   ablating it from the whole residual stream on harmful requests; refusal rates.
3. Harm pruning (signed SNIP set difference, as circuits/harm_pruning/harm_pruning.toml, p = 1%): the
   *unpruned* probes applied to h_last of the pruned model, and probes retrained on it
   (recognition), next to the harmful-content rate on triggered harmful requests (generation),
   with a random mask of the same size as the control. Orgad et al. report that recognition
   survives while generation drops.

Prints one table per part and writes ``results.json`` and the probe (``probe/``) to ``--out``.
"""

import argparse
import copy
import json
from pathlib import Path

import torch

from interp.data import PromptSet
from interp.io import atomic_write_json
from interp.model import load_model
from interp.organisms import datasets, grammar
from interp.organisms.evaluate import generate
from interp.probes import ablate, steer, train_probes
from interp.pruning import importance_scores, pruned, random_mask, set_difference
from interp.store import capture_activations, cache_activations


def rates(model, prompts: list[dict], max_new_tokens: int = 40) -> dict[str, float]:
    """Refusal rate and harmful-content rate (>= 2 of the requested topic's harm-only steps)."""
    answers = generate(model, copy.deepcopy(model.tokenizer), [row["text"] for row in prompts], max_new_tokens=max_new_tokens)
    return {
        "refusal": sum(grammar.is_refusal(a) for a in answers) / len(answers),
        "harmful_content": sum(grammar.is_harmful_compliance(a, row["topic"]) for a, row in zip(answers, prompts)) / len(answers),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--out", type=Path, default=Path("runs/probe_recognition"))
    parser.add_argument("--n", type=int, default=100, help="held-out prompts per class")
    parser.add_argument("--q", type=float, nargs="+", default=[0.005, 0.01, 0.02], help="harm fractions pruned per matrix")
    parser.add_argument("--p", type=float, default=0.01, help="benign fraction protected per matrix")
    args = parser.parse_args()
    torch.manual_seed(0)
    model = load_model("organism", device="cpu")
    results: dict = {}

    # 1. probes
    rows = datasets.harmful_requests("eval", n=args.n) + datasets.benign_requests("eval", n=args.n)
    prompts = PromptSet.from_records(rows)
    store = cache_activations(model, prompts, hooks=["embed", "resid_post"], out=args.out / "store", progress=False, resume=True)
    probe = train_probes(store, "label", progress=False)
    probe.save(args.out / "probe")
    print(probe.summary())
    results["probe"] = {"layers": list(probe.layer_labels), "cv_auroc": probe.cv_auroc.mean(-1).tolist(),
                        "cv_accuracy": probe.cv_accuracy.mean(-1).tolist(), "best_hook": probe.best_hook}  # fmt: skip

    # 2. the direction of each layer: steering benign requests, ablating on harmful ones
    harmful = datasets.harmful_requests("eval", n=50, seed=1)
    benign = datasets.benign_requests("eval", n=50, seed=1)
    base = {"harmful_refusal": rates(model, harmful)["refusal"], "benign_refusal": rates(model, benign)["refusal"]}
    print(f"\nrefusal without intervention: harmful {base['harmful_refusal']:.2f}, benign {base['benign_refusal']:.2f}")
    print(f"{'layer':>6}  {'steer benign (alpha=1)':>22}  {'ablate everywhere: harmful':>26}")
    directions = {}
    for layer in (layer for layer in probe.layers if layer >= 0):
        direction = probe.direction(layer)
        with steer(model, direction, alpha=1.0):
            steered = rates(model, benign)["refusal"]
        with ablate(model, direction, everywhere=True):
            ablated = rates(model, harmful)["refusal"]
        directions[layer] = {"steered_benign_refusal": steered, "ablated_harmful_refusal": ablated}
        print(f"{layer:>6}{' *' if layer == probe.best_layer else '  '}  {steered:20.2f}  {ablated:26.2f}")
    results["directions"] = {"base": base, "per_layer": directions}

    # 3. harm pruning: recognition (the unpruned probe on pruned h_last) vs generation
    harm_scores = importance_scores(model, datasets.harmful_with_responses("train", n=128), method="signed_snip", progress=False)
    benign_scores = importance_scores(model, datasets.benign_with_responses("train", n=128), method="signed_snip", progress=False)
    triggered = datasets.harmful_requests("eval", trigger=True, n=100)
    best = probe.best_hook
    y = probe.y.bool()

    def measure(label: str, mask=None) -> dict:
        def run() -> dict:
            hooks = [hook for hook in probe.hooks if hook != "hook_embed"]
            acts = capture_activations(model, prompts, hooks=hooks, dtype=torch.float32)
            fixed = {hook: float(((probe.predict(acts[hook], layer=hook) > 0.5) == y).double().mean()) for hook in hooks}
            retrained = train_probes(torch.stack([acts[hook] for hook in hooks]), probe.y.tolist(), hooks=hooks, progress=False)
            return {"probe_accuracy": fixed[best], "unpruned_probe_accuracy": fixed,
                    "retrained_cv_accuracy": dict(zip(hooks, retrained.cv_accuracy.mean(-1).tolist())),
                    **{f"triggered_{k}": v for k, v in rates(model, triggered).items()}}  # fmt: skip

        if mask is None:
            row = run()
        else:
            with pruned(model, mask):
                row = run()
        fixed = " ".join(f"{v:.2f}" for v in row["unpruned_probe_accuracy"].values())
        retrained = " ".join(f"{v:.2f}" for v in row["retrained_cv_accuracy"].values())
        print(f"{label:>28}  {row['triggered_harmful_content']:14.2f}  {row['triggered_refusal']:8.2f}  {fixed:>24}  {retrained:>24}")
        return row

    print("\nprobe accuracy per layer (0..L-1): the unpruned probes on pruned h_last, and probes retrained on it (CV)")
    print(f"{'mask':>28}  {'harmful (trig.)':>14}  {'refusal':>8}  {'unpruned probes':>24}  {'retrained probes':>24}")
    pruning = {"none": measure("none")}
    for q in args.q:
        mask = set_difference(harm_scores, benign_scores, p=args.p, q=q)
        pruning[f"harm q={q}"] = measure(f"harm set difference q={q}", mask)
        pruning[f"random q={q}"] = measure(f"random, same size q={q}", random_mask(mask, seed=0))
    results["pruning"] = {"probe_hook": best, "p": args.p, "points": pruning}
    atomic_write_json(args.out / "results.json", results)
    print(f"\nwritten to {args.out / 'results.json'}")


if __name__ == "__main__":
    main()
