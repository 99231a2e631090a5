"""``interp dla``: flags default to the library; a run from a model and from a store writes the results it names."""

import inspect

from conftest import PROMPTS

from interp import defaults
from interp.cli import main
from interp.commands import build_parser
from interp.mechanisms.attention import AttentionPattern
from interp.mechanisms.dla import DLAResult, direct_logit_attribution

IOI = "when mary and john went to the store , john gave a drink to"


def test_dla_flags_default_to_the_library():
    args = build_parser().parse_args(["dla", "--out", "x"])
    parameters = inspect.signature(direct_logit_attribution).parameters
    assert args.positions == parameters["positions"].default == defaults.DLA_POSITIONS
    assert args.top_k == inspect.signature(DLAResult.top).parameters["k"].default == defaults.DLA_TOP_K
    assert (
        args.answer is None
        and args.wrong is None
        and parameters["answer"].default is None
        and parameters["wrong"].default is None
    )


def test_dla_from_a_model_writes_the_result_and_patterns(tiny_model_dirs, tmp_path, capsys):
    out = tmp_path / "dla"
    assert (
        main(
            [
                "dla",
                "--model",
                str(tiny_model_dirs["llama"]),
                "--device",
                "cpu",
                "--prompt",
                IOI,
                "--prompt",
                PROMPTS[0],
                "--answer",
                " mary",
                "--wrong",
                " john",
                "--pattern",
                "1.2",
                "--top-k",
                "3",
                "--out",
                str(out),
            ]
        )
        == 0
    )
    printed = capsys.readouterr().out
    result = DLAResult.load(out)
    assert result.prompts == (IOI, PROMPTS[0]) and result.answer_tokens == (" mary", " mary")
    label, value = result.top(1)[0]
    assert f"top heads: {label} {value:+.3f}" in printed
    pattern = AttentionPattern.load(out / "pattern_L1H2")
    assert pattern.prompt == IOI and (pattern.layer, pattern.head) == (1, 2)
    assert (out / "dla.html").exists() and (out / "pattern_L1H2" / "pattern.html").exists()


def test_dla_from_a_store(tiny_model_dirs, tmp_path, capsys):
    prompts = tmp_path / "p.txt"
    prompts.write_text("\n".join(PROMPTS))
    store = tmp_path / "s"
    assert (
        main(
            [
                "cache",
                "--model",
                str(tiny_model_dirs["gpt2"]),
                "--prompts",
                str(prompts),
                "--hooks",
                "resid_pre,pos_embed,attn_out,mlp_out,resid_post",
                "--out",
                str(store),
                "--device",
                "cpu",
            ]
        )
        == 0
    )
    assert main(["dla", "--store", str(store), "--answer", " the", "--out", str(tmp_path / "dla")]) == 0
    printed = capsys.readouterr().out
    assert "top components:" in printed and "top heads" not in printed
    result = DLAResult.load(tmp_path / "dla")
    assert result.head_values is None and result.components[:2] == ("embed", "pos_embed")


def test_dla_flag_errors(tiny_model_dirs, tmp_path, capsys):
    assert main(["dla", "--model", str(tiny_model_dirs["llama"]), "--device", "cpu", "--out", str(tmp_path / "x")]) == 2
    assert "give the prompts once" in capsys.readouterr().err
    assert (
        main(
            [
                "dla",
                "--model",
                str(tiny_model_dirs["llama"]),
                "--device",
                "cpu",
                "--prompt",
                IOI,
                "--pattern",
                "L1H2",
                "--out",
                str(tmp_path / "x"),
            ]
        )
        == 2
    )
    assert "--pattern takes LAYER.HEAD like 23.3, got 'L1H2'" in capsys.readouterr().err
