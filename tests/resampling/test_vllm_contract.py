"""The vLLM backend's every call, fixed against a fake ``vllm`` module: what it loads, the exact sampling
parameters and seeds, the prompts it sends, how outputs are parsed, and what the run records.

No GPU is needed; the real backend runs in ``tests/gpu/`` where one is present.
"""

import sys
import types

import pytest

from interp.errors import InterpError

FAKE_VERSION = "0.0.fake"
ANSWERS = (" so the answer is 7 .", " the answer is 9 .", " hmm")


class FakeVLLM:
    """Records every call; ``generate`` answers each request of n samples with ANSWERS in turn."""

    def __init__(self):
        self.llm_calls: list[dict] = []
        self.generate_calls: list[tuple[list[str], dict, bool]] = []
        self.module = types.ModuleType("vllm")
        self.module.__version__ = FAKE_VERSION
        self.module.LLM = self._llm_class()
        self.module.SamplingParams = _SamplingParams

    def _llm_class(self):
        fake = self

        class LLM:
            def __init__(self, model, **kwargs):
                from transformers import AutoTokenizer

                fake.llm_calls.append({"model": model, **kwargs})
                self._tokenizer = AutoTokenizer.from_pretrained(model)
                self.llm_engine = types.SimpleNamespace(model_config=types.SimpleNamespace(max_model_len=256))

            def get_tokenizer(self):
                return self._tokenizer

            def generate(self, prompts, params, use_tqdm=True):
                fake.generate_calls.append((list(prompts), dict(params.kwargs), use_tqdm))
                outputs = [types.SimpleNamespace(text=ANSWERS[i % len(ANSWERS)]) for i in range(params.kwargs["n"])]
                return [types.SimpleNamespace(outputs=outputs) for _ in prompts]

        return LLM


class _SamplingParams:
    def __init__(self, **kwargs):
        self.kwargs = kwargs


@pytest.fixture
def fake_vllm(monkeypatch):
    fake = FakeVLLM()
    monkeypatch.setitem(sys.modules, "vllm", fake.module)
    return fake


def test_named_models_resolve_to_their_directory_with_the_weights_hash(fake_vllm):
    from interp.model import resolve_model
    from interp.provenance import directory_weights_hash
    from interp.resampling import VLLMBackend

    backend = VLLMBackend("organism", tensor_parallel_size=2, seed=5, dtype="bfloat16")
    directory = resolve_model("organism")[0]
    assert fake_vllm.llm_calls == [{"model": str(__import__("pathlib").Path(directory).resolve()), "tensor_parallel_size": 2, "seed": 5,
                                    "dtype": "bfloat16", "enable_prefix_caching": True}], "not the string 'organism' as a hub id"  # fmt: skip
    described = backend.describe()
    assert described["model"] == "organism:default" and described["vllm_version"] == FAKE_VERSION
    assert described["weights_hash"] == directory_weights_hash(directory) and len(described["weights_hash"]) == 32
    assert described["max_context"] == 256


def test_rollouts_send_the_prefixes_with_exact_parameters_and_parse_the_outputs(fake_vllm, tmp_path):
    from interp.resampling import Chain, SamplingConfig, VLLMBackend, run_rollouts
    from interp.resampling.engine import _derive_seed

    chain = Chain.from_text("Q: 3 + 4? ", "First 3. Then add 4. So 7.")
    config = SamplingConfig(n=4, batch_size=3, temperature=0.6, top_p=0.95, max_new_tokens=40, forced=True, n_forced=2,
                            forced_max_new_tokens=8, seed=11)  # fmt: skip
    run = run_rollouts(VLLMBackend("organism"), chain, tmp_path / "run", config=config, gt_answer="7", answer=r"the answer is (\d+)", progress=False)

    expected = []
    for kind, total, max_tokens in (("resample", 4, 40), ("forced", 2, 8)):
        for prefix in range(chain.n_sentences + 1):
            for batch, low in enumerate(range(0, total, config.batch_size)):
                context = chain.contexts[prefix] + (config.forced_suffix if kind == "forced" else "")
                n = min(config.batch_size, total - low)
                expected.append(([context], {"n": n, "temperature": 0.6, "top_p": 0.95, "max_tokens": max_tokens,
                                             "seed": _derive_seed(11, kind, prefix, batch)}, False))  # fmt: skip
    assert fake_vllm.generate_calls == expected, "one request per (kind, prefix, batch), n samples sharing the prefix"

    resampled = [r for r in run.records if r["kind"] == "resample"]
    assert len(resampled) == 4 * (chain.n_sentences + 1)
    first = sorted((r for r in resampled if r["prefix"] == 0), key=lambda r: r["rollout"])
    assert [r["continuation"] for r in first] == [ANSWERS[0], ANSWERS[1], ANSWERS[2], ANSWERS[0]]
    assert [r["answer"] for r in first] == ["7", "9", None, "7"] and [r["is_correct"] for r in first] == [True, False, None, True], "no answer: not graded"
    assert run.manifest["backend"]["backend"] == "vllm" and run.manifest["backend"]["vllm_version"] == FAKE_VERSION


def test_a_short_reply_from_vllm_is_an_error(fake_vllm):
    from interp.resampling import VLLMBackend

    backend = VLLMBackend("organism")
    backend.llm.generate = lambda prompts, params, use_tqdm=True: [types.SimpleNamespace(outputs=[types.SimpleNamespace(text="x")])]
    with pytest.raises(InterpError, match="vLLM returned 1 samples for a request of n=3"):
        backend.generate("ctx", 3, temperature=0.6, top_p=0.95, max_new_tokens=4, seed=0)


def test_a_directory_without_config_is_refused(fake_vllm, tmp_path):
    from interp.resampling import VLLMBackend

    with pytest.raises(InterpError, match="not a Hugging Face model directory"):
        VLLMBackend(str(tmp_path))


def test_the_cli_hands_vllm_the_directory_of_a_named_model(fake_vllm, tmp_path):
    import json

    from interp.cli import main

    problem = tmp_path / "problem.json"
    problem.write_text(json.dumps({"prompt": "Q: 3 + 4? ", "solution": "First 3. So 7.", "gt_answer": "7"}))
    code = main(["resample", "--backend", "vllm", "--model", "organism", "--problem", str(problem), "--n", "2",
                 "--no-forced", "--out", str(tmp_path / "run")])  # fmt: skip
    assert code == 0
    assert fake_vllm.llm_calls[0]["model"].endswith("default"), fake_vllm.llm_calls[0]["model"]
    manifest = json.loads((tmp_path / "run" / "run.json").read_text())
    assert manifest["backend"]["model"] == "organism:default" and manifest["backend"]["weights_hash"]
