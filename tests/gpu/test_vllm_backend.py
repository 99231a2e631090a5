"""The real vLLM backend on the real model (SmolLM2-135M-Instruct): seeded samples, the token
count of the model's tokenizer, a resumable rollout run, and agreement with the local backend's
answers on a prompt the model answers greedily-alike."""

import pytest

from interp.resampling import Chain, LocalBackend, RolloutRun, SamplingConfig, VLLMBackend, run_rollouts

MODEL = "smollm2-135m-instruct"
LLM_KWARGS = {"gpu_memory_utilization": 0.3, "max_model_len": 2048, "dtype": "float32"}  # leave room for the other GPU tests' models


@pytest.fixture(scope="module")
def backend():
    pytest.importorskip("vllm", reason="vllm is not installed (pip install 'interp[vllm]')")
    return VLLMBackend(MODEL, tensor_parallel_size=1, seed=0, **LLM_KWARGS)


def test_vllm_loads_the_registered_model_and_describes_it(backend, real_model_cpu):
    described = backend.describe()
    assert described["backend"] == "vllm" and described["model"].startswith(MODEL)
    assert len(described["weights_hash"]) == 32 and described["max_context"] == LLM_KWARGS["max_model_len"]
    text = "Solve step by step: what is 17 + 25?"
    assert backend.count_tokens(text) == len(real_model_cpu.tokenizer(text)["input_ids"])


def test_vllm_samples_are_seeded_and_n_per_request(backend):
    settings = dict(temperature=0.6, top_p=0.95, max_new_tokens=24, seed=7)
    first = backend.generate("The capital of France is", 4, **settings)
    assert len(first) == 4 and all(isinstance(text, str) for text in first)
    assert backend.generate("The capital of France is", 4, **settings) == first, "the same seed must draw the same samples"
    assert len(set(first)) > 1, "four samples at T=0.6 should not all be equal"


def test_vllm_rollout_run_is_complete_and_resumes_without_new_samples(backend, tmp_path):
    chain = Chain.from_text("Question: what is 3 + 4? Think, then answer in \\boxed{}. <think>\n", "First take 3. Then add 4. That gives 7.</think> \\boxed{7}")
    config = SamplingConfig(n=4, batch_size=4, max_new_tokens=32, forced=True, n_forced=2, forced_max_new_tokens=4, seed=3)
    run = run_rollouts(backend, chain, tmp_path / "run", config=config, gt_answer="7", progress=False)
    assert run.is_complete() and len(run.records) == (4 + 2) * (chain.n_sentences + 1)
    assert run.manifest["backend"]["backend"] == "vllm"
    again = run_rollouts(backend, chain, tmp_path / "run", config=config, gt_answer="7", progress=False)
    assert RolloutRun.load(tmp_path / "run").records == run.records == again.records


def test_vllm_and_local_backend_agree_on_a_near_greedy_answer(backend, real_model_cuda):
    """At a very low temperature both backends give the greedy continuation (same weights, float32)."""
    local = LocalBackend(real_model_cuda)
    settings = dict(temperature=1e-4, top_p=1.0, max_new_tokens=6, seed=0)
    context = "The capital of France is"
    assert backend.generate(context, 1, **settings)[0].strip()[:5] == local.generate(context, 1, **settings)[0].strip()[:5]
