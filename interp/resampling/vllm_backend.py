"""The vLLM backend for rollouts: large models, tensor parallel over GPUs, prefix caching.

Same interface as ``interp.resampling.LocalBackend`` (``generate``, ``count_tokens``,
``max_context``, ``describe``); its every call to vllm is fixed by
``tests/resampling/test_vllm_contract.py`` against a fake module.
"""

from pathlib import Path

from interp import defaults
from interp.errors import InterpError
from interp.resampling.engine import _clamp_new_tokens


class VLLMBackend:
    """Generates with vLLM (large models, tensor parallel over GPUs, prefix caching).

    Needs ``pip install 'interp[vllm]'`` (Linux with CUDA GPUs). The ``n`` samples of one
    context are one request, so vLLM shares the prefix; prefix caching reuses it across
    prefixes of the same chain.

    Args:
        model: a registered name (``"organism"``, ``"smollm2-135m-instruct"``: resolved to its local
            directory, as ``interp.load_model`` does), a local directory, or a Hugging Face hub id.
        tensor_parallel_size: GPUs to shard the model over.
        **llm_kwargs: passed to ``vllm.LLM`` (e.g. ``dtype``, ``max_model_len``).

    ``describe()`` records the model, the directory vLLM loaded, the hash of its stored weights
    (``interp.provenance.directory_weights_hash``; a hub id is hashed from the files vLLM
    downloaded where it can find them) and vLLM's version.
    """

    def __init__(
        self,
        model: str,
        tensor_parallel_size: int = defaults.VLLM_TENSOR_PARALLEL_SIZE,
        seed: int = defaults.RESAMPLE_SEED,
        **llm_kwargs,
    ):
        try:
            import vllm
        except ImportError as e:
            raise InterpError(
                "the vLLM backend needs vllm, which is not installed: pip install 'interp[vllm]' "
                "(Linux with a CUDA GPU), or use the local backend (--backend local)"
            ) from e
        self._vllm = vllm
        self.model_id, self.source = _vllm_source(str(model))
        llm_kwargs.setdefault("enable_prefix_caching", True)
        self.llm = vllm.LLM(model=self.source, tensor_parallel_size=tensor_parallel_size, seed=seed, **llm_kwargs)
        self.tokenizer = self.llm.get_tokenizer()
        self._weights_hash: str | None = None

    @property
    def max_context(self) -> int | None:
        return int(self.llm.llm_engine.model_config.max_model_len)

    @property
    def weights_hash(self) -> str:
        """Hash of the stored weights vLLM loaded ("" for a hub id whose files are not on this machine)."""
        if self._weights_hash is None:
            from interp.provenance import directory_weights_hash

            directory = Path(self.source)
            self._weights_hash = directory_weights_hash(directory) if directory.is_dir() else ""
        return self._weights_hash

    def describe(self) -> dict:
        return {"backend": "vllm", "model": self.model_id, "source": self.source, "weights_hash": self.weights_hash,
                "weights_hash_of": "stored files", "vllm_version": str(getattr(self._vllm, "__version__", "unknown")),
                "max_context": self.max_context}  # fmt: skip

    def count_tokens(self, text: str) -> int:
        return len(self.tokenizer(text)["input_ids"])

    def generate(
        self, context: str, n: int, *, temperature: float, top_p: float, max_new_tokens: int, seed: int
    ) -> list[str]:
        max_new = _clamp_new_tokens(self.count_tokens(context), max_new_tokens, self.max_context)
        params = self._vllm.SamplingParams(n=n, temperature=temperature, top_p=top_p, max_tokens=max_new, seed=seed)
        out = self.llm.generate([context], params, use_tqdm=False)
        texts = [o.text for o in out[0].outputs]
        if len(texts) != n:
            raise InterpError(
                f"vLLM returned {len(texts)} samples for a request of n={n}; check the vllm version "
                f"({getattr(self._vllm, '__version__', '?')})."
            )
        return texts


def _vllm_source(name: str) -> tuple[str, str]:
    """(the model id recorded, what vLLM loads): registered names resolve to their local directory."""
    from interp.model import registered_models, resolve_model

    if name.partition(":")[0] in registered_models():
        source, label = resolve_model(name)
        return label, str(Path(source).resolve())
    path = Path(name).expanduser()
    if path.exists():
        if not (path / "config.json").exists():
            raise InterpError(
                f"{name} is not a Hugging Face model directory (no config.json); "
                "pass the directory holding config.json and the weights."
            )
        return name, str(path.resolve())
    return name, name
