"""Caching throughput and memory against the bare forward pass and the code a user would write, side by side in one run.

Model (``--model``): by default a GPT-2-small-shaped random model (12 layers, d_model 768, 12 heads,
vocab 50257); any registered name or directory, e.g. ``--model smollm2-135m-instruct`` (the real
model: 30 layers, d_model 576, grouped-query attention).
Workload: ``resid_post`` of every layer at the last position of each prompt.
Prints, tokens/s each (best of ``--repeats``, interleaved so drift hits all alike):
  bare forward       the bridge's forward over the same batches, nothing kept
  interp             ``cache_activations``: the rows written to a safetensors store on disk
  hooked HF forward  the ten lines a user could write: a plain Hugging Face model (no bridge),
                     ``register_forward_hook`` on every decoder layer keeping the last rows
  hooked HF body     the same, calling the decoder stack alone (``model.model``): no unembedding
                     either, the strongest simple peer
  transformer_lens   ``run_with_cache`` with a names filter, then the last rows
and the ratios of interp to each (targets: >= 0.85x the bare forward, >= 1.0x the hooked HF
forward), the max abs difference of interp's rows from each peer's, the FLOP floor (every decoder
layer's linears and attention products, no unembedding, at the fp32 matmul rate measured in the same
process) and how far each run is from it, at each of ``--sizes``, and the memory growth:
  peak-RSS increase caching 10N prompts / caching N prompts      target < 1.10
Reading (``--read-gb``, default 1): a store of about that size (five sites of every layer at every
position) is read whole, every hook of every shard summed, with and without the check of each
tensor's hash on its first read in a process (``check_reads``, on by default), best of ``--repeats``,
interleaved; printed: GiB/s each, the ratio, and the hash's own rate on the same bytes in memory (the
floor of the check's cost).
Each memory measurement runs in a fresh child process so peaks do not mix. interp must cache through the
plain view of the bridge (``interp.store.capture.Capturer``): the bench stops if it ran through the bridge.
Caching stops each forward right after the last hook it reads, so with resid_post it skips the
final norm and the unembedding, which the bare forward computes: a ratio above 1 is possible.

    python bench/cache.py [--model smollm2-135m-instruct] [--sizes 64 256] [--tokens 64] [--batch-size 16]
"""

import argparse
import json
import os
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import torch

from interp.data import PromptSet, iter_batches, pad_token_id, tokenize_prompts
from interp.model import load_model, resolve_model
from interp.store import ActivationStore, cache_activations
from interp.testing import build_tiny_model

WORDS = "the quick brown fox jumps over lazy dog a cat sat on mat and looked at bird how do i bake bread".split()
DEFAULT_MODEL = "gpt2-small-shape"


def make_prompts(n: int, n_words: int, seed: int = 0) -> PromptSet:
    generator = torch.Generator().manual_seed(seed)
    picks = torch.randint(len(WORDS), (n, n_words), generator=generator)
    return PromptSet.from_texts([" ".join(WORDS[i] for i in row) for row in picks.tolist()])


def model_directory(name: str, root: Path) -> str:
    """The Hugging Face directory behind ``name`` (built for the default random shape)."""
    if name != DEFAULT_MODEL:
        return resolve_model(name)[0] if not Path(name).exists() else name
    path = root / "gpt2-small-shaped"
    if not (path / "config.json").exists():
        build_tiny_model("gpt2", path, n_layers=12, d_model=768, n_heads=12, n_kv_heads=None, d_mlp=3072, n_ctx=1024, vocab_size=50257)
    return str(path)


def build_model(name: str, root: Path):
    return load_model(model_directory(name, root), device="cpu")


def bare_forward_seconds(model, prompts: PromptSet, batch_size: int) -> float:
    token_lists = tokenize_prompts(model, prompts)
    start = time.perf_counter()
    with torch.inference_mode():
        for batch in iter_batches(token_lists, batch_size, pad_token_id(model)):
            model(batch.tokens, attention_mask=batch.attention_mask)
    return time.perf_counter() - start


def cache_seconds(model, prompts: PromptSet, batch_size: int, out: Path) -> float:
    start = time.perf_counter()
    store = cache_activations(model, prompts, hooks=["resid_post"], positions="last", out=out, batch_size=batch_size, progress=False)
    seconds = time.perf_counter() - start
    ran = store.manifest["capture"]
    if ran["path"] != "plain-view":
        raise SystemExit(f"caching ran through the bridge, not the plain view: {ran['reason']}")
    return seconds


def decoder_layers(hf_model) -> torch.nn.ModuleList:
    """The decoder layers of a plain Hugging Face causal LM (GPT-2 or Llama-style naming)."""
    body = getattr(hf_model, "transformer", None) or hf_model.model
    return body.h if hasattr(body, "h") else body.layers


def hf_body(hf_model) -> torch.nn.Module:
    """The decoder stack without the unembedding (``model.model`` or ``model.transformer``)."""
    return getattr(hf_model, "transformer", None) or hf_model.model


def hooked_hf_seconds(hf_model, token_lists, batch_size: int, pad_id: int, body_only: bool = False) -> tuple[float, torch.Tensor]:
    """What a user writes without a library: forward hooks on every decoder layer keep the last-token rows
    (``body_only``: the user also calls the decoder stack alone, so the unembedding is not computed)."""
    layers = decoder_layers(hf_model)
    run = hf_body(hf_model) if body_only else hf_model
    rows: list[list[torch.Tensor]] = [[] for _ in layers]
    last: list[torch.Tensor] = []

    def keep(index):
        def hook(module, inputs, output):
            hidden = output[0] if isinstance(output, tuple) else output
            rows[index].append(hidden[torch.arange(hidden.shape[0]), last[0]].float().clone())
        return hook

    handles = [layer.register_forward_hook(keep(index)) for index, layer in enumerate(layers)]
    start = time.perf_counter()
    try:
        with torch.inference_mode():
            for batch in iter_batches(token_lists, batch_size, pad_id):
                last[:] = [batch.last_positions]
                run(input_ids=batch.tokens, attention_mask=batch.attention_mask, use_cache=False)
        stacked = torch.stack([torch.cat(layer_rows) for layer_rows in rows])
    finally:
        for handle in handles:
            handle.remove()
    return time.perf_counter() - start, stacked


def transformer_lens_seconds(model, token_lists, batch_size: int, pad_id: int) -> tuple[float, torch.Tensor]:
    """transformer_lens' own way: ``run_with_cache`` with a names filter, then the last rows."""
    names = [f"blocks.{layer}.hook_resid_post" for layer in range(model.cfg.n_layers)]
    rows: list[list[torch.Tensor]] = [[] for _ in names]
    start = time.perf_counter()
    with torch.inference_mode():
        for batch in iter_batches(token_lists, batch_size, pad_id):
            _, cache = model.run_with_cache(batch.tokens, attention_mask=batch.attention_mask, names_filter=lambda name: name in names)
            index = torch.arange(batch.tokens.shape[0])
            for layer, name in enumerate(names):
                rows[layer].append(cache[name][index, batch.last_positions].float().clone())
    return time.perf_counter() - start, torch.stack([torch.cat(layer_rows) for layer_rows in rows])


def store_rows(path: Path, n_layers: int) -> torch.Tensor:
    store = ActivationStore.open(path)
    return torch.stack([store[f"blocks.{layer}.hook_resid_post"].reshape(store.n_prompts, -1).float() for layer in range(n_layers)])


def child_peak_memory(name: str, root: Path, n_prompts: int, n_words: int, batch_size: int) -> None:
    model = build_model(name, root)
    prompts = make_prompts(n_prompts, n_words, seed=1)
    before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    with tempfile.TemporaryDirectory() as tmp:
        cache_activations(model, prompts, hooks=["resid_post"], positions="last", out=Path(tmp) / "s", batch_size=batch_size, progress=False)
    after = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    print(json.dumps({"peak_rss_kb": after, "baseline_rss_kb": before}))


def forward_flops(model, token_lists) -> float:
    """What caching resid_post of every layer must compute: every decoder layer's linears (2 x their weights per
    token) and the attention products (2 x 2 x pos^2 x d_model per layer, causal half); no unembedding."""
    from interp.pruning.weights import decoder_weights

    cfg = model.cfg
    decoder = sum(weight.numel for weight in decoder_weights(model))
    return sum(2 * decoder * len(ids) + cfg.n_layers * 2 * len(ids) ** 2 * cfg.d_model for ids in token_lists)


def matmul_rate(size: int = 1024, repeats: int = 7) -> float:
    """fp32 FLOP/s of a ``size`` x ``size`` matmul, best of ``repeats`` (the benches' shared timer for their FLOP floors)."""
    a, b = torch.randn(size, size), torch.randn(size, size)
    a @ b
    best = float("inf")
    for _ in range(repeats):
        start = time.perf_counter()
        a @ b
        best = min(best, time.perf_counter() - start)
    return 2 * size**3 / best


def throughput(model, hf_model, n_prompts: int, args) -> tuple[float, float, float]:
    """Tokens/s of interp and each peer on ``n_prompts`` prompts, printed with the FLOP floor; returns interp's ratios."""
    prompts = make_prompts(n_prompts, args.tokens)
    token_lists = tokenize_prompts(model, prompts)
    n_tokens, pad_id = sum(len(ids) for ids in token_lists), pad_token_id(model)
    bare_forward_seconds(model, prompts.select(range(args.batch_size)), args.batch_size)  # warm-up
    hooked_hf_seconds(hf_model, token_lists[: args.batch_size], args.batch_size, pad_id)
    seconds: dict[str, list[float]] = {"bare": [], "interp": [], "hooked HF": [], "hooked HF body": [], "transformer_lens": []}
    rate = 0.0
    with tempfile.TemporaryDirectory() as tmp:
        for repeat in range(args.repeats):  # interleaved, so drift on a noisy machine hits all alike
            rate = max(rate, matmul_rate())
            seconds["bare"].append(bare_forward_seconds(model, prompts, args.batch_size))
            seconds["interp"].append(cache_seconds(model, prompts, args.batch_size, Path(tmp) / f"s{repeat}"))
            hf_time, hf_rows = hooked_hf_seconds(hf_model, token_lists, args.batch_size, pad_id)
            seconds["hooked HF"].append(hf_time)
            body_time, body_rows = hooked_hf_seconds(hf_model, token_lists, args.batch_size, pad_id, body_only=True)
            seconds["hooked HF body"].append(body_time)
            tl_time, tl_rows = transformer_lens_seconds(model, token_lists, args.batch_size, pad_id)
            seconds["transformer_lens"].append(tl_time)
        interp_rows = store_rows(Path(tmp) / "s0", model.cfg.n_layers)
    rate_of = {name: n_tokens / min(times) for name, times in seconds.items()}
    differences = {"hooked HF": (interp_rows - hf_rows).abs().max().item(), "hooked HF body": (interp_rows - body_rows).abs().max().item(),
                   "transformer_lens": (interp_rows - tl_rows).abs().max().item()}
    floor = forward_flops(model, token_lists) / rate
    print(f"\n{n_prompts} prompts ({n_tokens} tokens): FLOP floor {forward_flops(model, token_lists) / 1e9:.0f} GFLOP = {floor:.2f} s "
          f"at the fp32 matmul rate measured here ({rate / 1e9:.0f} GFLOP/s)")  # fmt: skip
    labels = {"bare": "bare forward", "interp": "interp cache", "hooked HF": "hooked HF forward", "hooked HF body": "hooked HF body only", "transformer_lens": "transformer_lens"}
    for name, label in labels.items():
        extra = f"   max |diff| {differences[name]:.2e}" if name in differences else ""
        print(f"  {label:<19}: {rate_of[name]:10.0f} tokens/s   {min(seconds[name]) / floor:5.1f}x the floor{extra}")
    ratios = tuple(rate_of["interp"] / rate_of[name] for name in ("bare", "hooked HF", "hooked HF body", "transformer_lens"))
    print(f"  ratio vs bare forward      : {ratios[0]:.2f}x   (target >= 0.85)")
    print(f"  ratio vs hooked HF forward : {ratios[1]:.2f}x   (target >= 1.0)")
    print(f"  ratio vs hooked HF body    : {ratios[2]:.2f}x   (the strongest simple peer: no unembedding either)")
    print(f"  ratio vs transformer_lens  : {ratios[3]:.2f}x")
    return ratios


def read_seconds(path: Path, check_reads: bool) -> float:
    """Seconds to read every hook of every shard once, as a new process would (nothing checked yet)."""
    from interp.store import activations

    activations._READ_AND_CHECKED.clear()  # what a fresh process has checked: nothing
    start = time.perf_counter()
    store = ActivationStore.open(path, check_reads=check_reads)
    total = 0.0
    for hook in store.hooks:
        for part in store.iter_shards(hook):
            total += float(part.sum())  # touches every byte
    return time.perf_counter() - start


def read_check_cost(model, args, root: Path) -> None:
    """The cost of checking each tensor's hash on its first read: a store of ~``--read-gb`` GB read with and without."""
    from interp.store.manifest import tensor_hash

    sites = ["resid_pre", "resid_mid", "resid_post", "attn_out", "mlp_out"]
    sample = tokenize_prompts(model, make_prompts(16, args.tokens))
    per_prompt = 5 * model.cfg.n_layers * max(len(ids) for ids in sample) * model.cfg.d_model * 4
    n_prompts = max(8, round(args.read_gb * 2**30 / per_prompt))
    out = root / f"read-store-{n_prompts}x{args.tokens}"
    if not (out / "manifest.json").exists():
        cache_activations(model, make_prompts(n_prompts, args.tokens), hooks=sites, positions="all", out=out,
                          batch_size=8, shard_size=32, progress=False, resume=True)  # fmt: skip
    size = sum(path.stat().st_size for path in (out / "shards").iterdir())
    times: dict[bool, list[float]] = {True: [], False: []}
    for _ in range(args.repeats):
        for check in (False, True):
            times[check].append(read_seconds(out, check))
    store = ActivationStore.open(out, check_reads=False)
    in_memory = [part.contiguous().view(torch.uint8).numpy() for part in store.iter_shards(store.hooks[0])]
    start = time.perf_counter()
    for array in in_memory:
        tensor_hash(array.data)
    hash_rate = sum(a.nbytes for a in in_memory) / (time.perf_counter() - start)
    plain, checked = min(times[False]), min(times[True])
    print(f"\nreading a {size / 2**30:.2f} GiB store ({n_prompts} prompts, {len(store.hooks)} hooks, all positions), best of {args.repeats}:")
    print(f"  unchecked reads    : {plain:6.2f} s   {size / plain / 2**30:6.2f} GiB/s")
    print(f"  checked reads      : {checked:6.2f} s   {size / checked / 2**30:6.2f} GiB/s   ({checked / plain:.2f}x the time)")
    print(f"  xxh3-128 in memory : {hash_rate / 2**30:6.2f} GiB/s  (the check's floor: {size / hash_rate:.2f} s for this store)")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--model", default=DEFAULT_MODEL, help=f"a registered name or a directory (default: {DEFAULT_MODEL}, random weights)")
    parser.add_argument("--sizes", type=int, nargs="+", default=[64, 256], help="prompts per run: the ratios at each, to see how they grow with the work")
    parser.add_argument("--tokens", type=int, default=64, help="words per prompt (about one token each)")
    parser.add_argument("--batch-size", type=int, default=16)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--skip-memory", action="store_true", help="only the throughput comparison")
    parser.add_argument("--read-gb", type=float, default=1.0, help="size of the store read with and without the hash check (0: skip)")
    parser.add_argument("--only-read", action="store_true", help="only the reading comparison")
    parser.add_argument("--child-memory", type=int, default=None, help=argparse.SUPPRESS)
    parser.add_argument("--root", type=Path, default=None, help=argparse.SUPPRESS)
    args = parser.parse_args()
    root = args.root or Path(tempfile.gettempdir()) / "interp-bench"
    root.mkdir(parents=True, exist_ok=True)
    if args.child_memory:
        child_peak_memory(args.model, root, args.child_memory, args.tokens, args.batch_size)
        return

    from transformers import AutoModelForCausalLM

    model = build_model(args.model, root)
    hf_model = AutoModelForCausalLM.from_pretrained(model_directory(args.model, root), dtype=torch.float32).eval()
    cfg = model.cfg
    if args.only_read:
        read_check_cost(model, args, root)
        return
    print(f"model: {args.model} ({cfg.n_layers} layers, d_model {cfg.d_model}), ~{args.tokens} words per prompt, batch {args.batch_size}, "
          f"threads {torch.get_num_threads()}, best of {args.repeats}")  # fmt: skip
    ratios = {}
    for n_prompts in args.sizes:
        ratios[n_prompts] = throughput(model, hf_model, n_prompts, args)
    if args.read_gb > 0:
        read_check_cost(model, args, root)
    if len(ratios) > 1:
        print("\nas the work grows (interp vs bare / hooked HF / hooked HF body / transformer_lens): "
              + ", ".join(f"{n} prompts " + " / ".join(f"{r:.2f}x" for r in four) for n, four in ratios.items()))  # fmt: skip
    if args.skip_memory:
        return

    peaks = {}
    base = max(args.sizes)
    for n in (base // 4, base * 10 // 4):
        result = subprocess.run(
            [sys.executable, __file__, "--model", args.model, "--child-memory", str(n), "--tokens", str(args.tokens), "--batch-size", str(args.batch_size), "--root", str(root)],
            capture_output=True, text=True, check=True, env={**os.environ},
        )  # fmt: skip
        peaks[n] = json.loads(result.stdout.strip().splitlines()[-1])["peak_rss_kb"]
    small, large = sorted(peaks)
    print(f"peak RSS, {small:5d} prompts: {peaks[small] / 1024:8.1f} MiB")
    print(f"peak RSS, {large:5d} prompts: {peaks[large] / 1024:8.1f} MiB")
    print(f"memory growth     : {peaks[large] / peaks[small]:.3f}x for 10x the prompts   (target < 1.10)")


if __name__ == "__main__":
    main()
