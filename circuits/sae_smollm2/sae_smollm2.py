"""A TopK sparse autoencoder on SmolLM2-135M-Instruct's middle layer, trained from an activation store.

    python circuits/sae_smollm2/sae_smollm2.py [--layer 15] [--tokens 1000000] [--out runs/sae_smollm2]

Every stage keeps what it finished in ``--out`` and a rerun goes on from there (a stop loses at most one
batch of generations or one checkpoint interval of training):

1. **Corpus** (text the project may use), in this order until it holds ``--tokens`` tokens: the long texts of
   the Thought Anchors data in ``assets/thought_anchors`` (MIT) and the Llama-2-chat answers of
   ``assets/prompts/advbench`` (MIT); the model's own continuations (``LocalBackend``, T = 1.0, top-p 0.95, 8 per
   prompt, 192 new tokens) of the first ``--generated-prompts`` prompts of ``assets/prompts/lens_prompts.jsonl``
   and ``assets/prompts/benign_instructions.jsonl`` (as chat turns), generated in resumable parts; the running
   Python's documentation (``pydoc_data`` topics, standard-library docstrings); the standard library's source.
2. **Store**: the corpus cut into pieces of 128 tokens (``chunk_tokens``), ``resid_post`` of ``--layer``
   at every position; one document in 20 is held out for evaluation.
3. **Training**: ``train_dictionary`` with ``d_sae = 8 x 576``, ``k = 32``, ``--epochs`` passes over the training
   tokens.
4. **Evaluation** on the held-out pieces: FVU, L0, dead latents, CE loss recovered and KL with the SAE
   spliced in (``evaluate_dictionary``), saved to this folder with the feature dashboard; the numbers are
   checked against the targets before the README's table is written.
"""

import argparse
import json
import time
from pathlib import Path

from interp.corpora import python_documentation, python_source
from interp.data import PromptSet
from interp.dictionaries import load_dictionary, train_dictionary
from interp.dictionaries.dashboard import write_dashboard
from interp.dictionaries.evaluate import evaluate_dictionary
from interp.io import atomic_write_json, atomic_write_jsonl, read_jsonl
from interp.model import load_model
from interp.report import screenshot
from interp.store import cache_activations

HERE = Path(__file__).resolve().parent
ASSETS = HERE.parents[1] / "assets"
TARGETS = {"fvu": 0.25, "l0": 64, "dead_fraction": 0.10, "ce_loss_recovered": 0.8}
CHUNK, HELD_OUT_EVERY, PER_PROMPT, NEW_TOKENS = 128, 20, 8, 192


def published_texts() -> list[str]:
    """The long texts of the committed third-party data: Thought Anchors' reasoning and Llama-2-chat's answers."""
    import csv

    texts: dict[str, None] = {}

    def walk(value) -> None:
        if isinstance(value, str) and len(value) > 300:
            texts[value] = None
        elif isinstance(value, dict):
            for item in value.values():
                walk(item)
        elif isinstance(value, list):
            for item in value:
                walk(item)

    for path in sorted((ASSETS / "thought_anchors").rglob("*.json")):
        walk(json.loads(path.read_text(encoding="utf-8")))
    with open(ASSETS / "prompts" / "advbench" / "SFT_aligned_llama2-7b-chat-hf_train_short.csv", encoding="utf-8") as f:
        for row in csv.DictReader(f):
            texts[row["response"].strip()] = None
    return list(texts)


def generation_prompts(tokenizer) -> list[str]:
    prompts = [record["text"] for record in read_jsonl(ASSETS / "prompts" / "lens_prompts.jsonl")]
    for record in read_jsonl(ASSETS / "prompts" / "benign_instructions.jsonl"):
        turn = [{"role": "user", "content": record["prompt"]}]
        prompts.append(tokenizer.apply_chat_template(turn, tokenize=False, add_generation_prompt=True))
    return prompts


def corpus(model, out: Path, budget: int, generated_prompts: int) -> tuple[list[str], dict[str, int]]:
    """The corpus and its tokens per source: the published texts; the model's continuations of the first
    ``generated_prompts`` prompts (generated in parts, one file per prompt, so a stop loses one prompt); Python's
    documentation; then Python's source until the corpus reaches ``budget`` tokens."""
    from interp.resampling.engine import LocalBackend

    def generated() -> list[str]:
        parts = out / "generated"
        parts.mkdir(parents=True, exist_ok=True)
        backend, texts, started = LocalBackend(model), [], time.time()
        for index, prompt in enumerate(generation_prompts(model.tokenizer)[:generated_prompts]):
            path = parts / f"prompt_{index:04d}.jsonl"
            if not path.exists():
                continuations = backend.generate(prompt, PER_PROMPT, temperature=1.0, top_p=0.95,
                                                 max_new_tokens=NEW_TOKENS, seed=index)  # fmt: skip
                atomic_write_jsonl(path, [{"prompt": prompt, "text": text} for text in continuations])
                print(f"  generated prompt {index} ({time.time() - started:.0f} s)", flush=True)
            texts.extend(record["text"] for record in read_jsonl(path))
        return texts

    sources = {"published": published_texts, "generated": generated, "python documentation": python_documentation,
               "python source": python_source}  # fmt: skip
    texts: list[str] = []
    counts: dict[str, int] = {}
    count = 0
    for name, source in sources.items():
        counts[name] = 0
        for text in source():
            if count >= budget:
                break
            if not text.strip():  # a continuation that ended at once
                continue
            n = len(model.tokenizer.encode(text))
            texts.append(text)
            counts[name] += n
            count += n
        print(f"{name}: {counts[name]:,} tokens")
    print(f"corpus: {len(texts)} documents, {count:,} tokens")
    return texts, counts


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--layer", type=int, default=15)
    parser.add_argument("--tokens", type=int, default=1_000_000, help="corpus size to reach, in tokens")
    parser.add_argument("--k", type=int, default=32)
    parser.add_argument("--expansion", type=int, default=8)
    parser.add_argument("--epochs", type=int, default=1, help="passes over the training tokens")
    parser.add_argument("--out", type=Path, default=Path("runs/sae_smollm2"))
    parser.add_argument("--generated-prompts", type=int, default=120, help="prompts whose continuations to generate")
    parser.add_argument("--corpus-only", action="store_true", help="stop after the corpus (generation) stage")
    args = parser.parse_args()
    model = load_model("smollm2-135m-instruct", device="cpu")
    site = f"blocks.{args.layer}.hook_resid_post"
    texts, sources = corpus(model, args.out, args.tokens, args.generated_prompts)
    if args.corpus_only:
        return
    train_docs = [text for index, text in enumerate(texts) if index % HELD_OUT_EVERY]
    held_out = PromptSet.from_texts([text for index, text in enumerate(texts) if not index % HELD_OUT_EVERY])
    started = time.time()
    store = cache_activations(model, PromptSet.from_texts(train_docs), hooks=[site], positions="all",
                              out=args.out / "store", chunk_tokens=CHUNK, batch_size=16, shard_size=256, resume=True)  # fmt: skip
    n_train = int(store.lengths.sum()) - store.n_prompts  # each piece's BOS is left out of training
    print(f"store: {store.n_prompts} pieces, {n_train:,} training tokens ({time.time() - started:.0f} s)")
    started = time.time()
    dictionary = train_dictionary(store, site, args.out / "sae", expansion=args.expansion, k=args.k,
                                  batch_size=1024, max_tokens=args.epochs * n_train, checkpoint_every=50)  # fmt: skip
    seconds = time.time() - started
    from interp.data import token_chunks

    pieces, _ = token_chunks(model, held_out, CHUNK)
    evaluation = evaluate_dictionary(load_dictionary(args.out / "sae"), model, pieces, batch_size=16)
    evaluation.save(HERE / "evaluation")
    write_dashboard(evaluation, args.out / "features.html")
    screenshot(HERE / "evaluation" / "evaluation.html", HERE / "frequency.png")
    screenshot(args.out / "sae" / "training.html", HERE / "training.png")
    (HERE / "evaluation" / "evaluation.html").unlink()  # 4.7 MB with plotly.js inlined: DictionaryEval.load(...).figure()
    numbers = {"fvu": evaluation.fvu, "l0": evaluation.l0, "dead_fraction": evaluation.dead_fraction,
               "ce_loss_recovered": evaluation.ce_loss_recovered, "kl": evaluation.kl_spliced,
               "dense_fraction": evaluation.dense_fraction, "eval_tokens": evaluation.n_tokens,
               "train_tokens": n_train, "corpus_tokens": sources, "epochs": args.epochs, "train_seconds": round(seconds), "d_sae": dictionary.d_sae, "k": args.k,
               "site": site}  # fmt: skip
    met = {
        "fvu": numbers["fvu"] <= TARGETS["fvu"],
        "l0": numbers["l0"] <= TARGETS["l0"],
        "dead_fraction": numbers["dead_fraction"] <= TARGETS["dead_fraction"],
        "ce_loss_recovered": numbers["ce_loss_recovered"] >= TARGETS["ce_loss_recovered"],
    }
    atomic_write_json(HERE / "numbers.json", {**numbers, "targets": TARGETS, "met": met})
    print(evaluation.summary())
    print("targets met: " + ", ".join(f"{name} {'yes' if ok else 'NO'}" for name, ok in met.items()))


if __name__ == "__main__":
    main()
