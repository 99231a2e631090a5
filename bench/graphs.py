"""Attribution graphs: ``attribute`` against the brute-force reference and against the FLOP floor of its backward
passes, side by side in one process, at several prompt lengths.

Model: a GPT-2-small-shaped random model (12 layers, d_model 768, 12 heads, vocab 50257; ``bench/cache.py`` builds
it) with one random TopK transcoder per layer (``--d-sae`` latents, ``--k`` active per token, decoder outputs the
size of the layer's real MLP output), or a named model with its transcoders (``--model smollm2-135m-instruct
--transcoders DIR``, a directory ``load_transcoders`` reads). Prompts: random words, ``--lengths 10 20 40`` tokens.

Per prompt length:

- **interp**: ``attribute(model, prompt, transcoders, max_feature_nodes=--max-feature-nodes, batch_size=--batch)``,
  wall time (best of ``--repeats``) and peak resident memory above the process's resident memory before the call
  (Linux: freed memory handed back with ``malloc_trim``, then the peak, ``VmHWM`` of ``/proc/self/status``, reset
  by writing 5 to ``/proc/self/clear_refs`` before the call; elsewhere the growth of ``ru_maxrss``, which misses a
  peak below an earlier one). This counts every allocation, torch's included (tracemalloc sees none of torch's
  tensors).
- **brute force, per edge**: what a check of the graph without gradients does (``tests/graphs``): for each candidate
  edge (``n_targets x n_sources``: the graph's rows, its feature and logit nodes, times every source column, all
  active features, error and token nodes), one frozen-replacement forward (``FrozenReplacement.forward(batch=1,
  feature_scales=...)``) with the source removed, its target read off. Timed on ``--sample`` random edges and
  scaled to all of them.
- **brute force, per source**: the strongest simple alternative: one forward per source reads every target at
  once, and ``--batch`` sources are removed per forward (one per batch row): ``n_sources / batch`` forwards of
  ``batch`` rows, timed on a sample and scaled.
- **FLOP floor** of the batched backward passes: per target row, the input gradients of the frozen forward's matmuls
  on the path from the injections to the targets (value and output projections, the attention mixing over the
  frozen pattern, any skip connection; ``2 x`` their multiply-adds, once per row, since no weight needs a gradient
  and the decoder matmul ``codes @ W_dec`` is off the path), plus the contraction of each row's gradients with the
  source vectors (``2 x n_targets x n_sources x d_model``), at the fp32 matmul rate measured in the same process
  (``cache.matmul_rate``, the best of before and after each length).

Printed per length: the node counts, the times and peaks, brute force / interp, interp / floor; then how each grows
with the length.

    python bench/graphs.py [--lengths 10 20 40] [--max-feature-nodes 256] [--batch 32] [--threads 1]
    python bench/graphs.py --model smollm2-135m-instruct --transcoders DIR

Numbers: to be measured on a quiet machine (the default run, ``--threads 1``, takes about two minutes on a 2-core
CPU; it was checked only on a shared one, whose times are not recorded here).
"""

import argparse
import contextlib
import ctypes
import re
import resource
import sys
import tempfile
import time
from pathlib import Path

import torch

from interp.dictionaries.dictionary import SparseDictionary
from interp.graphs import attribute, freeze, load_transcoders
from interp.model import load_model, model_id
from interp.model.weights import weights_hash

sys.path.insert(0, str(Path(__file__).resolve().parent))
from cache import DEFAULT_MODEL, WORDS, matmul_rate, model_directory  # the benches' shared model and timer

STATUS = Path("/proc/self/status")


def random_transcoders(model, d_sae: int, k: int, seed: int = 0) -> list[SparseDictionary]:
    """One random TopK transcoder per layer, its output the size of the layer's real MLP output (so that the error
    nodes do not cancel a much larger transcoder output)."""
    generator = torch.Generator().manual_seed(seed)
    d, n_layers = int(model.cfg.d_model), int(model.cfg.n_layers)
    with torch.no_grad():
        _, cache = model.run_with_cache(" ".join(WORDS[:12]))
    sizes = [float(cache[f"blocks.{layer}.hook_mlp_out"].pow(2).mean().sqrt()) for layer in range(n_layers)]
    normal = lambda *shape, std: torch.randn(*shape, generator=generator) * std  # noqa: E731
    return [
        SparseDictionary(W_enc=normal(d, d_sae, std=d**-0.5), b_enc=normal(d_sae, std=0.1),
                         W_dec=normal(d_sae, d, std=sizes[layer] / k**0.5), b_dec=normal(d, std=0.1 * sizes[layer]),
                         activation="topk", k=k, site=f"blocks.{layer}.ln2.hook_normalized",
                         output_site=f"blocks.{layer}.hook_mlp_out", model_id=model_id(model),
                         weights_hash=weights_hash(model))
        for layer in range(n_layers)
    ]  # fmt: skip


def prompt_of(model, n_tokens: int, seed: int) -> list[int]:
    """Token ids of random words, exactly ``n_tokens`` of them (the model's BOS first where it has one)."""
    generator = torch.Generator().manual_seed(seed)
    words = [WORDS[i] for i in torch.randint(len(WORDS), (4 * n_tokens,), generator=generator).tolist()]
    ids = model.tokenizer(" ".join(words), add_special_tokens=False)["input_ids"]
    bos = model.tokenizer.bos_token_id
    return ([bos] if bos is not None else [])[:n_tokens] + ids[: n_tokens - (bos is not None)]


def resident_kib(field: str) -> int:
    found = re.search(rf"{field}:\s+(\d+)", STATUS.read_text()) if STATUS.exists() else None
    return int(found.group(1)) if found else resource.getrusage(resource.RUSAGE_SELF).ru_maxrss


def peak_above_now(run) -> tuple[float, float, object]:
    """Seconds, peak resident MiB above the resident memory before ``run()``, and its result (freed memory is first
    handed back to the system, so that a run reusing it still counts it)."""
    with contextlib.suppress(OSError):
        ctypes.CDLL("libc.so.6").malloc_trim(0)
    before = resident_kib("VmRSS")
    if STATUS.exists():
        Path("/proc/self/clear_refs").write_text("5")  # resets VmHWM to the current RSS
    start = time.perf_counter()
    result = run()
    seconds = time.perf_counter() - start
    return seconds, (resident_kib("VmHWM") - before) / 1024, result


def gradient_path_macs(frozen) -> int:
    """Multiply-adds of one row's input gradients through the frozen forward (see the module docstring)."""
    n, d, total = frozen.n_pos, frozen.d_model, 0
    for layer in frozen.layers:
        n_kv, _, d_head = layer.W_V.shape
        n_heads = layer.W_O.shape[0]
        total += n * d * n_kv * d_head + n_heads * n * n * d_head + n * n_heads * d_head * d
        if layer.transcoder.W_skip is not None:
            total += n * d * d
    return total


def brute_force_seconds(frozen, graph, n_sources: int, sample: int, batch: int, seed: int) -> tuple[float, float]:
    """Seconds of one forward per edge (batch 1, one source removed, the target read) and of one batched forward
    per ``batch`` sources, each the mean over ``sample`` forwards."""
    generator = torch.Generator().manual_seed(seed)
    features = graph.active_features  # the removed sources (any active feature costs the same forward)

    def scales(rows: int) -> list[torch.Tensor]:
        return [torch.ones(rows, frozen.n_pos, layer.codes.shape[-1]) for layer in frozen.layers]

    with torch.no_grad():
        frozen.forward(batch=1)  # warm-up
        start = time.perf_counter()
        for _ in range(sample):
            source = int(torch.randint(len(features), (1,), generator=generator))
            layer, pos, feature = features[source].tolist()
            feature_scales = scales(1)
            feature_scales[layer][0, pos, feature] = 0.0
            run = frozen.forward(batch=1, feature_scales=feature_scales)
            frozen.pre_activations(run, layer)[0, -1, 0].item()  # the target read off
        per_edge = (time.perf_counter() - start) / sample
        start = time.perf_counter()
        batches = max(1, sample // 4)
        for _ in range(batches):
            feature_scales = scales(batch)
            for row in range(batch):
                layer, pos, feature = features[int(torch.randint(len(features), (1,), generator=generator))].tolist()
                feature_scales[layer][row, pos, feature] = 0.0
            run = frozen.forward(batch=batch, feature_scales=feature_scales)
            frozen.unembed(run.final_normalized[:, -1]).sum().item()
        per_batch = (time.perf_counter() - start) / batches
    return per_edge, per_batch


def measure(model, transcoders, n_tokens: int, args) -> dict:
    prompt = prompt_of(model, n_tokens, seed=n_tokens)
    rate = matmul_rate()
    best, peak, graph = float("inf"), 0.0, None
    for _ in range(args.repeats):
        seconds, mib, graph = peak_above_now(
            lambda: attribute(model, prompt, transcoders, max_feature_nodes=args.max_feature_nodes,
                              batch_size=args.batch, progress=False)
        )  # fmt: skip
        best, peak = min(best, seconds), max(peak, mib)
    assert graph is not None
    rate = max(rate, matmul_rate())
    frozen = freeze(model, prompt, transcoders)
    n_targets = graph.n_features + graph.n_logits
    n_sources = graph.n_active_features + graph.n_errors + graph.n_pos
    per_edge, per_batch = brute_force_seconds(frozen, graph, n_sources, args.sample, args.batch, seed=n_tokens)
    _, brute_peak, _ = peak_above_now(lambda: frozen.forward(batch=args.batch))
    floor_flops = 2.0 * n_targets * gradient_path_macs(frozen) + 2.0 * n_targets * n_sources * frozen.d_model
    return {
        "tokens": frozen.n_pos, "active": graph.n_active_features, "targets": n_targets, "sources": n_sources,
        "interp_s": best, "interp_peak_mib": peak, "edge_s": per_edge * n_targets * n_sources,
        "source_s": per_batch * -(-n_sources // args.batch), "source_peak_mib": brute_peak,
        "floor_s": floor_flops / rate, "rate": rate,
    }  # fmt: skip


def report(row: dict) -> None:
    print(
        f"\n{row['tokens']} tokens: {row['active']:,} active features, {row['targets']:,} targets (rows) x "
        f"{row['sources']:,} sources = {row['targets'] * row['sources']:,} candidate edges; "
        f"fp32 matmul {row['rate'] / 1e9:.0f} GFLOP/s"
    )
    print(f"  interp attribute           : {row['interp_s']:9.2f} s   peak +{row['interp_peak_mib']:7.0f} MiB")
    print(f"  brute force, per edge      : {row['edge_s']:9.0f} s   ({row['edge_s'] / row['interp_s']:,.0f}x interp)")
    print(
        f"  brute force, per source    : {row['source_s']:9.2f} s   peak +{row['source_peak_mib']:7.0f} MiB   "
        f"({row['source_s'] / row['interp_s']:.2f}x interp)"
    )
    print(f"  FLOP floor (backward)      : {row['floor_s']:9.3f} s   (interp {row['interp_s'] / row['floor_s']:.1f}x "
          "the floor)")  # fmt: skip


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--model", default=DEFAULT_MODEL)
    parser.add_argument("--transcoders", type=Path, default=None, help="a directory load_transcoders reads")
    parser.add_argument("--lengths", type=int, nargs="+", default=[10, 20, 40])
    parser.add_argument("--max-feature-nodes", type=int, default=256)
    parser.add_argument("--batch", type=int, default=32)
    parser.add_argument("--d-sae", type=int, default=4 * 768)
    parser.add_argument("--k", type=int, default=16)
    parser.add_argument("--sample", type=int, default=32, help="forwards timed per brute-force reference")
    parser.add_argument("--repeats", type=int, default=1)
    parser.add_argument("--threads", type=int, default=None)
    args = parser.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)
    if args.model != DEFAULT_MODEL and args.transcoders is None:
        parser.error("a named model needs --transcoders DIR (random transcoders are for the default shape)")
    root = Path(tempfile.gettempdir()) / "interp-bench"
    model = load_model(model_directory(args.model, root), device="cpu")
    if args.transcoders is None:
        transcoders = random_transcoders(model, args.d_sae, args.k)
        what = f"random TopK transcoders ({args.d_sae} latents, k {args.k})"
    else:
        transcoders = load_transcoders(args.transcoders, n_layers=int(model.cfg.n_layers))
        what = f"transcoders from {args.transcoders.name}"
    print(
        f"{args.model}: {model.cfg.n_layers} layers, d_model {model.cfg.d_model}; {what}; "
        f"max_feature_nodes {args.max_feature_nodes}, batch {args.batch}; threads {torch.get_num_threads()}"
    )
    rows = []
    for n_tokens in args.lengths:
        rows.append(measure(model, transcoders, n_tokens, args))
        report(rows[-1])
    if len(rows) > 1:
        print("\nas the prompt grows (each relative to the shortest):")
        first = rows[0]
        for key, name in (("interp_s", "interp time"), ("interp_peak_mib", "interp peak"),
                          ("edge_s", "brute force per edge"), ("source_s", "brute force per source"),
                          ("floor_s", "floor")):  # fmt: skip
            growth = ", ".join(f"{row['tokens']} tokens {row[key] / max(first[key], 1e-9):.1f}x" for row in rows)
            print(f"  {name:24}: {growth}")
        ratios = ", ".join(f"{row['tokens']} tokens {row['interp_s'] / row['floor_s']:.1f}x" for row in rows)
        print(f"  {'interp / floor':24}: {ratios}")
        ratios = ", ".join(f"{row['tokens']} tokens {row['source_s'] / row['interp_s']:.2f}x" for row in rows)
        print(f"  {'per source / interp':24}: {ratios}")


if __name__ == "__main__":
    main()
