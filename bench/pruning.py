"""SNIP scores side by side: interp against the per-example autograd a user would write and against the reference.

Three peers compute the same scores S = |W| * sum_i |dL_i/dW| (L_i: mean cross-entropy over the
response tokens of example i):

  per-example autograd  what a user writes without the library: the plain Hugging Face model, one
                        forward and one backward per example with every decoder weight at once
                        (``torch.autograd.grad``), ``|grad|`` accumulated per weight
  per-layer reference   Wei et al.'s ``prune_wandg`` (alignment-attribution-code): gradients for one
                        decoder layer at a time, every example rerun once per layer; timed on the
                        first ``--reference-examples`` examples and scaled to all (it is linear in them)
  interp                ``importance_scores``: one forward and one backward per batch for all layers,
                        each example's gradient rebuilt as G_i^T X_i (on the CPU a batch runs in passes
                        of at most ``max_tokens_per_pass`` tokens; the bench prints the cap that ran)

Prints the seconds, both ratios (target: >= 2x the per-example autograd at batch 16), the max relative
difference of the scores from each peer, and the FLOP floor of the workload: forward, backward through
the activations and one weight-gradient product per example and weight (6 x decoder weights x tokens,
plus the unembedding at the response positions and the attention products), at the matmul rate
measured in the same process. Two sizes (``--sizes``) show how the ratios grow with the work.

    python bench/pruning.py                                  # GPT-2-small shape, random weights
    python bench/pruning.py --model smollm2-135m-instruct    # the real model (30 layers, grouped-query attention)
    python bench/pruning.py --model organism --sizes 16 64
"""

import argparse
import os
import sys
import tempfile
import time
from pathlib import Path
from typing import Callable

import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))
from cache import DEFAULT_MODEL, matmul_rate, model_directory  # noqa: E402  (the shared bench model builder and matmul timer)

WORDS = "the quick brown fox jumps over the lazy dog . a cat sat on the mat and looked at the bird . how do i bake bread ? mix flour , water and salt".split()


def make_records(n: int, prompt_words: int, response_words: int, seed: int = 0) -> list[dict]:
    generator = torch.Generator().manual_seed(seed)

    def pick(k: int) -> str:
        return " ".join(WORDS[i] for i in torch.randint(len(WORDS), (k,), generator=generator).tolist())

    return [{"text": pick(prompt_words), "response": " " + pick(response_words)} for _ in range(n)]


def hf_examples(model, records):
    """Token ids and the labels a Hugging Face loss takes (prompt positions -100), from interp's own tokenization."""
    from interp.pruning.pairs import response_pairs, tokenize_pairs

    examples = []
    for example in tokenize_pairs(model, response_pairs(records)):
        labels = example.tokens.clone()
        labels[: example.prompt_length] = -100
        examples.append((example.tokens[None], labels[None]))
    return examples


def plain_weights(hf, model) -> list[tuple[str, int, torch.nn.Parameter, Callable]]:
    """For each of interp's decoder weights: (key, layer, the plain model's parameter holding the same values, a
    function from a tensor of that parameter's shape to interp's [d_out, d_in] layout). Found by value (the bridge
    renames modules); GPT-2's q, k and v are column blocks of its fused ``c_attn`` (a Conv1D, stored [d_in, d_out])."""
    from interp.pruning.weights import decoder_weights

    plain = [parameter for parameter in hf.parameters() if parameter.dim() == 2]
    found = []
    for weight in decoder_weights(model):
        matrix = weight.weight.detach()  # [d_out, d_in]
        match = None
        for parameter in plain:
            if parameter.shape == matrix.shape and torch.equal(parameter, matrix):
                match = (parameter, lambda x: x)
            elif parameter.shape == matrix.mT.shape and torch.equal(parameter, matrix.mT):
                match = (parameter, lambda x: x.mT)
            elif parameter.shape[0] == matrix.shape[1] and parameter.shape[1] % matrix.shape[0] == 0 and weight.name in ("q", "k", "v"):
                width = matrix.shape[0]
                begin = "qkv".index(weight.name) * width
                if torch.equal(parameter[:, begin : begin + width], matrix.mT):
                    match = (parameter, lambda x, begin=begin, width=width: x[:, begin : begin + width].mT)
            if match:
                break
        if match is None:
            raise SystemExit(f"the plain model has no parameter equal to {weight.key}; the comparison needs the same weights")
        found.append((weight.key, weight.layer, *match))
    return found


def scores_from(weights, gradients: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """|W| * sum |grad| in interp's layout, from per-parameter sums (keyed like ``weights``)."""
    return {key: to_matrix(parameter.detach().abs().float() * gradients[key]) for key, _, parameter, to_matrix in weights}


def per_example_autograd(hf, model, records) -> tuple[dict[str, torch.Tensor], float]:
    """One backward per example for all decoder weights at once, |grad| accumulated: what a user would write."""
    weights = plain_weights(hf, model)
    examples = hf_examples(model, records)
    parameters = list({id(parameter): parameter for _, _, parameter, _ in weights}.values())  # GPT-2: c_attn once
    totals = [torch.zeros_like(parameter, dtype=torch.float32) for parameter in parameters]
    hf.requires_grad_(False)
    for parameter in parameters:
        parameter.requires_grad_(True)
    start = time.perf_counter()
    for tokens, labels in examples:
        loss = hf(input_ids=tokens, labels=labels).loss
        for total, grad in zip(totals, torch.autograd.grad(loss, parameters)):
            total += grad.abs()
    seconds = time.perf_counter() - start
    by_parameter = {id(parameter): total for parameter, total in zip(parameters, totals)}
    return scores_from(weights, {key: by_parameter[id(parameter)] for key, _, parameter, _ in weights}), seconds


def per_layer_reference(hf, model, records) -> tuple[dict[str, torch.Tensor], float]:
    """Wei et al.'s procedure: per layer, per example, backward, |grad| summed."""
    weights = plain_weights(hf, model)
    examples = hf_examples(model, records)
    saved: dict[int, torch.Tensor] = {}
    start = time.perf_counter()
    for layer in range(model.cfg.n_layers):
        hf.requires_grad_(False)
        parameters = list({id(p): p for _, weight_layer, p, _ in weights if weight_layer == layer}.values())
        for parameter in parameters:
            parameter.requires_grad_(True)
            saved[id(parameter)] = torch.zeros(parameter.shape)
        for tokens, labels in examples:
            hf.zero_grad(set_to_none=True)
            hf(input_ids=tokens, labels=labels).loss.backward()
            for parameter in parameters:
                saved[id(parameter)] += parameter.grad.abs()
    hf.zero_grad(set_to_none=True)
    seconds = time.perf_counter() - start
    return scores_from(weights, {key: saved[id(parameter)] for key, _, parameter, _ in weights}), seconds


PASS_CAP: dict = {}  # the tokens per forward/backward interp's last run allowed itself (its provenance)


def interp_scores(model, records, batch_size: int) -> tuple[dict[str, torch.Tensor], float]:
    from interp.pruning.scores import importance_scores

    start = time.perf_counter()
    scores = importance_scores(model, records, method="snip", batch_size=batch_size, progress=False)
    seconds = time.perf_counter() - start
    PASS_CAP["tokens"] = scores.provenance.extra.get("max_tokens_per_pass")
    return {key: scores[key] for key in scores.keys}, seconds



def worst_relative(ours: dict[str, torch.Tensor], theirs: dict[str, torch.Tensor]) -> float:
    return max(((ours[key] - theirs[key]).abs().max() / theirs[key].abs().max().clamp_min(1e-30)).item() for key in theirs)


def floor_flops(model, records) -> float:
    """Forward + backward through the activations + one weight-gradient product per example (6 x decoder weights
    x tokens), the unembedding at the response positions (forward and backward), and the attention products."""
    from interp.pruning.pairs import response_pairs, tokenize_pairs
    from interp.pruning.weights import decoder_weights

    decoder = sum(w.numel for w in decoder_weights(model))
    cfg = model.cfg
    total = 0.0
    for example in tokenize_pairs(model, response_pairs(records)):
        tokens = len(example.tokens)
        responses = tokens - example.prompt_length
        total += 6 * decoder * tokens + 4 * cfg.d_model * cfg.d_vocab * responses
        total += cfg.n_layers * 3 * 2 * tokens * tokens * cfg.n_heads * cfg.d_head  # QK^T and AV (causal half, x3 for backward)
    return total


def run_size(model, hf, n: int, args) -> dict:
    """Each procedure ``--repeats`` times, interleaved so that drift on a noisy machine hits all alike; best times kept."""
    records = make_records(n, args.prompt_words, args.response_words, seed=n)
    interp_scores(model, records[:2], 2)  # warm-up
    batched = f"interp, batch {args.batch_size}"
    timings: dict[str, float] = {}
    rate = 0.0
    for _ in range(args.repeats):
        rate = max(rate, matmul_rate())
        ours_1, seconds = interp_scores(model, records, 1)
        timings["interp, batch 1"] = min(seconds, timings.get("interp, batch 1", seconds))
        ours, seconds = interp_scores(model, records, args.batch_size)
        timings[batched] = min(seconds, timings.get(batched, seconds))
        autograd, seconds = per_example_autograd(hf, model, records)
        timings["per-example autograd"] = min(seconds, timings.get("per-example autograd", seconds))
    differences = {"per-example autograd": worst_relative(ours, autograd), "interp batch 1 (batch B vs 1)": worst_relative(ours, ours_1)}
    k = min(n, args.reference_examples)
    if k > 0:
        reference, reference_seconds = per_layer_reference(hf, model, records[:k])
        timings["per-layer reference"] = reference_seconds * n / k
        ours_k, _ = interp_scores(model, records[:k], args.batch_size)
        differences[f"per-layer reference ({k} examples)"] = worst_relative(ours_k, reference)
    return {"n": n, "timings": timings, "differences": differences, "flops": floor_flops(model, records), "rate": rate}


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--model", default=DEFAULT_MODEL, help=f"a registered name ('organism', 'smollm2-135m-instruct') or a directory (default: {DEFAULT_MODEL})")
    parser.add_argument("--sizes", type=int, nargs="+", default=[16, 48], help="calibration examples per run (the reference uses 128)")
    parser.add_argument("--batch-size", type=int, default=16, help="examples per backward for interp's batched run")
    parser.add_argument("--prompt-words", type=int, default=16)
    parser.add_argument("--response-words", type=int, default=32)
    parser.add_argument("--reference-examples", type=int, default=4, help="examples the slow per-layer reference runs (its time is scaled); 0 skips it")
    parser.add_argument("--repeats", type=int, default=2, help="interleaved repeats; the best time of each procedure is kept")
    parser.add_argument("--threads", type=int, default=int(os.environ.get("OMP_NUM_THREADS", "2")), help="torch CPU threads")
    args = parser.parse_args(argv)
    torch.set_num_threads(args.threads)

    from transformers import AutoModelForCausalLM

    from interp.model import load_model

    root = Path(tempfile.gettempdir()) / "interp-bench"
    directory = model_directory(args.model, root)
    model = load_model(directory, device="cpu")
    hf = AutoModelForCausalLM.from_pretrained(directory, dtype=torch.float32).eval()  # the plain model, no bridge
    cfg = model.cfg
    print(f"model: {args.model} ({cfg.n_layers} layers, d_model {cfg.d_model}, {cfg.n_heads} heads); ~{args.prompt_words}+{args.response_words} "
          f"words per example; {args.threads} thread(s); torch {torch.__version__}; best of {args.repeats}")  # fmt: skip
    failed = False
    ratios: dict[int, tuple[float, float]] = {}
    for n in args.sizes:
        result = run_size(model, hf, n, args)
        timings = result["timings"]
        batched = timings[f"interp, batch {args.batch_size}"]
        floor = result["flops"] / result["rate"]
        print(f"\n{n} examples: FLOP floor {result['flops'] / 1e9:.0f} GFLOP = {floor:.2f} s at the fp32 matmul rate measured here "
              f"({result['rate'] / 1e9:.0f} GFLOP/s, 1024 x 1024, best of {args.repeats})")  # fmt: skip
        print(f"  {'procedure':<28} {'seconds':>9} {'interp (batch ' + str(args.batch_size) + ') is':>22} {'x floor':>8}")
        for name, seconds in timings.items():
            print(f"  {name:<28} {seconds:>9.2f} {seconds / batched:>21.2f}x {seconds / floor:>8.1f}")
        for name, difference in result["differences"].items():
            print(f"  max relative difference, interp vs {name}: {difference:.2e}")
            failed |= difference > 1e-4
        autograd = timings["per-example autograd"]
        ratios[n] = (autograd / timings["interp, batch 1"], autograd / batched)
        print(f"  interp's passes held at most {PASS_CAP.get('tokens') or 'unlimited'} tokens each (max_tokens_per_pass in the scores' provenance)")
        print(f"  interp vs per-example autograd: {ratios[n][0]:.2f}x at batch 1, {ratios[n][1]:.2f}x at batch {args.batch_size} (target >= 2x at batch 16)")
    if len(ratios) > 1:
        print("\nratio vs per-example autograd as the work grows: " + ", ".join(f"{n} examples {one:.2f}x / {many:.2f}x" for n, (one, many) in ratios.items())
              + f" (batch 1 / batch {args.batch_size})")  # fmt: skip
    return 1 if failed else 0


if __name__ == "__main__":
    sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
    sys.exit(main())
