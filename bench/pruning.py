"""SNIP scores: one backward per batch for all layers vs the reference's per-layer recomputation.

The reference procedure (alignment-attribution-code, ``prune_wandg``) enables gradients for one
decoder layer at a time and reruns every calibration example (batch size 1, Hugging Face loss
with prompt labels set to -100) once per layer, summing |grad| per example. ``interp`` rebuilds
every example's gradient of every layer from one forward and one backward per batch. Both give
the same scores (checked below); the time ratio is about the number of layers at batch size 1,
and more with batching.

    python bench/pruning.py                       # the organism if trained, else a tiny 8-layer llama
    python bench/pruning.py --model DIR --n 64 --batch-size 16
"""

import argparse
import os
import sys
import tempfile
import time
from pathlib import Path

import torch


def reference_snip(model, pairs) -> tuple[dict[str, torch.Tensor], float]:
    """Wei et al.'s procedure on the Hugging Face model: per layer, per example, backward, |grad| summed."""
    from interp.pruning.pairs import tokenize_pairs
    from interp.pruning.weights import decoder_weights

    hf = model.original_model
    weights = decoder_weights(model)
    examples = tokenize_pairs(model, pairs)
    saved = {}
    start = time.perf_counter()
    flags = {id(p): p.requires_grad for p in hf.parameters()}
    try:
        for layer in range(model.cfg.n_layers):
            hf.requires_grad_(False)
            layer_weights = [w for w in weights if w.layer == layer]
            for weight in layer_weights:
                weight.parameter.requires_grad_(True)
                saved[weight.key] = torch.zeros(weight.parameter.shape)
            for example in examples:
                hf.zero_grad(set_to_none=True)
                labels = example.tokens.clone()
                labels[: example.prompt_length] = -100
                loss = hf(input_ids=example.tokens[None], labels=labels[None]).loss
                loss.backward()
                for weight in layer_weights:
                    saved[weight.key] += weight.parameter.grad.abs()
    finally:
        for parameter in hf.parameters():
            parameter.requires_grad_(flags[id(parameter)])
        hf.zero_grad(set_to_none=True)
    elapsed = time.perf_counter() - start
    scores = {}
    for weight in weights:
        grad = saved[weight.key].T if weight.transposed else saved[weight.key]
        scores[weight.key] = weight.weight.detach().abs().float() * grad
    return scores, elapsed


def load(args):
    from interp.models import load_model
    from interp.pruning.pairs import response_pairs

    if args.model is None:
        from interp.organisms import available_organisms

        if "default" in available_organisms():
            args.model = "organism"
    if args.model in ("organism", None) and args.model is not None:
        from interp.organisms import datasets

        model = load_model("organism", device="cpu")
        records = datasets.harmful_with_responses(split="train", n=args.n)
        return model, response_pairs(records), "organism:default"
    if args.model is None:
        from interp.testing import build_tiny_model

        path = build_tiny_model("llama", Path(tempfile.mkdtemp()) / "llama8", n_layers=8, d_model=128, n_heads=4, n_kv_heads=4, d_mlp=320, n_ctx=256)
        model = load_model(path, device="cpu")
        label = "tiny random llama (8 layers, d_model 128)"
    else:
        model = load_model(args.model, device="cpu")
        label = args.model
    words = "the quick brown fox jumps over the lazy dog . a cat sat on the mat and looked at the bird . how do i bake bread ? mix flour , water and salt".split()
    generator = torch.Generator().manual_seed(0)
    records = []
    for _ in range(args.n):
        pick = lambda k: " ".join(words[i] for i in torch.randint(len(words), (k,), generator=generator).tolist())  # noqa: E731
        records.append({"text": pick(8), "response": " " + pick(24)})
    return model, response_pairs(records), label


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--model", default=None, help="'organism', a model directory, or none (organism if trained, else a tiny llama)")
    parser.add_argument("--n", type=int, default=32, help="calibration examples (the reference uses 128)")
    parser.add_argument("--batch-size", type=int, default=16, help="examples per backward for the batched run")
    parser.add_argument("--threads", type=int, default=int(os.environ.get("OMP_NUM_THREADS", "1")), help="torch CPU threads")
    args = parser.parse_args(argv)
    torch.set_num_threads(args.threads)

    from interp.pruning.scores import importance_scores

    model, pairs, label = load(args)
    records = [pair.record | {"text": pair.prompt, "response": pair.response} for pair in pairs]
    n_layers = model.cfg.n_layers
    importance_scores(model, records[:2], method="snip", progress=False)  # warm-up

    reference, reference_s = reference_snip(model, pairs)
    timings = {}
    for batch_size in (1, args.batch_size):
        start = time.perf_counter()
        ours = importance_scores(model, records, method="snip", batch_size=batch_size, progress=False)
        timings[batch_size] = time.perf_counter() - start
    worst = max(((ours[k] - reference[k]).abs().max() / reference[k].abs().max()).item() for k in reference)

    print(f"model: {label}; {n_layers} layers; {len(pairs)} examples; {args.threads} thread(s); torch {torch.__version__}")
    print(f"{'procedure':<58} {'backwards':>10} {'seconds':>9} {'speed-up':>9}")
    print(f"{'reference: per layer, per example (Wei et al. prune_wandg)':<58} {n_layers * len(pairs):>10} {reference_s:>9.2f} {1.0:>8.1f}x")
    for batch_size, seconds in timings.items():
        backwards = -(-len(pairs) // batch_size)
        name = f"interp: all layers, one backward per batch of {batch_size}"
        print(f"{name:<58} {backwards:>10} {seconds:>9.2f} {reference_s / seconds:>8.1f}x")
    print(f"ratio at batch size 1: {reference_s / timings[1]:.1f} (number of layers: {n_layers})")
    print(f"max relative difference of the scores (interp vs reference): {worst:.2e}")
    return 0 if worst < 1e-4 else 1


if __name__ == "__main__":
    sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
    sys.exit(main())
