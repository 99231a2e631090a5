"""GPU benchmarks, side by side in one process: caching against the bare forward, patching against
transformer_lens, rollouts of the local backend against vLLM.

Models (``--models``):
  real   SmolLM2-135M-Instruct (``load_model("smollm2-135m-instruct")``), bfloat16
  1b     a random Llama of about 1.2B parameters (the Llama-3.2-1B shape: 16 layers, d_model 2048,
         32 heads / 8 key-value heads, d_mlp 8192, vocab 128256; transformers LlamaConfig, random
         init), bfloat16, built once under ``--root``
Prints per model, each measured on cuda:0 with the clock stopped after ``torch.cuda.synchronize()``:
  caching    tokens/s of the bridge's bare forward over the same batches (nothing kept) and of
             ``cache_activations`` (resid_post of every layer, last position, written to disk);
             ratio interp / bare                                                 target >= 0.85
  patching   seconds of interp's ``resid_pre`` sweep by position and of transformer_lens' loop
             (one forward per cell: a random sample of ``--tl-cells`` cells, scaled to every cell);
             ratio TL / interp (target >= 5) and the max |diff| on the sampled cells
  rollouts   rollouts/s of ``LocalBackend.generate`` and ``VLLMBackend.generate`` for the same
             prefix, n and settings; ratio vLLM / local. Skipped, with a note, without vllm.
Needs a CUDA GPU: on a machine without one it says so and exits with status 2.

    python bench/gpu.py [--models real,1b] [--prompts 512] [--tokens 128] [--batch-size 32] [--n 64] [--new-tokens 128]
"""

import argparse
import gc
import sys
import tempfile
import time
from pathlib import Path

import torch

LLAMA_1B = dict(num_hidden_layers=16, hidden_size=2048, num_attention_heads=32, num_key_value_heads=8, intermediate_size=8192,
                vocab_size=128256, max_position_embeddings=4096, tie_word_embeddings=True, rope_theta=500000.0)  # fmt: skip
DEVICE = "cuda"  # every measurement runs on cuda:0 (a smoke test of this script may set "cpu")
WORDS = "the quick brown fox jumps over lazy dog a cat sat on mat and looked at bird how do i bake bread".split()


def elapsed(start: float) -> float:
    """Seconds since ``start``, once the GPU has finished what it was given."""
    if DEVICE.startswith("cuda"):
        torch.cuda.synchronize()
    return time.perf_counter() - start


def build_llama_1b(root: Path) -> Path:
    """A random ~1.2B-parameter Llama in bfloat16 with the test suite's small local tokenizer (built once)."""
    import transformers

    from interp.testing import build_tokenizer

    path = root / "llama-1b-random"
    if (path / "config.json").exists():
        return path
    tokenizer = build_tokenizer()
    config = transformers.LlamaConfig(pad_token_id=0, bos_token_id=1, eos_token_id=2, **LLAMA_1B)
    torch.manual_seed(0)
    model = transformers.LlamaForCausalLM(config).to(torch.bfloat16).eval()
    model.save_pretrained(str(path))
    tokenizer.save_pretrained(str(path))
    return path


def model_source(name: str, root: Path) -> str:
    """What ``load_model`` and vLLM load for ``name``: the registered real model, or the built 1B directory."""
    return "smollm2-135m-instruct" if name == "real" else str(build_llama_1b(root))


def make_prompts(n: int, n_words: int, seed: int = 0):
    from interp.data import PromptSet

    generator = torch.Generator().manual_seed(seed)
    picks = torch.randint(len(WORDS), (n, n_words), generator=generator)
    return PromptSet.from_texts([" ".join(WORDS[i] for i in row) for row in picks.tolist()])


def caching_rates(model, prompts, batch_size: int, repeats: int, out: Path) -> dict[str, float]:
    """tokens/s of the bare forward and of ``cache_activations``, best of ``repeats``, interleaved."""
    from interp.data import iter_batches, pad_token_id, tokenize_prompts
    from interp.store import cache_activations

    token_lists = tokenize_prompts(model, prompts)
    n_tokens = sum(len(ids) for ids in token_lists)
    batches = [(b.tokens.to(DEVICE), b.attention_mask.to(DEVICE)) for b in iter_batches(token_lists, batch_size, pad_token_id(model))]
    with torch.inference_mode():
        model(batches[0][0], attention_mask=batches[0][1])  # warm-up
    best = {"bare": float("inf"), "interp": float("inf")}
    for repeat in range(repeats):
        start = time.perf_counter()
        with torch.inference_mode():
            for tokens, mask in batches:
                model(tokens, attention_mask=mask)
        best["bare"] = min(best["bare"], elapsed(start))
        start = time.perf_counter()
        cache_activations(model, prompts, hooks=["resid_post"], positions="last", out=out / f"store{repeat}", batch_size=batch_size, progress=False)
        best["interp"] = min(best["interp"], elapsed(start))
    return {name: n_tokens / seconds for name, seconds in best.items()}


def patching_times(model, n_prompts: int, n_tokens: int, tl_cells: int) -> tuple[float, float, float]:
    """(interp seconds, transformer_lens seconds scaled to the full sweep, max |diff| on the sampled cells)."""
    import transformer_lens.patching as tl_patching

    from interp.metrics import logit_diff
    from interp.patching import activation_patching

    generator = torch.Generator().manual_seed(0)
    n_words, swap = len(model.tokenizer), n_tokens // 2
    clean = torch.randint(3, n_words, (n_prompts, n_tokens), generator=generator)
    corrupt = clean.clone()
    corrupt[:, swap] = (clean[:, swap] - 3 + torch.randint(1, n_words - 3, (n_prompts,), generator=generator)) % (n_words - 3) + 3
    metric = logit_diff(answer=clean[:, swap].tolist(), wrong=corrupt[:, swap].tolist())
    activation_patching(model, clean[:1, :4], corrupt[:1, :4], metric=lambda logits: logits[:, -1, 0], site="resid_pre", progress=False)  # warm-up
    start = time.perf_counter()
    ours = activation_patching(model, clean, corrupt, metric, site="resid_pre", by_position=True, progress=False)
    ours_seconds = elapsed(start)
    every = tl_patching.make_df_from_ranges([model.cfg.n_layers, n_tokens], ["layer", "pos"])
    changed = every[every["pos"] >= swap]
    cells = changed.sample(n=min(tl_cells, len(changed)), random_state=0).reset_index(drop=True)
    with torch.no_grad():
        _, clean_cache = model.run_with_cache(clean.to(DEVICE))
        start = time.perf_counter()
        values = tl_patching.generic_activation_patch(model, corrupt.to(DEVICE), clean_cache, lambda logits: metric(logits).mean(),
                                                      tl_patching.layer_pos_patch_setter, "resid_pre", index_df=cells)  # fmt: skip
        tl_seconds = elapsed(start) * len(every) / len(cells)
    index = (torch.tensor(cells["layer"].to_numpy()), torch.tensor(cells["pos"].to_numpy()))
    difference = (ours.values.cpu()[index].float() - values.cpu().float()).abs().max().item()
    return ours_seconds, tl_seconds, difference


def rollout_rates(model, source: str, n: int, new_tokens: int, prefix_words: int) -> dict[str, float | None]:
    """rollouts/s of the local backend and of vLLM (None without vllm) for one shared prefix."""
    from interp.resampling import LocalBackend

    local = LocalBackend(model)
    context = " ".join(WORDS[i % len(WORDS)] for i in range(prefix_words))
    settings = dict(temperature=0.6, top_p=0.95, max_new_tokens=new_tokens, seed=0)
    local.generate(context, 2, **{**settings, "max_new_tokens": 2})  # warm-up
    start = time.perf_counter()
    local.generate(context, n, **settings)
    rates: dict[str, float | None] = {"local": n / elapsed(start), "vllm": None}
    try:
        import vllm  # noqa: F401
    except ImportError:
        return rates
    from interp.resampling import VLLMBackend

    engine = VLLMBackend(source, tensor_parallel_size=1, seed=0, dtype="bfloat16", gpu_memory_utilization=0.5, max_model_len=2048)
    engine.generate(context, 2, **{**settings, "max_new_tokens": 2})  # warm-up
    start = time.perf_counter()
    engine.generate(context, n, **settings)
    rates["vllm"] = n / elapsed(start)
    del engine
    gc.collect()
    torch.cuda.empty_cache()
    return rates


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--models", default="real,1b", help="comma-separated: real, 1b")
    parser.add_argument("--prompts", type=int, default=512, help="prompts cached")
    parser.add_argument("--tokens", type=int, default=128, help="words per prompt (about one token each)")
    parser.add_argument("--batch-size", type=int, default=32)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--patch-prompts", type=int, default=8, help="prompt pairs of the patching sweep")
    parser.add_argument("--patch-tokens", type=int, default=16, help="tokens per patching prompt")
    parser.add_argument("--tl-cells", type=int, default=48, help="cells transformer_lens runs (scaled to the full sweep)")
    parser.add_argument("--n", type=int, default=64, help="rollouts from one prefix")
    parser.add_argument("--new-tokens", type=int, default=128, help="max new tokens per rollout")
    parser.add_argument("--prefix-words", type=int, default=256, help="words in the shared rollout prefix")
    parser.add_argument("--root", type=Path, default=Path(tempfile.gettempdir()) / "interp-bench", help="where the 1B model is built once")
    args = parser.parse_args(argv)
    if not torch.cuda.is_available():
        print("bench/gpu.py needs a CUDA GPU and torch.cuda.is_available() is False here; run it on a machine with one "
              "(bench/cache.py, bench/patching.py and bench/resampling.py measure the same on the CPU).", file=sys.stderr)  # fmt: skip
        return 2
    from interp.model import load_model

    names = [name.strip() for name in args.models.split(",") if name.strip()]
    unknown = sorted(set(names) - {"real", "1b"})
    if unknown:
        parser.error(f"unknown model {unknown[0]!r}; choose from real, 1b")
    args.root.mkdir(parents=True, exist_ok=True)
    print(f"GPU: {torch.cuda.get_device_name(0)}; torch {torch.__version__}")
    for name in names:
        source = model_source(name, args.root)
        model = load_model(source, device="cuda", dtype="bfloat16")
        n_parameters = sum(p.numel() for p in model.original_model.parameters())
        cfg = model.cfg
        print(f"\nmodel: {name} ({n_parameters / 1e9:.2f}B parameters, {cfg.n_layers} layers, d_model {cfg.d_model}), bfloat16 on cuda:0")
        with tempfile.TemporaryDirectory() as tmp:
            rates = caching_rates(model, make_prompts(args.prompts, args.tokens), args.batch_size, args.repeats, Path(tmp))
        print(f"  caching   bare forward {rates['bare']:10.0f} tokens/s   interp cache {rates['interp']:10.0f} tokens/s   "
              f"ratio {rates['interp'] / rates['bare']:.2f}x (target >= 0.85)")  # fmt: skip
        ours, theirs, difference = patching_times(model, args.patch_prompts, args.patch_tokens, args.tl_cells)
        print(f"  patching  interp {ours:8.2f} s   transformer_lens {theirs:8.2f} s (scaled from {args.tl_cells} cells)   "
              f"ratio {theirs / ours:.1f}x (target >= 5)   max |diff| {difference:.2e}")  # fmt: skip
        rollouts = rollout_rates(model, source, args.n, args.new_tokens, args.prefix_words)
        vllm_text = "vllm not installed (pip install 'interp[vllm]'): skipped" if rollouts["vllm"] is None else (
            f"vLLM {rollouts['vllm']:8.1f} rollouts/s   ratio {rollouts['vllm'] / rollouts['local']:.1f}x")  # fmt: skip
        print(f"  rollouts  local {rollouts['local']:8.1f} rollouts/s   {vllm_text}   ({args.n} from one {args.prefix_words}-word prefix, up to {args.new_tokens} new tokens)")
        del model
        gc.collect()
        torch.cuda.empty_cache()
    return 0


if __name__ == "__main__":
    sys.exit(main())
