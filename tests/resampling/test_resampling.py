"""Chain-of-thought resampling: published numbers, metric oracles, the rollout engine, results, CLI."""

import json
from pathlib import Path

import numpy as np
import pytest

from conftest import BLACKMAIL, THOUGHT_ANCHORS, blackmail_matches, load_json
from interp.errors import InterpError
from interp.resampling import (
    Chain,
    LocalBackend,
    ResamplingResult,
    RolloutRun,
    SamplingConfig,
    accuracy,
    analyze,
    answer_kl,
    answers_match,
    counterfactual_importance_accuracy,
    counterfactual_importance_kl,
    different_trajectories_fraction,
    extract_boxed,
    extract_boxed_answers,
    grade,
    make_extractor,
    overdeterminedness,
    resampling_importance_accuracy,
    resampling_importance_kl,
    resilience,
    run_rollouts,
    sentence_importance_matrix,
    sentence_spans,
    split_sentences,
)

MATH = THOUGHT_ANCHORS / "website_math" / "deepseek-r1-distill-llama-8b"


def _problem_dirs(root: Path):
    return sorted(p for p in root.glob("*/*") if (p / "chunks_labeled.json").exists())


# --------------------------------------------------------------------------- published numbers


def test_splitter_reproduces_every_published_math_chunk():
    dirs = _problem_dirs(MATH)
    assert len(dirs) == 20
    matched = 0
    for d in dirs:
        base = load_json(d, "base_solution.json")
        published = [c["chunk"] for c in load_json(d, "chunks_labeled.json")]
        for field in ("solution", "full_cot"):  # the CoT alone, and prompt + <think> + CoT
            ours = split_sentences(base[field])
            assert ours == published, f"{d.name}/{field}: first difference at {_first_diff(ours, published)}"
        matched += 1
    assert matched == 20  # 20/20 problems, 2,929 chunks, exactly


def _first_diff(a, b):
    for i, (x, y) in enumerate(zip(a, b)):
        if x != y:
            return i, x, y
    return min(len(a), len(b)), len(a), len(b)


def test_resampling_importance_from_published_accuracies_equals_published():
    n_sentences = 0
    for d in _problem_dirs(MATH) + _problem_dirs(BLACKMAIL / "qwq-32b"):
        chunks = load_json(d, "chunks_labeled.json")
        assert [c["chunk_idx"] for c in chunks] == list(range(len(chunks)))
        acc = np.array([c["accuracy"] for c in chunks])
        ours = resampling_importance_accuracy(acc)
        published = np.array([c["resampling_importance_accuracy"] for c in chunks])
        np.testing.assert_allclose(ours, published, rtol=0, atol=1e-12, err_msg=str(d))
        n_sentences += len(chunks)
    assert n_sentences == 2929 + 146


def test_blackmail_deepseek_metrics_are_stored_by_list_position():
    # The published deepseek-r1 scenario lacks chunk 22; from there on its metrics sit one
    # entry late (metrics of chunk k are stored at list position k). Accuracies do not.
    chunks = load_json(BLACKMAIL / "deepseek-r1/no_base_solution/scenario_0", "chunks_labeled.json")
    idx = [c["chunk_idx"] for c in chunks]
    assert 22 not in idx and len(idx) == 51
    acc = {c["chunk_idx"]: c["accuracy"] for c in chunks}
    by_chunk = np.array([acc[i + 1] - acc[i] if i in acc and i + 1 in acc else 0.0 for i in range(52)])
    published = np.array([c["resampling_importance_accuracy"] for c in chunks])
    np.testing.assert_allclose(published, by_chunk[: len(chunks)], atol=1e-12)  # position p holds chunk p


def test_blackmail_overdeterminedness_matches_published():
    # entry at position k describes chunk k (see above)
    report, direct = blackmail_matches("overdeterminedness", lambda resampled, _: overdeterminedness(resampled))
    assert report == {"deepseek-r1": (50, 50), "qwq-32b": (146, 146)}, report
    assert direct == {"deepseek-r1": 50, "qwq-32b": 145}, direct  # all but qwq's last chunk


# --------------------------------------------------------------------------- splitting & answers


def test_split_rules():
    assert split_sentences("") == []
    assert split_sentences("<think>   </think> answer") == []
    assert split_sentences("No tags here. Second one here!") == ["No tags here.", "Second one here!"]
    # blank lines end a piece; pieces under 10 characters merge into the next (or previous)
    assert split_sentences("Short.\n\nThis one is longer. ok") == ["Short. This one is longer. ok"]
    assert split_sentences("A long first sentence. ok") == ["A long first sentence. ok"]
    assert split_sentences("x = 1.5 is fine. Dr. Who is here.") == ["x = 1.5 is fine.", "Dr. Who is here."]
    assert split_sentences("Before <think>Inside the tags. And some more.</think> after.") == [
        "Inside the tags.",
        "And some more.",
    ]


def test_sentence_spans_point_into_the_text():
    text = "Q? <think>\nFirst step here. Second step here.\n\nThird step here.</think>"
    for s in sentence_spans(text):
        assert text[s.start : s.end] == s.text


def test_chain_contexts_are_prefixes():
    chain = Chain.from_text("Q: 2+2? <think>\n", "Add two and two. That gives four.\n\nSo four.</think> \\boxed{4}")
    assert chain.sentences == ("Add two and two.", "That gives four. So four.")
    assert chain.contexts[0] == "Q: 2+2? <think>\n"
    assert chain.contexts[1] == "Q: 2+2? <think>\nAdd two and two."
    assert chain.contexts[2] == "Q: 2+2? <think>\nAdd two and two. That gives four.\n\nSo four."


def test_chain_without_sentences_is_a_clear_error():
    with pytest.raises(InterpError, match="no sentences"):
        Chain.from_text("prompt", "  <think>\n\n</think> 4")


def test_boxed_extraction_matches_braces():
    assert extract_boxed_answers(r"\boxed{\frac{1}{2}} then \boxed{} then \boxed{x^{2}}") == [r"\frac{1}{2}", "x^{2}"]
    assert extract_boxed(r"first \boxed{3} second \boxed{4}") == "3"
    assert extract_boxed("nothing") is None
    assert extract_boxed(r"cut off \boxed{12") == "12"


def test_answers_match_normalises_like_the_reference():
    assert answers_match(r"\dfrac{1}{2}", r"\frac{1}{2}")
    assert answers_match("6.17", r"6.17\%")
    assert answers_match("1,000", "1000")
    assert answers_match(r"\frac{1}{4}", "0.25")
    assert not answers_match("12", "13")


def test_grade_counts_missing_answers_instead_of_crashing():
    assert grade(r"so \boxed{4}", make_extractor(), "4") == (r"4", True)
    assert grade("no box", make_extractor(), "4") == (None, None)
    assert grade("answer: 7", make_extractor(r"answer: (\d+)"), "4") == ("7", False)

    def broken(text):
        raise ValueError("boom")

    assert grade("anything", make_extractor(broken), "4") == (None, None)
    assert grade(r"\boxed{4}", make_extractor(), None) == ("4", None)
    with pytest.raises(InterpError, match="does not compile"):
        make_extractor("answer: (")


# --------------------------------------------------------------------------- metric oracles


def _kl_oracle(p_answers, q_answers, alpha=1e-9):
    from scipy.stats import entropy

    support = sorted(set(p_answers) | set(q_answers))
    p = np.array([p_answers.count(a) + alpha for a in support])
    q = np.array([q_answers.count(a) + alpha for a in support])
    return float(entropy(p / p.sum(), q / q.sum()))


def test_answer_kl_matches_scipy():
    p, q = ["4", "4", "5", "6"], ["4", "5", "5", "5", "7"]
    assert answer_kl(p, q) == pytest.approx(_kl_oracle(p, q), rel=1e-9)
    assert answer_kl(p, p) == pytest.approx(0.0, abs=1e-12)
    assert answer_kl([], q) == 0.0
    # answers are binned after normalisation; None / empty answers are dropped
    assert answer_kl([r"\dfrac{1}{2}", None, ""], [r"\frac{1}{2}"]) == pytest.approx(0.0, abs=1e-12)


def test_resampling_kl_uses_consecutive_prefixes():
    answers = [["1", "2"], ["1", "1"], ["1"]]
    kl = resampling_importance_kl(answers)
    assert kl[0] == pytest.approx(_kl_oracle(answers[0], answers[1]))
    assert kl[1] == pytest.approx(0.0, abs=1e-12) and kl[2] == 0.0


def test_counterfactual_metrics_by_hand():
    correct = [True, False, False, True]
    sim = np.array([0.95, 0.2, 0.5, 0.81])
    nxt = [True, True, False, True]
    # dissimilar rollouts (sim < 0.8): #1, #2 -> accuracy 0; next prefix accuracy 3/4
    assert counterfactual_importance_accuracy(correct, sim, nxt) == pytest.approx(-0.75)
    assert counterfactual_importance_accuracy(correct, np.ones(4), nxt) == 0.0  # nothing dissimilar
    answers = ["4", "5", "6", "4"]
    expected = _kl_oracle(["5", "6"], ["4", "4", "6", "4"] + ["4", "4"])
    assert counterfactual_importance_kl(answers, sim, ["4", "4", "6", "4"]) == pytest.approx(expected)
    assert different_trajectories_fraction(sim) == 0.5
    assert overdeterminedness(["a.", "a.", "a.", "b."]) == 0.5
    with pytest.raises(InterpError, match="one similarity per rollout"):
        counterfactual_importance_accuracy(correct, sim[:2], nxt)


def test_sentence_matrix_by_hand():
    e = np.eye(3)
    # prefix 0 (sentence 0 resampled): rollouts mention sentence 2 half the time
    # prefix 1 (sentence 0 kept): every rollout mentions sentences 1 and 2
    rolls = [[e[[2]], e[[0]]], [e[[1, 2]], e[[1, 2]]], [e[[2]]], []]
    m = sentence_importance_matrix(e, rolls)
    assert m[0].tolist() == [0.0, 1.0, 0.5]
    assert m[1].tolist() == [0.0, 0.0, 0.0]  # prefix 2 mentions sentence 2 as often as prefix 1
    assert np.all(np.tril(m) == 0)


# --------------------------------------------------------------------------- scripted runs


class ScriptedBackend:
    """Returns fixed continuations per prefix; records the contexts it was given."""

    max_context = None

    def __init__(self, chain, script, forced_script=None, fail_after=None):
        self.chain, self.script, self.forced = chain, script, forced_script or {}
        self.calls, self.fail_after, self.served = [], fail_after, {}

    def generate(self, context, n, *, temperature, top_p, max_new_tokens, seed):
        if self.fail_after is not None and len(self.calls) >= self.fail_after:
            raise KeyboardInterrupt("simulated interruption")
        self.calls.append(context)
        if context in self.chain.contexts:
            replies = self.script[self.chain.contexts.index(context)]
        else:
            base = next(c for c in self.chain.contexts if context == c + SamplingConfig().forced_suffix)
            replies = self.forced[self.chain.contexts.index(base)]
        start = self.served.get(context, 0)  # successive batches get successive rollouts
        self.served[context] = start + n
        return replies[start : start + n]

    def count_tokens(self, text):
        return len(text.split())

    def describe(self):
        return {"backend": "scripted", "model": "script"}


def one_hot_embedder(synonyms=()):
    """Each distinct text gets its own direction; texts in a synonym group share one."""
    index = {}
    for k, group in enumerate(synonyms):
        for t in group:
            index[t] = k

    def embed(texts):
        for t in texts:
            if t not in index:
                index[t] = max(index.values(), default=-1) + 1
        out = np.zeros((len(texts), 1024))
        for row, t in enumerate(texts):
            out[row, index[t]] = 1.0
        return out

    return embed


S0, S1, S2 = "First I add the numbers.", "Two plus two is four.", "I am confident now."


def A(x):
    return f" So the answer is \\boxed{{{x}}}."


SCRIPT = {
    0: [f" {S0} {S1}" + A(4), " Let me guess." + A(5), f" {S0}" + A(4), " Hmm, not sure at all."],
    1: [f" {S1}" + A(4), " Two plus two is five." + A(5), f" {S1}" + A(4), f" {S1} {S2}" + A(4)],
    2: [f" {S2}" + A(4)] * 3 + [" I am unsure of it." + A(3)],
    3: [A(4)] * 4,
}
FORCED = {0: ["5}", "4}"], 1: ["4}", "4}"], 2: ["4}", "3}"], 3: ["4}", "4}"]}


@pytest.fixture
def scripted_run(tmp_path):
    chain = Chain.from_text("Q: what is 2+2? <think>\n", f"{S0} {S1} {S2}</think> \\boxed{{4}}")
    assert chain.sentences == (S0, S1, S2)
    backend = ScriptedBackend(chain, SCRIPT, FORCED)
    config = SamplingConfig(n=4, n_forced=2, batch_size=2)
    run = run_rollouts(backend, chain, tmp_path / "run", config=config, gt_answer="4", progress=False)
    return run, backend


def test_run_writes_one_record_per_rollout(scripted_run):
    run, backend = scripted_run
    assert len(run.records) == 4 * 4 + 4 * 2
    r = run.by_prefix("resample")[0][1]
    assert r["resampled_sentence"] == "Let me guess." and r["answer"] == "5" and r["is_correct"] is False
    missing = run.by_prefix("resample")[0][3]
    assert missing["answer"] is None and missing["is_correct"] is None
    forced = run.by_prefix("forced")[2][1]
    assert forced["answer"] == "3" and run.full_text(forced).endswith("\\boxed{3}")
    assert run.full_text(r) == run.chain.contexts[0] + r["continuation"]
    assert run.is_complete()


def test_analysis_of_a_scripted_run_by_hand(scripted_run):
    run, _ = scripted_run
    res = analyze(run, one_hot_embedder(), progress=False)
    m = {k: np.asarray(v) for k, v in res.metrics.items()}
    acc = [2 / 3, 3 / 4, 3 / 4]  # prefix 0 drops its unanswered rollout; prefix 3: 1.0
    np.testing.assert_allclose(m["accuracy"], acc)
    np.testing.assert_allclose(m["resampling_importance_accuracy"], [3 / 4 - 2 / 3, 0.0, 1 / 4])
    ans = [["4", "5", "4"], ["4", "5", "4", "4"], ["4", "4", "4", "3"], ["4"] * 4]
    np.testing.assert_allclose(m["resampling_importance_kl"], [_kl_oracle(ans[i], ans[i + 1]) for i in range(3)], rtol=1e-9)
    np.testing.assert_allclose(m["different_trajectories_fraction"], [1 / 3, 1 / 4, 1 / 4])
    np.testing.assert_allclose(m["overdeterminedness"], [1 - 2 / 3, 1 - 2 / 4, 1 - 2 / 4])
    np.testing.assert_allclose(m["counterfactual_importance_accuracy"], [0 - 3 / 4, 0 - 3 / 4, 0 - 1.0])
    cf_kl0 = _kl_oracle(["5"], ans[1] + ["4", "4"])
    assert m["counterfactual_importance_kl"][0] == pytest.approx(cf_kl0, rel=1e-9)
    np.testing.assert_allclose(m["forced_importance_accuracy"], [1.0 - 0.5, 0.5 - 1.0, 1.0 - 0.5])
    np.testing.assert_allclose(m["n_answered"], [3, 4, 4])
    assert res.provenance.extra["n_no_answer"] == 1
    # matrix: is sentence j among a rollout's sentences (one-hot embedder: exact string match)
    groups = run.by_prefix("resample")

    def rate(p, j):
        return np.mean([run.chain.sentences[j] in split_sentences(r["continuation"]) for r in groups[p]])

    expected = np.zeros((3, 3))
    for i in range(3):
        for j in range(i + 1, 3):
            expected[i, j] = rate(i + 1, j) - rate(i, j)
    np.testing.assert_allclose(res.importance_matrix, expected)
    assert expected[0, 1] == pytest.approx(3 / 4 - 1 / 4) and expected[1, 2] == pytest.approx(3 / 4 - 1 / 4)


def test_interrupted_run_resumes_without_losing_or_repeating_work(tmp_path):
    chain = Chain.from_text("Q: what is 2+2? <think>\n", f"{S0} {S1} {S2}")
    config = SamplingConfig(n=4, n_forced=2, batch_size=2)
    out = tmp_path / "run"
    with pytest.raises(KeyboardInterrupt):
        run_rollouts(ScriptedBackend(chain, SCRIPT, FORCED, fail_after=3), chain, out, config=config, gt_answer="4", progress=False)
    partial = RolloutRun.load(out)
    assert len(partial.records) == 3 * 2 and not partial.is_complete()
    # a write cut mid-line is dropped and redone
    with open(out / "rollouts.jsonl", "a") as f:
        f.write('{"kind": "resample", "prefix": 1, "rol')
    backend = ScriptedBackend(chain, SCRIPT, FORCED)
    run = run_rollouts(backend, chain, out, config=config, gt_answer="4", progress=False)
    assert len(backend.calls) == 4 * 2 + 4 - 3  # only the missing batches
    assert len(run.records) == 24 and run.is_complete()
    keys = [(r["kind"], r["prefix"], r["rollout"]) for r in run.records]
    assert len(keys) == len(set(keys))
    # the analysis of a partial run shows NaN for prefixes not yet sampled
    res = analyze(partial, one_hot_embedder(), progress=False, matrix=False)
    assert np.isnan(res.metrics["accuracy"][2]) and not np.isnan(res.metrics["accuracy"][0])


def test_resume_refuses_different_settings(scripted_run):
    run, backend = scripted_run
    with pytest.raises(InterpError, match="different config"):
        run_rollouts(backend, run.chain, run.directory, config=SamplingConfig(n=5, batch_size=2), gt_answer="4", progress=False)


def test_resilience_counts_reappearances():
    target = "We must send the email."
    echo1, echo2 = "Then we must send the email.", "So the email must go out."
    replies = [
        [f" {target} Fine, that is settled.", f" Maybe wait a bit. {echo1} Done with that now."],  # 1st keeps the idea
        [f" Or not, who knows. {echo2}"],
        [" All good here. Nothing else to do."],
    ]

    class Backend:
        calls = []

        def generate(self, context, n, **kw):
            self.calls.append(context)
            return replies[len(self.calls) - 1]

    backend = Backend()
    embed = one_hot_embedder([[target, echo1, echo2]])
    out = resilience(backend, "Context.", target, embed, max_iterations=10, n_candidates=2)
    assert out.count == 2 and out.abandoned
    assert [s["reappeared"] for s in out.steps] == [True, True, False]
    assert backend.calls[1] == "Context. Maybe wait a bit."
    assert backend.calls[2] == "Context. Maybe wait a bit. Or not, who knows."


# --------------------------------------------------------------------------- local model backend


@pytest.fixture(scope="module")
def tiny_llama(tmp_path_factory):
    from interp.model import load_model
    from interp.testing import build_tiny_model

    path = build_tiny_model("llama", tmp_path_factory.mktemp("resampling") / "llama")
    return load_model(path, device="cpu"), path


def test_shared_prefix_cache_samples_like_plain_batched_generate(tiny_llama):
    import torch

    model, _ = tiny_llama
    backend = LocalBackend(model)
    context = "the quick brown fox jumps over the lazy dog . a cat"
    ours = backend.generate(context, 5, temperature=0.8, top_p=0.95, max_new_tokens=12, seed=7)
    hf, tok = model.original_model, model.tokenizer
    ids = torch.tensor([backend.encode(context)])
    with torch.inference_mode(), torch.random.fork_rng():
        torch.manual_seed(7)
        out = hf.generate(ids.expand(5, -1), attention_mask=torch.ones(5, ids.shape[1], dtype=torch.long), do_sample=True,
                          temperature=0.8, top_p=0.95, max_new_tokens=12, pad_token_id=tok.pad_token_id)
    assert ours == tok.batch_decode(out[:, ids.shape[1]:], skip_special_tokens=True)
    assert backend.generate(context, 5, temperature=0.8, top_p=0.95, max_new_tokens=12, seed=7) == ours  # seeded
    assert len(set(ours)) > 1  # samples differ


def test_local_run_is_reproducible_and_counts_missing_answers(tiny_llama, tmp_path):
    model, _ = tiny_llama
    chain = Chain.from_text("how do i bake bread ? ", "mix flour , water and salt . then wait a while . the answer is 42 .")
    config = SamplingConfig(n=3, batch_size=3, max_new_tokens=6, forced=False)
    a = run_rollouts(LocalBackend(model), chain, tmp_path / "a", config=config, gt_answer="42", progress=False)
    b = run_rollouts(LocalBackend(model), chain, tmp_path / "b", config=config, gt_answer="42", progress=False)
    assert [r["continuation"] for r in a.records] == [r["continuation"] for r in b.records]
    assert len(a.records) == 3 * (len(chain.sentences) + 1)
    assert a.manifest["backend"]["weights_hash"]
    res = analyze(a, one_hot_embedder(), progress=False, matrix=False)  # random model: no answers
    assert res.metrics["n_answered"].sum() == sum(r["answer"] is not None for r in a.records if r["prefix"] < 3)


def test_prefix_longer_than_the_context_fails_before_sampling(tiny_llama, tmp_path):
    model, _ = tiny_llama
    long_chain = " ".join(f"sentence number {i} is here ." for i in range(60))
    chain = Chain.from_text("q ? ", long_chain)
    with pytest.raises(InterpError, match="context window of 128"):
        run_rollouts(LocalBackend(model), chain, tmp_path / "long", config=SamplingConfig(n=2, max_new_tokens=4), progress=False)
    assert not (tmp_path / "long" / "rollouts.jsonl").exists()


def test_vllm_backend_explains_how_to_install():
    try:
        import vllm  # noqa: F401
    except ImportError:
        from interp.resampling import VLLMBackend

        with pytest.raises(InterpError, match=r"pip install 'interp\[vllm\]'"):
            VLLMBackend("some/model")
    else:
        pytest.skip("vllm is installed here; the missing-package message cannot be exercised")


# --------------------------------------------------------------------------- result object


def _result(n=4):
    metrics = {"accuracy": np.linspace(0.2, 0.8, n), "counterfactual_importance_accuracy": np.array([0.1, -0.3, np.nan, 0.0])[:n]}
    mat = np.triu(np.full((n, n), 0.25), 1)
    sentences = tuple(f"Sentence number {i} says something." for i in range(n))
    return ResamplingResult(sentences, metrics, mat, {"model": "tiny"})


def test_result_validates_shapes():
    with pytest.raises(InterpError, match=r"metric 'accuracy' has shape \(3,\), expected \(4,\)"):
        ResamplingResult(("a", "b", "c", "d"), {"accuracy": np.zeros(3)}, np.zeros((4, 4)))
    with pytest.raises(InterpError, match="importance_matrix has shape"):
        ResamplingResult(("a", "b"), {}, np.zeros((3, 3)))


def test_figures_carry_data_labels_and_sentence_hover():
    res = _result()
    fig = res.figure("counterfactual_importance_accuracy")
    bar = fig.data[0]
    assert list(bar.x) == [0, 1, 2, 3]
    np.testing.assert_allclose(np.array(bar.y, dtype=float)[[0, 1, 3]], [0.1, -0.3, 0.0])
    assert "Sentence number 1 says something." in bar.hovertext[1]
    assert fig.layout.xaxis.title.text == "sentence index in the chain of thought"
    assert "counterfactual importance" in fig.layout.yaxis.title.text
    graph = res.graph_figure(top_k=3)
    nodes = graph.data[-1]
    assert len(graph.data) == 3 + 1 and list(nodes.x) == [0, 1, 2, 3]
    assert "Sentence number 2" in nodes.hovertext[2]
    with pytest.raises(InterpError, match="unknown metric"):
        res.figure("nope")


def test_save_and_load_round_trip(tmp_path):
    res = _result()
    res.save(tmp_path / "out")
    assert sorted(p.name for p in (tmp_path / "out").iterdir()) == ["graph.html", "importance.html", "metrics.csv", "result.json"]
    back = ResamplingResult.load(tmp_path / "out")
    assert back.sentences == res.sentences and back.provenance == res.provenance and back.provenance.model_id == "tiny"
    for k in res.metrics:
        np.testing.assert_array_equal(back.metrics[k], res.metrics[k])  # NaN survives
    np.testing.assert_array_equal(back.importance_matrix, res.importance_matrix)
    with pytest.raises(InterpError, match="no result.json"):
        ResamplingResult.load(tmp_path)


# --------------------------------------------------------------------------- CLI


def _cli_main(argv):
    """``interp`` with only the resample subcommand, handled as interp.cli.main handles errors."""
    import argparse

    from interp.commands.resample import register as add_cli

    parser = argparse.ArgumentParser(prog="interp")
    add_cli(parser.add_subparsers(dest="command"))
    try:
        args = parser.parse_args(argv)
        return int(args.handler(args))
    except InterpError as error:
        print(f"interp: error: {error}", file=__import__("sys").stderr)
        return 2
    except SystemExit as exit_:
        return int(exit_.code or 0)


def test_cli_help_and_end_to_end(tiny_llama, tmp_path, capsys, monkeypatch):
    main = _cli_main
    assert main(["resample", "--help"]) == 0
    out = capsys.readouterr().out
    assert "interp resample --model" in out and "analyze" in out
    _, path = tiny_llama
    problem = tmp_path / "problem.json"
    problem.write_text(json.dumps({"prompt": "how do i bake bread ? ", "solution": "mix flour , water and salt . then wait a while .", "gt_answer": "42", "answer_regex": r"answer is (\d+)"}))
    run_dir = tmp_path / "run"
    code = main(["resample", "--model", str(path), "--device", "cpu", "--problem", str(problem), "--n", "2", "--max-new-tokens", "4", "--forced-max-new-tokens", "2", "--out", str(run_dir)])
    assert code == 0 and (run_dir / "run.json").exists()
    assert len(RolloutRun.load(run_dir).records) == 2 * 3 * 2
    import interp.resampling.result as result_module

    monkeypatch.setattr(result_module, "load_embedder", lambda name=None, device="cpu": one_hot_embedder())
    assert main(["resample", "analyze", str(run_dir)]) == 0
    loaded = ResamplingResult.load(run_dir / "analysis")
    assert loaded.sentences == ("mix flour , water and salt .", "then wait a while .")
    assert main(["resample", "analyze", str(tmp_path / "nothing")]) == 2
    assert "holds no rollout run" in capsys.readouterr().err
    assert main(["resample", "--problem", str(tmp_path / "missing.json"), "--out", str(run_dir)]) == 2
    assert "does not exist" in capsys.readouterr().err


# --------------------------------------------------------------------------- bundled organism

ORGANISM = Path(__file__).resolve().parents[2] / "assets" / "organisms" / "default"


@pytest.mark.slow
@pytest.mark.skipif(not (ORGANISM / "config.json").exists(), reason=f"the bundled organism is not built yet ({ORGANISM})")
def test_organism_compute_sentences_matter_more_than_filler(tmp_path):
    """On the organism's arithmetic chains, keeping a sentence that computes a value changes
    accuracy more than keeping a filler sentence, and a filler after the last computing step
    changes nothing (the answer is already written down: its importance must be 0).

    This is the small, noisy setting (8 problems, 64 rollouts per prefix): mean |resampling
    importance| 0.167 compute vs 0.090 filler (1.9x), with sampling noise of about 0.05 per
    estimate. ``circuits/cot_anchors/cot_anchors.py`` (48 problems, 256 rollouts) measures 0.215 vs 0.068:
    3.15x (bootstrap 2.4-4.2x); findings in circuits/cot_anchors/README.md.
    """
    from interp.model import load_model
    from interp.organisms.datasets import arithmetic_problems

    backend = LocalBackend(load_model("organism", device="cpu"))
    config = SamplingConfig(n=64, batch_size=64, max_new_tokens=120, temperature=0.6, forced=False, seed=0)
    importance = {"compute": [], "filler": [], "trailing filler": []}
    problems = [p for p in arithmetic_problems("eval", n=40, seed=0) if "filler" in p["sentence_roles"]][:8]
    for k, problem in enumerate(problems):
        chain = Chain.from_text(problem["text"] + " ", problem["cot"])
        assert list(chain.sentences) == problem["sentences"]
        run = run_rollouts(backend, chain, tmp_path / f"p{k}", config=config, gt_answer=str(problem["answer"]),
                           answer=r"the answer is (\d+)", progress=False)
        acc = np.array([accuracy([r["is_correct"] for r in g]) for g in run.by_prefix("resample")])
        ri = resampling_importance_accuracy(acc)[: len(chain.sentences)]
        roles = problem["sentence_roles"]
        last_compute = max(i for i, role in enumerate(roles) if role == "compute")
        for i, (role, value) in enumerate(zip(roles, ri)):
            if role in importance:
                importance[role].append(abs(value))
            if role == "filler" and i > last_compute:
                importance["trailing filler"].append(abs(value))
    compute, filler = np.mean(importance["compute"]), np.mean(importance["filler"])
    print(f"organism: mean |RI| compute {compute:.3f} (n={len(importance['compute'])}), filler {filler:.3f} (n={len(importance['filler'])})")
    assert compute >= 1.5 * filler, (compute, filler)
    assert importance["trailing filler"], "the sample should contain fillers after the last computing step"
    assert max(importance["trailing filler"]) <= 0.02, importance["trailing filler"]


@pytest.mark.skipif(not (ORGANISM / "config.json").exists(), reason=f"the bundled organism is not built yet ({ORGANISM})")
def test_word_level_continuations_keep_their_joining_space():
    """Decoded alone, a word-level tokenizer's first new token loses its space ("is" + "19" -> "is19")
    and forced answers go unfound; continuations are decoded after the context's last token."""
    from interp.model import load_model

    backend = LocalBackend(load_model("organism", device="cpu"))
    context = "<user> ben has 3 cards . how many cards does ben have now ? <assistant> <think> ben starts with 3 cards . </think> the answer is"
    texts = backend.generate(context, 4, temperature=0.6, top_p=0.95, max_new_tokens=3, seed=0)
    assert all(text.startswith(" ") for text in texts), texts
    extractor = make_extractor(r"the answer is (\d+)")
    assert all(extractor("the answer is" + text) is not None for text in texts), texts


# --------------------------------------------------------------------------- docs and shapes


def test_docstring_examples_run():
    import doctest

    import interp.resampling as package
    from interp.resampling import engine, metrics, result, text

    for module in (package, text, metrics, engine, result):
        failures, _ = doctest.testmod(module, optionflags=doctest.ELLIPSIS)
        assert failures == 0, module.__name__


def test_shapes_are_checked_at_runtime_with_jaxtyping():
    from beartype import beartype
    from jaxtyping import TypeCheckError, jaxtyped

    from interp.resampling import cosine_similarity

    matrix = jaxtyped(typechecker=beartype)(sentence_importance_matrix)
    e = np.eye(3)
    assert matrix(e, [[e[[0]]], [e[[1]]]]).shape == (3, 3)
    with pytest.raises(TypeCheckError):
        matrix(np.ones(3), [[e[[0]]]])  # sentence embeddings must be [sentence, dim]
    cosine = jaxtyped(typechecker=beartype)(cosine_similarity)
    assert cosine(np.ones((2, 3)), np.ones((5, 3))).shape == (2, 5)
    with pytest.raises(TypeCheckError):
        cosine(np.ones((2, 3)), np.ones((5, 4)))  # "dim" must agree
    importance = jaxtyped(typechecker=beartype)(resampling_importance_accuracy)
    with pytest.raises(TypeCheckError):
        importance(np.ones((2, 2)))


def test_published_data_loads_as_a_result():
    d = BLACKMAIL / "qwq-32b/yes_base_solution/scenario_0"
    res = ResamplingResult.from_thought_anchors(d)
    assert len(res.sentences) == 146
    assert res.importance_matrix[144, 145] == pytest.approx(0.8)  # the published top step
    fig = res.figure("counterfactual_importance_kl")
    assert fig.data[0].y[0] == pytest.approx(0.06551565939720816)


@pytest.mark.skipif(not (ORGANISM / "config.json").exists(), reason=f"the bundled organism is not built yet ({ORGANISM})")
def test_cot_anchors_experiment_runs_and_resumes(tmp_path):
    """circuits/cot_anchors/cot_anchors.py at a tiny size: every sentence gets a role and an importance, and a
    second run reuses the rollouts on disk (same numbers)."""
    import subprocess
    import sys

    script = Path(__file__).resolve().parents[2] / "circuits" / "cot_anchors" / "cot_anchors.py"
    command = [sys.executable, str(script), "--out", str(tmp_path), "--problems", "2", "--n", "8", "--threads", "1"]
    first = subprocess.run(command, capture_output=True, text=True, timeout=300)
    assert first.returncode == 0, first.stderr
    results = json.loads((tmp_path / "results.json").read_text())
    problems, summary = results["problems"], results["summary"]
    assert len(problems) == 2
    for problem in problems:
        assert len(problem["roles"]) == len(problem["sentences"]) == len(problem["importance"]["all"])
    counted = sum(role == "compute" for p in problems for role in p["roles"])
    assert summary["compute"]["count"] == counted
    assert summary["filler"]["count"] == summary["filler_inside"]["count"] + summary["filler_trailing"]["count"]
    assert "compute / filler" in first.stdout
    second = subprocess.run(command, capture_output=True, text=True, timeout=300)
    assert second.returncode == 0, second.stderr
    assert json.loads((tmp_path / "results.json").read_text())["summary"] == summary
