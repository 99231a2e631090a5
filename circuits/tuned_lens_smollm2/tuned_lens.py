"""Tuned lens vs logit lens on a real model: KL to the final distribution per layer, on held-out text.

    python circuits/tuned_lens_smollm2/tuned_lens.py [--model smollm2-135m-instruct] [--out runs/tuned_lens_smollm2]

``--model`` is one of the packaged models; each has its findings folder in ``circuits/`` (``FOLDERS``):
SmolLM2-135M-Instruct's is ``circuits/tuned_lens_smollm2/`` (this script's), Qwen2.5-Coder-0.5B-Instruct's
``circuits/tuned_lens_qwen/``; one script serves both, so that the recipe cannot differ between them.

1. The model continues the prompts of ``assets/prompts/lens_prompts.jsonl`` (sampled at T = 0.8,
   top-p 0.95, seed 0, 64 new tokens); the texts are kept in the model's folder (``texts.jsonl``)
   and reused on a rerun with the same model and settings.
2. A tuned lens is trained on the texts of the "train" prompts (``interp.lens.train_tuned_lens``
   with its defaults) and saved to ``--out/lens``.
3. On the texts of the "heldout" prompts (other prompts, other generations), the mean KL(final ‖ lens)
   over every position, per layer, for the logit lens and the tuned lens
   (``interp.lens.lens_kl``): written to the folder's ``heldout_kl`` (JSON,
   safetensors, a Markdown table and the figure as HTML) and printed.

The same with the command line: ``interp lens train --model smollm2-135m-instruct
--texts circuits/tuned_lens_smollm2/texts.jsonl --out runs/tuned_lens_smollm2``.
"""

import argparse
from pathlib import Path

from interp.data import PromptSet
from interp.lens import generate_texts, lens_kl, split_heldout, train_tuned_lens
from interp.model import load_model
from interp.plots import screenshot

CIRCUITS = Path(__file__).resolve().parents[1]  # circuits/: this script lies in SmolLM2's folder, Qwen's is beside it
FOLDERS = {"smollm2-135m-instruct": "tuned_lens_smollm2", "qwen2.5-coder-0.5b-instruct": "tuned_lens_qwen"}
PROMPTS = Path(__file__).resolve().parents[2] / "assets" / "prompts" / "lens_prompts.jsonl"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--model", choices=sorted(FOLDERS), default="smollm2-135m-instruct")
    parser.add_argument("--out", type=Path, help="where the trained lens (SmolLM2: 41 MB, Qwen: 80 MB) is written; default runs/<folder>")
    args = parser.parse_args()
    folder = FOLDERS[args.model]
    here, out = CIRCUITS / folder, args.out or Path("runs") / folder
    model = load_model(args.model, device="cpu")
    texts = generate_texts(model, PromptSet.from_file(PROMPTS), cache=here)
    train, heldout = split_heldout(texts)
    lens = train_tuned_lens(model, train)
    lens.save(out / "lens")
    record = lens.training
    print(f"trained on {record.n_tokens} tokens of {record.n_texts} texts in {record.seconds:.0f} s "
          f"({record.init} init, {record.steps} Adam steps of {record.batch_tokens} tokens)")  # fmt: skip
    result = lens_kl(model, heldout, translator=lens)
    result.save(here / "heldout_kl")
    print(f"held-out KL(final ‖ lens), nats, on {result.n_tokens} tokens of {result.n_texts} texts:\n{result.table()}")
    screenshot(here / "heldout_kl" / "lens_kl.html", here / "lens_kl.png")


if __name__ == "__main__":
    main()
