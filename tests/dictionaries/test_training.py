"""Training a dictionary: the planted directions are found, a killed run resumes to the same weights, the store's
real tokens are what it reads, and bad input is one line."""

import json

import pytest
import torch

from interp.dictionaries import TrainingLog, TrainingRows, load_dictionary, train_dictionary
from interp.dictionaries import training as training_module
from interp.errors import InterpError

from conftest import PROMPTS

FAST = {"batch_size": 256, "lr": 3e-3, "lr_warmup_steps": 10, "checkpoint_every": 1000}


def _planted(seed: int = 0, n: int = 20_000, d: int = 64, n_directions: int = 48, active: int = 3, noise: float = 0.05):
    """Rows made of ``active`` of ``n_directions`` unit directions with non-negative coefficients, plus noise."""
    generator = torch.Generator().manual_seed(seed)
    directions = torch.nn.functional.normalize(torch.randn(n_directions, d, generator=generator), dim=-1)
    chosen = torch.rand(n, n_directions, generator=generator).argsort(-1)[:, :active]
    coefficients = torch.zeros(n, n_directions).scatter_(1, chosen, torch.rand(n, active, generator=generator) * 2 + 0.5)
    noise_rows = noise * torch.randn(n, d, generator=generator)
    rows = coefficients @ directions + noise_rows
    floor = float((noise_rows**2).sum() / ((rows - rows.mean(0)) ** 2).sum())
    return rows, directions, floor


def _fvu(dictionary, rows) -> float:
    return float(((rows - dictionary(rows)) ** 2).sum() / ((rows - rows.mean(0)) ** 2).sum())


def test_a_planted_dictionary_is_recovered(tmp_path):
    rows, directions, floor = _planted()
    dictionary = train_dictionary(rows, "toy", tmp_path / "sae", d_sae=64, k=3, max_tokens=20 * len(rows), progress=False, **FAST)
    decoder = torch.nn.functional.normalize(dictionary.W_dec, dim=-1)
    best = (directions @ decoder.T).max(-1).values
    assert float((best >= 0.9).float().mean()) >= 0.9  # the standard toy check
    assert _fvu(dictionary, rows) <= 1.25 * floor  # all but the noise explained (floor 0.0215, found 0.0235)
    log = TrainingLog.load(tmp_path / "sae")
    assert log.tokens == 20 * len(rows) // 256 * 256 and log.fvu[-1] < log.fvu[0]
    assert torch.equal(load_dictionary(tmp_path / "sae").encode(rows[:8]), dictionary.encode(rows[:8]))


def test_a_transcoder_learns_a_planted_mlp(tmp_path):
    generator = torch.Generator().manual_seed(0)
    x = torch.randn(8_000, 16, generator=generator)
    w_in = torch.nn.functional.normalize(torch.randn(32, 16, generator=generator), dim=-1)
    hidden = torch.relu(x @ w_in.T - 1.0)  # a sparse MLP: 32 neurons, each on for ~16% of rows
    y = hidden @ torch.randn(32, 16, generator=generator) / 4
    dictionary = train_dictionary((x, y), "mlp_in", tmp_path / "tc", output_site="mlp_out", d_sae=64, k=8,
                                  max_tokens=30 * len(x), progress=False, **FAST)  # fmt: skip
    assert dictionary.is_transcoder and not dictionary.apply_b_dec_to_input
    fvu = float(((y - dictionary(x)) ** 2).sum() / ((y - y.mean(0)) ** 2).sum())
    assert fvu < 0.2, fvu


def test_a_killed_run_resumes_to_the_weights_of_an_uninterrupted_one(tmp_path, monkeypatch, caplog):
    rows, _, _ = _planted(n=4_000)
    settings = {**FAST, "checkpoint_every": 5, "max_tokens": 30 * 256}
    whole = train_dictionary(rows, "toy", tmp_path / "whole", d_sae=64, k=3, progress=False, **settings)

    real_checkpoint = training_module._checkpoint

    def killed_after_step_10(out, record, coder, optimizer, since_fired, log, step):
        real_checkpoint(out, record, coder, optimizer, since_fired, log, step)
        if step == 10:
            raise KeyboardInterrupt  # as a kill right after a checkpoint

    monkeypatch.setattr(training_module, "_checkpoint", killed_after_step_10)
    with pytest.raises(KeyboardInterrupt):
        train_dictionary(rows, "toy", tmp_path / "resumed", d_sae=64, k=3, progress=False, **settings)
    assert json.loads((tmp_path / "resumed" / "checkpoint.json").read_text())["step"] == 10
    monkeypatch.setattr(training_module, "_checkpoint", real_checkpoint)
    caplog.set_level("INFO", logger="interp.dictionaries.training")
    resumed = train_dictionary(rows, "toy", tmp_path / "resumed", d_sae=64, k=3, progress=False, **settings)
    assert "resuming the dictionary training" in caplog.text and "at step 10" in caplog.text  # not trained afresh
    for name in ("W_enc", "b_enc", "W_dec", "b_dec"):
        assert torch.equal(getattr(resumed, name), getattr(whole, name)), name
    assert TrainingLog.load(tmp_path / "resumed").fvu.tolist() == TrainingLog.load(tmp_path / "whole").fvu.tolist()
    with pytest.raises(InterpError, match=r"holds a training run of other settings \(changed: settings\)"):
        train_dictionary(rows, "toy", tmp_path / "resumed", d_sae=64, k=4, progress=False, **settings)


@pytest.fixture(scope="module")
def all_positions(tmp_path_factory, load_tiny):
    from interp.data import PromptSet
    from interp.store import cache_activations

    model = load_tiny("llama")
    out = tmp_path_factory.mktemp("dictionaries") / "store"
    prompts = PromptSet.from_texts(PROMPTS * 3)
    return model, cache_activations(model, prompts, hooks=["resid_post"], positions="all", out=out, shard_size=4,
                                    batch_size=2, progress=False)  # fmt: skip


def test_training_reads_every_real_token_of_the_store_and_records_the_model(all_positions, tmp_path, load_tiny):
    model, store = all_positions
    site = "blocks.1.hook_resid_post"
    rows = TrainingRows(store, [site], skip_first=1, exclude_special=False)
    assert rows.n_rows == int((store.lengths - 1).sum())  # padding and each prompt's first token left out
    gathered = torch.cat([rows._shard_site(index, site) for index in range(len(store.shard_ranges))])
    acts = store[site]
    expected = torch.cat([acts[p, 1 : int(store.lengths[p])] for p in range(store.n_prompts)])
    assert torch.equal(gathered, expected.float())
    dictionary = train_dictionary(store, site, tmp_path / "sae", expansion=2, k=4, batch_size=32, max_tokens=640,
                                  checkpoint_every=5, progress=False)  # fmt: skip
    assert dictionary.site == site and dictionary.weights_hash == store.weights_hash
    dictionary.check_model(model)
    with pytest.raises(InterpError, match="this dictionary was trained on .* not on .*train one on this model"):
        dictionary.check_model(load_tiny("gpt2"))


def test_the_batches_are_a_function_of_the_seed_and_the_step(all_positions):
    _, store = all_positions
    rows = TrainingRows(store, ["blocks.0.hook_resid_post"], window_bytes=4 * 1024)  # several windows per pass
    stream = rows.batches(8, seed=3)
    first = [next(stream)[0] for _ in range(12)]
    again = rows.batches(8, seed=3, start_step=7)
    for step in range(7, 12):
        assert torch.equal(next(again)[0], first[step])
    assert not torch.equal(next(rows.batches(8, seed=4))[0], first[0])


def test_bad_training_input_is_one_line(all_positions, tmp_path, load_tiny):
    from interp.data import PromptSet
    from interp.store import cache_activations

    model, store = all_positions
    with pytest.raises(InterpError, match="has no blocks.1.hook_mlp_out; cache it"):
        train_dictionary(store, "blocks.1.hook_mlp_out", tmp_path / "a", progress=False)
    last = cache_activations(model, PromptSet.from_texts(PROMPTS), hooks=["resid_post"], out=tmp_path / "last", progress=False)
    with pytest.raises(InterpError, match="holds positions 'last' only; a dictionary trains on every token"):
        train_dictionary(last, "blocks.1.hook_resid_post", tmp_path / "b", progress=False)
    with pytest.raises(InterpError, match="k = 99 is larger than the dictionary's 16 latents"):
        train_dictionary(store, "blocks.1.hook_resid_post", tmp_path / "c", d_sae=16, k=99, progress=False)
    with pytest.raises(InterpError, match="the rows hold NaN or inf"):
        train_dictionary(torch.full((64, 8), float("nan")), "toy", tmp_path / "d", progress=False)
    with pytest.raises(InterpError, match="unknown training setting 'topk'"):
        train_dictionary(store, "blocks.1.hook_resid_post", tmp_path / "e", topk=4, progress=False)
    (tmp_path / "f").mkdir()
    (tmp_path / "f" / "other.txt").write_text("x")
    with pytest.raises(InterpError, match="is not empty and holds no dictionary training"):
        train_dictionary(torch.randn(64, 8), "toy", tmp_path / "f", k=2, batch_size=8, progress=False)


def test_batch_topk_keeps_k_per_row_on_average_and_becomes_a_jumprelu(tmp_path):
    """BatchTopK (``activation="batchtopk"``): the planted directions are found as by TopK; a training batch keeps
    exactly k x batch activations while rows vary; the saved dictionary is a JumpReLU whose one threshold gives
    about k active latents per row at inference."""
    from interp.dictionaries.batch_topk import add_threshold, batch_topk_forward

    rows, directions, floor = _planted()
    dictionary = train_dictionary(rows, "toy", tmp_path / "sae", d_sae=64, k=3, activation="batchtopk",
                                  max_tokens=20 * len(rows), progress=False, **FAST)  # fmt: skip
    decoder = torch.nn.functional.normalize(dictionary.W_dec, dim=-1)
    assert float(((directions @ decoder.T).max(-1).values >= 0.9).float().mean()) >= 0.9
    # FVU 0.035 against the noise floor's 0.0215 (TopK: 0.0235): BatchTopK's own optimum on rows of exactly 3 actives
    assert _fvu(dictionary, rows) <= 1.75 * floor
    assert dictionary.activation == "jumprelu" and dictionary.extra == {"trained_as": "batchtopk", "k": 3}
    assert torch.unique(dictionary.threshold).numel() == 1 and float(dictionary.threshold[0]) > 0
    l0 = float((dictionary.encode(rows) > 0).sum(-1).float().mean())
    assert 2.4 <= l0 <= 3.6, l0  # k = 3 on average
    loaded = load_dictionary(tmp_path / "sae")  # SAELens's format (a JumpReLU)
    assert (tmp_path / "sae" / "sae_weights.safetensors").exists()
    assert torch.equal(loaded.encode(rows[:64]), dictionary.encode(rows[:64]))

    from interp.dictionaries.training import _new_coder
    from interp.dictionaries.settings import TrainingSettings

    coder = _new_coder(64, 64, TrainingSettings(k=3, activation="batchtopk"), transcoder=False)
    add_threshold(coder)
    output = batch_topk_forward(coder, rows[:256], None, 3, None)
    per_row = (output.latent_acts > 0).sum(-1)
    assert int(per_row.sum()) == 3 * 256 and per_row.min() < 3 < per_row.max()  # k x batch, unevenly spread
    assert train_dictionary(rows, "toy", tmp_path / "sae", d_sae=64, k=3, activation="batchtopk",
                            max_tokens=20 * len(rows), progress=False, **FAST).extra["trained_as"] == "batchtopk"  # fmt: skip


def test_a_killed_batch_topk_run_resumes_bit_exactly(tmp_path, monkeypatch):
    rows, _, _ = _planted(n=4_000)
    settings = {**FAST, "checkpoint_every": 5, "max_tokens": 30 * 256, "activation": "batchtopk"}
    whole = train_dictionary(rows, "toy", tmp_path / "whole", d_sae=64, k=3, progress=False, **settings)
    real_checkpoint = training_module._checkpoint

    def killed_after_step_10(out, record, coder, optimizer, since_fired, log, step):
        real_checkpoint(out, record, coder, optimizer, since_fired, log, step)
        if step == 10:
            raise KeyboardInterrupt

    monkeypatch.setattr(training_module, "_checkpoint", killed_after_step_10)
    with pytest.raises(KeyboardInterrupt):
        train_dictionary(rows, "toy", tmp_path / "resumed", d_sae=64, k=3, progress=False, **settings)
    monkeypatch.setattr(training_module, "_checkpoint", real_checkpoint)
    resumed = train_dictionary(rows, "toy", tmp_path / "resumed", d_sae=64, k=3, progress=False, **settings)
    for name in ("W_enc", "b_enc", "W_dec", "b_dec", "threshold"):
        assert torch.equal(getattr(resumed, name), getattr(whole, name)), name
