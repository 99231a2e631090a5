"""Model loading, prompt sets, hook-site names and the CLI's error handling."""

import re
import json

import pytest
import torch

from conftest import PROMPTS
from interp.cli import main
from interp.data import PromptSet, pad_batch, tokenize_prompts
from interp.errors import InterpError
from interp.model import load_model
from interp.sites import expand_sites, parse_site, site_name

# ---- models -------------------------------------------------------------------------------------


@pytest.mark.parametrize("arch", ["gpt2", "llama", "qwen2", "gemma"])
def test_loaded_model_matches_hugging_face(arch, tiny_model_dirs, load_tiny):
    import transformers

    model = load_tiny(arch)
    reference = transformers.AutoModelForCausalLM.from_pretrained(str(tiny_model_dirs[arch]), attn_implementation="eager").eval()
    tokens = model.to_tokens(PROMPTS[0])
    with torch.no_grad():
        diff = (model(tokens) - reference(tokens).logits).abs().max().item()
    assert diff <= 1e-4, f"{arch}: bridge logits differ from Hugging Face by {diff:.2e}"
    assert model.cfg.model_name == str(tiny_model_dirs[arch].resolve())


def test_load_model_errors(tmp_path, monkeypatch):
    with pytest.raises(InterpError, match="no model directory at ./missing"):
        load_model("./missing")
    (tmp_path / "file.bin").write_text("x")
    with pytest.raises(InterpError, match="is a file; pass the model's directory"):
        load_model(tmp_path / "file.bin")
    with pytest.raises(InterpError, match="has no config.json"):
        load_model(tmp_path)
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    with pytest.raises(InterpError, match=r"cannot find model 'no-such-org/no-such-model'.*not a local directory.*HF_HUB_OFFLINE"):
        load_model("no-such-org/no-such-model")
    with pytest.raises(InterpError, match="unknown dtype 'float8'"):
        load_model("gpt2", dtype="float8")


def test_bfloat16_loading(tiny_model_dirs):
    model = load_model(tiny_model_dirs["llama"], device="cpu", dtype="bfloat16")
    assert next(model.parameters()).dtype == torch.bfloat16


# ---- prompt sets ----------------------------------------------------------------------------------


def test_prompt_files_of_every_format(tmp_path):
    (tmp_path / "p.jsonl").write_text('{"text": "a b", "label": "harmful", "source": "x"}\n\n{"text": "c", "label": "benign"}\n')
    (tmp_path / "p.csv").write_text('prompt,label\n"a b",harmful\nc,benign\n')
    (tmp_path / "p.txt").write_text("a b\n\nc\n")
    (tmp_path / "p.json").write_text('[{"text": "a b"}, {"text": "c"}]')
    jsonl = PromptSet.from_file(tmp_path / "p.jsonl")
    assert jsonl.texts == ["a b", "c"] and jsonl.labels == ["harmful", "benign"] and jsonl[0]["source"] == "x"
    csv = PromptSet.from_file(tmp_path / "p.csv", text_field="prompt")
    assert csv.texts == ["a b", "c"] and csv.labels == ["harmful", "benign"]
    assert PromptSet.from_file(tmp_path / "p.txt").texts == ["a b", "c"]
    assert PromptSet.from_file(tmp_path / "p.json").texts == ["a b", "c"]
    assert jsonl.hash == PromptSet.from_file(tmp_path / "p.jsonl").hash != csv.hash


@pytest.mark.parametrize(
    ("name", "content", "message"),
    [
        ("empty.txt", "\n \n", "is empty"),
        ("bad.jsonl", '{"text": "a"}\n{"text": \n', r"bad.jsonl, line 2: not valid JSON"),
        ("list.jsonl", '["a"]\n', "expected a JSON object"),
        ("nofield.jsonl", '{"prompt": "a"}\n', r"has no field 'text' \(fields: prompt\).*--text-field"),
        ("blank.jsonl", '{"text": "  "}\n', "prompt 0 .* has no text"),
        ("p.parquet", "x", "unknown prompt file type '.parquet'"),
    ],
)
def test_bad_prompt_files(tmp_path, name, content, message):
    (tmp_path / name).write_text(content)
    with pytest.raises(InterpError, match=message):
        PromptSet.from_file(tmp_path / name)


def test_unreadable_and_missing_prompt_files(tmp_path):
    with pytest.raises(InterpError, match="does not exist"):
        PromptSet.from_file(tmp_path / "nope.jsonl")
    (tmp_path / "latin1.txt").write_bytes(b"caf\xe9\n")
    with pytest.raises(InterpError, match="cannot read prompt file .*UTF-8"):
        PromptSet.from_file(tmp_path / "latin1.txt")


def test_missing_label_field_is_named():
    prompts = PromptSet.from_records([{"text": "a", "label": "x"}, {"text": "b"}])
    with pytest.raises(InterpError, match="1 of 2 prompts have no field 'label' \\(first: prompt 1\\)"):
        prompts.field("label")


def test_chat_template_is_applied_once_with_one_bos(load_tiny):
    model = load_tiny("llama")
    tokenizer = model.tokenizer
    tokenizer.chat_template = "{{ bos_token }}{% for m in messages %}<{{ m['role'] }}> {{ m['content'] }} {% endfor %}{% if add_generation_prompt %}<assistant>{% endif %}"
    try:
        chat = PromptSet.from_texts(["how do i bake bread ?"]).apply_chat_template(tokenizer)
        assert chat.texts[0] == "<bos><user> how do i bake bread ? <assistant>"
        ids = tokenize_prompts(model, chat)[0]
        assert int((ids == tokenizer.bos_token_id).sum()) == 1 and int(ids[0]) == tokenizer.bos_token_id
    finally:
        tokenizer.chat_template = None
    with pytest.raises(InterpError, match="no chat template"):
        PromptSet.from_texts(["x"]).apply_chat_template(tokenizer)


def test_pad_batch_is_right_padded():
    batch = pad_batch([torch.tensor([5, 6, 7]), torch.tensor([8])], pad_id=0)
    assert batch.tokens.tolist() == [[5, 6, 7], [8, 0, 0]]
    assert batch.attention_mask.tolist() == [[1, 1, 1], [1, 0, 0]]
    assert batch.last_positions.tolist() == [2, 0]


# ---- sites ----------------------------------------------------------------------------------------


def test_sites_expand_and_parse():
    assert expand_sites(["resid_post", "blocks.0.hook_resid_post", "embed"], n_layers=2) == (
        "blocks.0.hook_resid_post",
        "blocks.1.hook_resid_post",
        "hook_embed",
    )
    assert parse_site(site_name("z", 3)).layer == 3 and parse_site("blocks.3.attn.hook_z").kind == "z"
    with pytest.raises(InterpError, match="Did you mean 'blocks.1.hook_mlp_out'"):
        expand_sites(["blocks.1.hook_mlp_ot"], n_layers=2)


@pytest.mark.parametrize("arch", ["gpt2", "llama", "gemma"])
def test_every_site_shorthand_exists_in_the_model(arch, load_tiny):
    from interp.sites import GLOBAL_SITES, LAYER_SITES

    model = load_tiny(arch)
    names = expand_sites(list(LAYER_SITES) + [k for k in GLOBAL_SITES if k != "pos_embed" or arch == "gpt2"], model.cfg.n_layers)
    _, cache = model.run_with_cache(PROMPTS[0], names_filter=lambda name: name in names)
    assert set(names) <= set(cache.keys()), set(names) - set(cache.keys())


# ---- CLI ------------------------------------------------------------------------------------------


def test_cli_cache_end_to_end(tiny_model_dirs, tmp_path, capsys):
    prompts = tmp_path / "prompts.jsonl"
    prompts.write_text("".join(json.dumps({"text": p, "label": i % 2}) + "\n" for i, p in enumerate(PROMPTS)))
    out = tmp_path / "store"
    code = main(["cache", "--model", str(tiny_model_dirs["gemma"]), "--prompts", str(prompts), "--hooks", "resid_post,z", "--out", str(out), "--device", "cpu"])
    assert code == 0, capsys.readouterr().err
    from interp.store import ActivationStore

    store = ActivationStore.open(out)
    assert store.prompts.labels == [i % 2 for i in range(len(PROMPTS))]
    assert (out / "overview.html").read_text().count("plotly") > 0


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--hooks", "resid_pst"], "unknown hook site 'resid_pst'. Did you mean 'resid_post'"),
        (["--positions", "last,1"], "--positions must be 'last', 'all' or comma-separated integers"),
        (["--prompts", "MISSING"], "does not exist"),
    ],
)
def test_cli_errors_are_one_line_without_traceback(tiny_model_dirs, tmp_path, capsys, args, message):
    prompts = tmp_path / "p.txt"
    prompts.write_text("a b\n")
    base = {"--model": str(tiny_model_dirs["llama"]), "--prompts": str(prompts), "--out": str(tmp_path / "out"), "--device": "cpu"}
    for flag, value in zip(args[::2], args[1::2]):
        base[flag] = value if value != "MISSING" else str(tmp_path / "missing.txt")
    argv = ["cache"] + [part for pair in base.items() for part in pair]
    assert main(argv) == 2
    err = capsys.readouterr().err
    assert err.startswith("interp: error: ") and message.split(".")[0] in err and "Traceback" not in err
    assert len(err.strip().splitlines()) == 1


def test_every_subcommand_help_has_an_example(capsys):
    from interp.commands import build_parser

    parser = build_parser()
    subcommands = parser._subparsers._group_actions[0].choices
    assert "cache" in subcommands
    for name, sub in subcommands.items():
        assert re.search(r"^examples?:\n  interp ", sub.format_help(), flags=re.M), f"`interp {name} --help` shows no example"


def test_screenshot_says_when_there_is_no_browser(tmp_path, monkeypatch, caplog):
    import shutil

    from interp.plots import screenshot

    monkeypatch.setattr(shutil, "which", lambda name: None)
    assert screenshot(tmp_path / "f.html", tmp_path / "f.png") is False
    assert "no chromium" in caplog.text and not (tmp_path / "f.png").exists()
