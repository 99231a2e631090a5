"""One transcoder per layer of SmolLM2-135M-Instruct (what attribution graphs replace the MLPs with), trained from
activation stores, resumable layer by layer.

    python circuits/transcoders_smollm2/transcoders_smollm2.py [--tokens 300000] [--group 6] [--out runs/transcoders_smollm2]

1. **Corpus**: the natural-language part of ``circuits/sae_smollm2``'s corpus (the published texts and the model's own
   continuations, read from ``--generated`` where that script wrote them; missing ones are generated the same way),
   cut into pieces of 128 tokens, until ``--tokens`` training tokens; one document in 20 held out.
2. **Per group of ``--group`` layers**: one store of ``ln2.hook_normalized`` and ``hook_mlp_out`` of those layers at
   every position (bfloat16: 69 kB per token for all 30 layers, so the groups keep the disk small), then one
   transcoder per layer (``d_sae = 8 x 576``, ``k = 16``, a linear skip connection, ``--epochs`` passes), then the
   group's store is deleted. A finished transcoder is kept; a rerun goes on with the first unfinished one.
3. **Evaluation** of each layer's transcoder spliced in alone on the held-out pieces (``evaluate_dictionary``: FVU of
   the MLP's output, L0, dead latents, CE loss recovered against zero-ablating that MLP, KL), written to
   ``numbers.json`` here; the transcoders themselves stay in ``--out/layer_LL`` (``interp.dictionaries`` format).
"""

import argparse
import importlib.util
import json
import shutil
import time
from pathlib import Path

from interp.data import PromptSet, token_chunks
from interp.dictionaries import load_dictionary, train_dictionary
from interp.dictionaries.evaluate import evaluate_dictionary
from interp.io import atomic_write_json
from interp.model import load_model
from interp.store import cache_activations

HERE = Path(__file__).resolve().parent
CHUNK, HELD_OUT_EVERY, EXPANSION, K = 128, 20, 8, 16


def sae_circuit():
    """``circuits/sae_smollm2``'s script as a module (its corpus functions)."""
    path = HERE.parent / "sae_smollm2" / "sae_smollm2.py"
    spec = importlib.util.spec_from_file_location("sae_smollm2", path)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def natural_text(model, generated: Path, budget: int) -> list[str]:
    """The published texts, then the model's continuations, until ``budget`` tokens (in document order)."""
    circuit = sae_circuit()
    texts, count = [], 0
    sources = [circuit.published_texts()]
    for path in sorted(generated.glob("prompt_*.jsonl")):
        sources.append([json.loads(line)["text"] for line in path.read_text(encoding="utf-8").splitlines() if line])
    for source in sources:
        for text in source:
            if count >= budget:
                return texts
            if text.strip():
                texts.append(text)
                count += len(model.tokenizer.encode(text))
    return texts


def sites(layer: int) -> tuple[str, str]:
    return f"blocks.{layer}.ln2.hook_normalized", f"blocks.{layer}.hook_mlp_out"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--tokens", type=int, default=300_000, help="corpus size, in tokens")
    parser.add_argument("--group", type=int, default=6, help="layers cached and trained together")
    parser.add_argument("--epochs", type=int, default=2, help="passes over the training tokens")
    parser.add_argument("--out", type=Path, default=Path("runs/transcoders_smollm2"))
    parser.add_argument("--generated", type=Path, default=Path("runs/sae_smollm2/generated"))
    parser.add_argument("--eval-pieces", type=int, default=32, help="held-out pieces each transcoder is evaluated on")
    args = parser.parse_args()
    model = load_model("smollm2-135m-instruct", device="cpu")
    n_layers = int(model.cfg.n_layers)
    texts = natural_text(model, args.generated, args.tokens)
    train = PromptSet.from_texts([t for i, t in enumerate(texts) if i % HELD_OUT_EVERY])
    held_out = PromptSet.from_texts([t for i, t in enumerate(texts) if not i % HELD_OUT_EVERY])
    print(f"corpus: {len(texts)} documents; {len(train)} for training, {len(held_out)} held out", flush=True)
    seconds: dict[str, float] = {}
    for first in range(0, n_layers, args.group):
        layers = [layer for layer in range(first, min(first + args.group, n_layers))]
        todo = [layer for layer in layers if not (args.out / f"layer_{layer:02d}" / "interp_dictionary.json").exists()]
        if not todo:
            continue
        started = time.time()
        store_dir = args.out / f"store_{first:02d}"
        hooks = [site for layer in todo for site in sites(layer)]
        store = cache_activations(model, train, hooks=hooks, positions="all", out=store_dir, chunk_tokens=CHUNK,
                                  batch_size=16, shard_size=256, dtype="bfloat16", resume=True)  # fmt: skip
        n_train = int(store.lengths.sum()) - store.n_prompts
        seconds[f"cache {todo[0]}-{todo[-1]}"] = time.time() - started
        for layer in todo:
            started = time.time()
            read, write = sites(layer)
            train_dictionary(store, read, args.out / f"layer_{layer:02d}", output_site=write, expansion=EXPANSION, k=K,
                             skip_connection=True, batch_size=1024, max_tokens=args.epochs * n_train,
                             checkpoint_every=100)  # fmt: skip
            seconds[f"train {layer}"] = time.time() - started
            print(f"layer {layer}: {n_train:,} tokens x {args.epochs}, {seconds[f'train {layer}']:.0f} s", flush=True)
        shutil.rmtree(store_dir)
    pieces, _ = token_chunks(model, held_out, CHUNK)
    pieces = PromptSet(pieces.records[: args.eval_pieces], source=pieces.source)
    per_layer = []
    for layer in range(n_layers):
        evaluation = evaluate_dictionary(load_dictionary(args.out / f"layer_{layer:02d}"), model, pieces, batch_size=16,
                                         progress=False)  # fmt: skip
        per_layer.append({"layer": layer, "fvu": evaluation.fvu, "l0": evaluation.l0,
                          "dead_fraction": evaluation.dead_fraction, "ce_loss_recovered": evaluation.ce_loss_recovered,
                          "kl": evaluation.kl_spliced, "eval_tokens": evaluation.n_tokens})  # fmt: skip
        print(f"layer {layer}: {evaluation.summary()}", flush=True)
    atomic_write_json(HERE / "numbers.json", {"layers": per_layer, "seconds": seconds, "tokens": args.tokens,
                                               "epochs": args.epochs, "d_sae": EXPANSION * int(model.cfg.d_model), "k": K})  # fmt: skip


if __name__ == "__main__":
    main()
