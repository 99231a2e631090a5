"""circuits/real_harm_pruning/real_harm_pruning.toml on SmolLM2-135M-Instruct at a tiny size: the model's own answers with
provenance, every set-difference setting next to its random control, the weights restored."""

import json
from pathlib import Path

from interp.experiments import load_config, run_experiment
from interp.model.weights import weights_hash
from interp.pruning import PruningResult
from interp.pruning.completions import Completions

REPO = Path(__file__).resolve().parents[2]
TOML = REPO / "circuits" / "real_harm_pruning" / "real_harm_pruning.toml"
TINY = [
    "n_samples=4", "batch_size=2", "p=[0.05]", "q=[0.02]", "save_masks=false", "completions.max_new_tokens=6",
    "harmful.limit=4", "benign.limit=4", "evaluation.harmful.limit=4", "evaluation.harmful_pairs.limit=3",
    "evaluation.benign_pairs.limit=3", "evaluation.max_new_tokens=6",
]  # fmt: skip


def test_the_real_model_pruning_sweep_writes_each_setting_with_its_random_control(smollm2, tmp_path):
    before = weights_hash(smollm2)
    result = run_experiment(load_config(TOML, overrides=TINY), tmp_path / "run", model=smollm2, progress=False)
    assert weights_hash(smollm2) == before  # every pruned setting restored
    assert [point.label for point in result.points] == ["baseline", "set_difference_p0.05_q0.02", "random_p0.05_q0.02_seed0"]
    sd, control = result["set_difference_p0.05_q0.02"], result["random_p0.05_q0.02_seed0"]
    assert sd.n_pruned == control.n_pruned > 0
    for point in result.points:
        assert {"harm_loss", "benign_loss", "harm_judge_rate", "harm_keyword_rate"} <= set(point.metrics)
    assert result.baseline.metrics["harm_loss"] != sd.metrics["harm_loss"]
    saved = PruningResult.load(tmp_path / "run")
    assert saved["random_p0.05_q0.02_seed0"].metrics == control.metrics
    for name in ("harmful", "benign", "evaluation_harmful_pairs", "evaluation_benign_pairs"):
        made = Completions.load(tmp_path / "completions" / name)
        assert made.provenance["weights_hash"] == before and made.provenance["model_id"] == "smollm2-135m-instruct"
        assert made.completions_per_second > 0 and made.provenance["extra"]["chat_template"]
        assert made.records[0]["text"].startswith("<|im_start|>") and made.records[0]["text"].endswith("<|im_start|>assistant\n")
    config = json.loads((tmp_path / "run" / "config.json").read_text())
    assert config["chat_template"] and config["evaluation"]["judge"] == "harm-compliance"
