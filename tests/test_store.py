"""ActivationStore: values equal run_with_cache on four architectures, padding, resume, errors."""

import json
import os
import signal
import subprocess
import sys
import time

import pytest
import torch

from conftest import PROMPTS
from interp.data import PromptSet
from interp.errors import InterpError
from interp.store import ActivationStore, cache_activations

ARCHITECTURES = ["gpt2", "llama", "qwen2", "gemma"]
PADDING_TOLERANCE = 1e-5


@pytest.mark.parametrize("arch", ARCHITECTURES)
def test_store_equals_run_with_cache(arch, load_tiny, tmp_path):
    model = load_tiny(arch)
    hooks = ["resid_pre", "resid_post", "attn_out", "mlp_out", "z", "pattern"]
    store = cache_activations(model, PROMPTS, hooks=hooks, positions="all", out=tmp_path / "store", batch_size=3, shard_size=3, progress=False)
    store = ActivationStore.open(tmp_path / "store", model=model)
    assert store.n_prompts == len(PROMPTS)
    assert len(store.manifest["shards"]) == 3
    for index, prompt in enumerate(PROMPTS):
        _, cache = model.run_with_cache(prompt)
        length = int(store.lengths[index])
        assert length == cache["blocks.0.hook_resid_pre"].shape[1]
        for name in store.hooks:
            reference = cache[name][0]
            if "pattern" in name:
                cached = store[name][index][:, :length, :length]
            else:
                cached = store[name][index][:length]
            diff = (cached - reference).abs().max().item()
            assert diff <= PADDING_TOLERANCE, f"{arch} {name} prompt {index}: max abs diff {diff:.2e}"
        assert store.str_tokens(index) == model.to_str_tokens(prompt)


@pytest.mark.parametrize("arch", ARCHITECTURES)
def test_store_is_identical_to_run_with_cache_on_the_same_batch(arch, load_tiny, tmp_path):
    """Bit-identical to run_with_cache when both see the same padded batch."""
    from interp.data import pad_batch, pad_token_id, tokenize_prompts

    model = load_tiny(arch)
    store = cache_activations(model, PROMPTS[:4], hooks=["resid_post"], positions="last", out=tmp_path / "s", batch_size=4, progress=False)
    batch = pad_batch(tokenize_prompts(model, PROMPTS[:4]), pad_token_id(model))
    with torch.no_grad():
        _, cache = model.run_with_cache(batch.tokens, attention_mask=batch.attention_mask)
    rows = torch.arange(4)
    for name in store.hooks:
        assert torch.equal(store[name], cache[name][rows, batch.lengths - 1]), name


def test_last_token_padding_matches_each_prompt_alone(load_tiny, tmp_path):
    model = load_tiny("llama")
    store = cache_activations(model, PROMPTS, hooks=["resid_post"], positions="last", out=tmp_path / "s", batch_size=len(PROMPTS), progress=False)
    assert len(set(int(n) for n in store.lengths)) > 3, "prompts must differ in length for this test to mean anything"
    for index, prompt in enumerate(PROMPTS):
        _, cache = model.run_with_cache(prompt)
        for layer in range(model.cfg.n_layers):
            name = f"blocks.{layer}.hook_resid_post"
            diff = (store[name][index] - cache[name][0, -1]).abs().max().item()
            assert diff <= PADDING_TOLERANCE, f"{name} prompt {index}: {diff:.2e}"


def test_explicit_positions_and_stack(load_tiny, tmp_path):
    model = load_tiny("qwen2")
    store = cache_activations(model, PROMPTS, hooks=["resid_post"], positions=[0, -1], out=tmp_path / "s", progress=False)
    stacked = store.stack("resid_post")
    assert stacked.shape == (model.cfg.n_layers, len(PROMPTS), 2, model.cfg.d_model)
    _, cache = model.run_with_cache(PROMPTS[1])
    assert torch.allclose(stacked[1, 1, 0], cache["blocks.1.hook_resid_post"][0, 0], atol=PADDING_TOLERANCE)
    assert torch.allclose(stacked[1, 1, 1], cache["blocks.1.hook_resid_post"][0, -1], atol=PADDING_TOLERANCE)


@pytest.mark.parametrize("arch", ["gpt2", "llama", "qwen2", "gemma", "gemma2"])
def test_stored_readout_reproduces_the_logits(arch, load_tiny, tmp_path):
    model = load_tiny(arch)
    store = cache_activations(model, PROMPTS, hooks=[f"blocks.{model.cfg.n_layers - 1}.hook_resid_post"], out=tmp_path / "s", progress=False)
    resid = store[f"blocks.{model.cfg.n_layers - 1}.hook_resid_post"]
    for index, prompt in enumerate(PROMPTS):
        logits = model(prompt)[0, -1]
        diff = (store.readout(resid[index]) - logits).abs().max().item()
        assert diff <= 1e-4, f"{arch} prompt {index}: readout differs from the logits by {diff:.2e}"


def test_readout_of_an_untied_head_reproduces_the_logits(load_tiny):
    """Qwen2's lm_head is its own matrix: the readout copies it (not the embedding) and reproduces every position's logits."""
    from interp.store.readout import Readout

    model = load_tiny("qwen2")
    embed, head = model.embed.original_component.weight, model.unembed.original_component.weight
    assert head is not embed and not torch.equal(head, embed), "the tiny qwen2 must have an untied lm_head"
    readout = Readout.from_model(model)
    assert torch.equal(readout.W_U, head.detach().T) and (readout.b_U is None or not readout.b_U.any()), "W_U is not lm_head, or a bias appeared"
    assert readout.verified_max_abs_diff <= 1e-5, f"the readout's own check: {readout.verified_max_abs_diff:.2e}"
    last = f"blocks.{model.cfg.n_layers - 1}.hook_resid_post"
    for prompt in PROMPTS:
        logits, cache = model.run_with_cache(prompt, names_filter=last)
        diff = (readout(cache[last][0]) - logits[0]).abs().max().item()
        assert diff <= 1e-5, f"{prompt!r}: the readout differs from the logits by {diff:.2e}"


def test_manifest_records_provenance(load_tiny, tmp_path):
    model = load_tiny("llama")
    store = cache_activations(model, PROMPTS, hooks=["resid_post"], out=tmp_path / "s", seed=7, progress=False)
    manifest = json.loads((tmp_path / "s" / "manifest.json").read_text())
    for key in ("model_id", "weights_hash", "tokenizer", "hooks", "shapes", "dtype", "prompts_hash", "seed", "interp_version"):
        assert key in manifest, key
    assert manifest["seed"] == 7 and manifest["status"] == "complete"
    assert manifest["shapes"]["blocks.0.hook_resid_post"] == [model.cfg.d_model]
    assert manifest["prompts_hash"] == PromptSet.from_texts(PROMPTS).hash
    assert store.prompts.texts == PROMPTS


def test_reads_are_memory_mapped(load_tiny, tmp_path):
    """The tensor's memory is a mapping of the shard file itself (Linux: /proc/self/maps)."""
    maps = "/proc/self/maps"
    if not os.path.exists(maps):
        pytest.skip("needs /proc/self/maps (Linux) to see memory mappings")
    model = load_tiny("llama")
    store = cache_activations(model, PROMPTS, hooks=["resid_post"], out=tmp_path / "s", progress=False)
    shard = next(store.iter_shards("blocks.0.hook_resid_post"))
    address = shard.data_ptr()
    shard_file = str((tmp_path / "s" / store.manifest["shards"][0]["file"]).resolve())
    mapped_from = []
    for line in open(maps):
        fields = line.split()
        low, high = (int(x, 16) for x in fields[0].split("-"))
        if low <= address < high and len(fields) >= 6:
            mapped_from.append(fields[5])
    assert mapped_from == [shard_file]


# ---- interruption and resume --------------------------------------------------------------------


def test_interrupted_run_keeps_finished_shards_and_resumes_to_the_same_values(load_tiny, tmp_path, monkeypatch):
    import interp.store.capture as capture_module

    model = load_tiny("gpt2")
    prompts = PROMPTS * 3  # 21 prompts, shards of 4
    reference = cache_activations(model, prompts, hooks=["resid_post", "z"], out=tmp_path / "reference", batch_size=2, shard_size=4, progress=False)

    real = capture_module.run_and_capture  # "z" is read through the bridge
    calls = {"n": 0}

    def dies_on_the_seventh_batch(*args, **kwargs):
        calls["n"] += 1
        if calls["n"] == 7:
            raise KeyboardInterrupt
        return real(*args, **kwargs)

    monkeypatch.setattr(capture_module, "run_and_capture", dies_on_the_seventh_batch)
    with pytest.raises(KeyboardInterrupt):
        cache_activations(model, prompts, hooks=["resid_post", "z"], out=tmp_path / "run", batch_size=2, shard_size=4, progress=False)
    monkeypatch.setattr(capture_module, "run_and_capture", real)

    with pytest.raises(InterpError, match="unfinished.*--resume"):
        ActivationStore.open(tmp_path / "run")
    partial = ActivationStore.open(tmp_path / "run", allow_partial=True)
    assert partial.n_prompts == 12  # three finished shards of four prompts
    for name in partial.hooks:
        assert torch.equal(partial[name], reference[name][:12])
    assert not [p for p in (tmp_path / "run").rglob("*.tmp")], "a temporary file was left behind"

    with pytest.raises(InterpError, match="--resume"):
        cache_activations(model, prompts, hooks=["resid_post", "z"], out=tmp_path / "run", batch_size=2, shard_size=4, progress=False)
    resumed = cache_activations(model, prompts, hooks=["resid_post", "z"], out=tmp_path / "run", batch_size=2, shard_size=4, resume=True, progress=False)
    assert resumed.n_prompts == len(prompts)
    for name in reference.hooks:
        assert torch.equal(resumed[name], reference[name]), name
    resumed.verify()


def test_readout_written_beside_the_first_batches_is_recorded_or_its_failure_raised(load_tiny, tmp_path, monkeypatch):
    from interp.store.manifest import file_record
    from interp.store.readout import Readout

    model = load_tiny("llama")
    store = cache_activations(model, PROMPTS, hooks=["resid_post"], out=tmp_path / "ok", batch_size=2, progress=False)
    assert store.manifest["files"]["readout.safetensors"] == file_record(tmp_path / "ok" / "readout.safetensors")
    store.verify()

    def no_space(self, path):
        raise InterpError(f"no space left on the device holding {path}")

    monkeypatch.setattr(Readout, "save", no_space)
    with pytest.raises(InterpError, match="no space left"):
        cache_activations(model, PROMPTS, hooks=["resid_post"], out=tmp_path / "full", batch_size=2, progress=False)
    assert not (tmp_path / "full" / "manifest.json").exists(), "a manifest recorded a readout that was never written"
    monkeypatch.undo()
    again = cache_activations(model, PROMPTS, hooks=["resid_post"], out=tmp_path / "full", batch_size=2, resume=True, progress=False)
    assert torch.equal(again["blocks.0.hook_resid_post"], store["blocks.0.hook_resid_post"])  # the lock was released, the start redone


def test_killed_process_resumes_from_the_cli(tiny_model_dirs, tmp_path):
    prompts = tmp_path / "prompts.txt"
    prompts.write_text("\n".join(PROMPTS * 60))
    out = tmp_path / "store"
    command = [sys.executable, "-m", "interp.cli", "cache", "--model", str(tiny_model_dirs["llama"]), "--prompts", str(prompts), "--out", str(out), "--batch-size", "1", "--shard-size", "2", "--device", "cpu"]
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    process = subprocess.Popen(command, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, env=env)
    deadline = time.time() + 120
    killed = False
    while time.time() < deadline and process.poll() is None:
        manifest = out / "manifest.json"
        if manifest.exists():
            try:
                done = len(json.loads(manifest.read_text())["shards"])
            except (json.JSONDecodeError, KeyError):
                pytest.fail("the manifest was read half-written: writes are not atomic")
            if done >= 3:
                process.send_signal(signal.SIGKILL)
                killed = True
                break
        time.sleep(0.01)
    process.wait()
    if not killed:
        pytest.skip("the caching run finished before it could be killed")
    partial = ActivationStore.open(out, allow_partial=True)
    assert partial.n_prompts >= 6
    finished = {name: partial[name].clone() for name in partial.hooks}
    from interp.cli import main

    assert main(command[3:] + ["--resume"]) == 0
    store = ActivationStore.open(out)
    store.verify()
    assert store.n_prompts == len(PROMPTS) * 60
    for name, values in finished.items():
        assert torch.equal(store[name][: len(values)], values)
    reference = cache_activations(store_model(tiny_model_dirs), PROMPTS * 60, hooks=["resid_post"], out=tmp_path / "reference", batch_size=16, progress=False)
    for name in reference.hooks:
        assert (store[name] - reference[name]).abs().max() <= PADDING_TOLERANCE


def store_model(tiny_model_dirs):
    from interp.model import load_model

    return load_model(tiny_model_dirs["llama"], device="cpu")


# ---- bad input ----------------------------------------------------------------------------------


def test_unknown_hook_suggests_close_names(load_tiny, tmp_path):
    with pytest.raises(InterpError, match=r"unknown hook site 'blocks.0.hook_resid_pst'.*Did you mean 'blocks.0.hook_resid_post'"):
        cache_activations(load_tiny("llama"), PROMPTS, hooks=["blocks.0.hook_resid_pst"], out=tmp_path / "s", progress=False)
    assert not (tmp_path / "s").exists(), "a failed run must not leave a half-made store"


def test_prompt_longer_than_context(load_tiny, tmp_path):
    model = load_tiny("llama")
    long_prompt = " ".join(["fox"] * (model.cfg.n_ctx + 5))
    with pytest.raises(InterpError, match=r"prompt 1 is \d+ tokens long but the model's context is 128"):
        cache_activations(model, ["fox", long_prompt], out=tmp_path / "s", progress=False)


@pytest.mark.parametrize("damage", ["truncate", "garble"])
def test_damaged_shard_is_named(load_tiny, tmp_path, damage):
    model = load_tiny("llama")
    cache_activations(model, PROMPTS, out=tmp_path / "s", batch_size=2, shard_size=2, progress=False)
    shard = tmp_path / "s" / "shards" / "shard_00001.safetensors"
    data = shard.read_bytes()
    shard.write_bytes(data[: len(data) // 2] if damage == "truncate" else b"\xff" * 16 + data[16:])
    with pytest.raises(InterpError, match=r"shard .*shard_00001\.safetensors is (truncated|corrupted)"):
        ActivationStore.open(tmp_path / "s")


def test_silently_changed_shard_fails_verification(load_tiny, tmp_path):
    model = load_tiny("llama")
    store = cache_activations(model, PROMPTS, out=tmp_path / "s", progress=False)
    shard = tmp_path / "s" / store.manifest["shards"][0]["file"]
    data = bytearray(shard.read_bytes())
    data[-1] ^= 0xFF
    shard.write_bytes(bytes(data))
    with pytest.raises(InterpError, match="shard_00000.safetensors does not match its recorded hash"):
        ActivationStore.open(tmp_path / "s").verify()


def test_store_refuses_a_different_model(load_tiny, tmp_path):
    cache_activations(load_tiny("llama"), PROMPTS, out=tmp_path / "s", progress=False)
    with pytest.raises(InterpError, match="was made with .*llama.* but this model is .*qwen2"):
        ActivationStore.open(tmp_path / "s", model=load_tiny("qwen2"))


def test_existing_directory_is_never_overwritten(load_tiny, tmp_path):
    (tmp_path / "s").mkdir()
    (tmp_path / "s" / "notes.txt").write_text("keep me")
    with pytest.raises(InterpError, match="not empty and holds no activation store"):
        cache_activations(load_tiny("llama"), PROMPTS, out=tmp_path / "s", progress=False)
    assert (tmp_path / "s" / "notes.txt").read_text() == "keep me"


def test_resume_with_other_settings_is_refused(load_tiny, tmp_path):
    model = load_tiny("llama")
    cache_activations(model, PROMPTS, out=tmp_path / "s", progress=False)
    with pytest.raises(InterpError, match="different settings.*hooks"):
        cache_activations(model, PROMPTS, hooks=["resid_pre"], out=tmp_path / "s", resume=True, progress=False)


def test_unknown_store_hook_suggests(load_tiny, tmp_path):
    store = cache_activations(load_tiny("llama"), PROMPTS, out=tmp_path / "s", progress=False)
    with pytest.raises(InterpError, match="Did you mean 'blocks.1.hook_resid_post'"):
        store["blocks.1.hook_resid_pst"]


def test_atomic_writes_keep_the_usual_permissions(tmp_path):
    """Files written atomically get the permissions a plain write gives (umask), not mkstemp's 0600."""
    import os
    import stat

    from interp.io import atomic_write_text

    old = os.umask(0o022)
    try:
        atomic_write_text(tmp_path / "a.json", "{}")
        plain = tmp_path / "b.json"
        plain.write_text("{}")
    finally:
        os.umask(old)
    assert stat.S_IMODE((tmp_path / "a.json").stat().st_mode) == stat.S_IMODE(plain.stat().st_mode) == 0o644


@pytest.mark.parametrize("field", ["eps", "verified_max_abs_diff", "norm"])
def test_a_readout_missing_a_metadata_field_is_a_clear_error(load_tiny, tmp_path, field):
    from safetensors import safe_open
    from safetensors.torch import load_file, save_file

    from interp.store.readout import Readout

    store = cache_activations(load_tiny("gpt2"), PROMPTS[:4], hooks=["resid_post"], out=tmp_path / "s", batch_size=2, progress=False)
    path = tmp_path / "s" / "readout.safetensors"
    with safe_open(str(path), framework="pt") as handle:
        meta = json.loads(handle.metadata()["readout"])
    del meta[field]
    save_file(load_file(str(path)), str(tmp_path / "damaged.safetensors"), metadata={"readout": json.dumps(meta)})
    with pytest.raises(InterpError, match=f"cannot read the readout .*damaged.safetensors: its metadata has no '{field}'"):
        Readout.load(tmp_path / "damaged.safetensors")
    assert store.readout.norm  # the undamaged one reads
