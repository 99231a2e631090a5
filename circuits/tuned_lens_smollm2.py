"""Tuned lens vs logit lens on SmolLM2-135M-Instruct: KL to the final distribution per layer, on held-out text.

    python circuits/tuned_lens_smollm2.py [--out runs/tuned_lens_smollm2]

1. The model continues the prompts of ``assets/prompts/lens_prompts.jsonl`` (sampled at T = 0.8,
   top-p 0.95, seed 0, 64 new tokens); the texts are kept in ``circuits/tuned_lens_smollm2/texts.jsonl``
   and reused on a rerun with the same model and settings.
2. A tuned lens is trained on the texts of the "train" prompts (``interp.lens.train_tuned_lens``
   with its defaults) and saved to ``--out/lens``.
3. On the texts of the "heldout" prompts (other prompts, other generations), the mean KL(final ‖ lens)
   over every position, per layer, for the logit lens and the tuned lens
   (``interp.lens.lens_kl``): written to ``circuits/tuned_lens_smollm2/heldout_kl`` (JSON,
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

HERE = Path(__file__).resolve().parent / "tuned_lens_smollm2"
PROMPTS = Path(__file__).resolve().parents[1] / "assets" / "prompts" / "lens_prompts.jsonl"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--out", type=Path, default=Path("runs/tuned_lens_smollm2"), help="where the trained lens (41 MB) is written")
    args = parser.parse_args()
    model = load_model("smollm2-135m-instruct", device="cpu")
    texts = generate_texts(model, PromptSet.from_file(PROMPTS), cache=HERE)
    train, heldout = split_heldout(texts)
    lens = train_tuned_lens(model, train)
    lens.save(args.out / "lens")
    record = lens.training
    print(f"trained on {record.n_tokens} tokens of {record.n_texts} texts in {record.seconds:.0f} s "
          f"({record.init} init, {record.steps} Adam steps of {record.batch_tokens} tokens)")  # fmt: skip
    result = lens_kl(model, heldout, translator=lens)
    result.save(HERE / "heldout_kl")
    print(f"held-out KL(final ‖ lens), nats, on {result.n_tokens} tokens of {result.n_texts} texts:\n{result.table()}")
    screenshot(HERE / "heldout_kl" / "lens_kl.html", HERE / "lens_kl.png")


if __name__ == "__main__":
    main()
