"""Tiny random models of real architectures with a local tokenizer, built in-process (no hub).

Used by the test suite, the benchmarks and anyone who wants to try interp without weights.

>>> path = build_tiny_model("llama", "/tmp/tiny-llama")     # doctest: +SKIP
>>> model = interp.load_model(path)                           # doctest: +SKIP
"""

from pathlib import Path

import torch

ARCHITECTURES = ("gpt2", "llama", "qwen2", "gemma", "gemma2")

_CORPUS = (
    "the quick brown fox jumps over the lazy dog . a cat sat on the mat and looked at the bird . "
    "how do i bake bread ? mix flour , water and salt , then wait . the answer is 42 . "
    "when mary and john went to the store , john gave a drink to mary . 1 2 3 4 5 6 7 8 9 0"
)


def build_tokenizer(vocab_size: int = 320):
    """A byte-level BPE tokenizer trained on a small built-in corpus, with <bos>/<eos>/<pad>."""
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers
    from transformers import PreTrainedTokenizerFast

    tokenizer = Tokenizer(models.BPE(unk_token=None))
    tokenizer.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tokenizer.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(
        vocab_size=vocab_size,
        special_tokens=["<pad>", "<bos>", "<eos>"],
        initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),
        show_progress=False,
    )
    tokenizer.train_from_iterator([_CORPUS] * 4, trainer)
    return PreTrainedTokenizerFast(tokenizer_object=tokenizer, bos_token="<bos>", eos_token="<eos>", pad_token="<pad>")


def tiny_config(
    architecture: str,
    vocab_size: int,
    n_layers: int = 2,
    d_model: int = 32,
    n_heads: int = 4,
    n_kv_heads: int | None = 2,
    d_mlp: int | None = None,
    n_ctx: int = 128,
):
    """A transformers config of ``architecture`` at toy size (grouped-query attention where the architecture has it)."""
    import transformers

    d_mlp = d_mlp or 4 * d_model
    if architecture == "gpt2":
        return transformers.GPT2Config(
            vocab_size=vocab_size,
            n_layer=n_layers,
            n_embd=d_model,
            n_head=n_heads,
            n_inner=d_mlp,
            n_positions=n_ctx,
            pad_token_id=0,
            bos_token_id=1,
            eos_token_id=2,
        )
    common = dict(
        vocab_size=vocab_size,
        hidden_size=d_model,
        intermediate_size=d_mlp,
        num_hidden_layers=n_layers,
        num_attention_heads=n_heads,
        num_key_value_heads=n_kv_heads or n_heads,
        max_position_embeddings=n_ctx,
        pad_token_id=0,
        bos_token_id=1,
        eos_token_id=2,
    )
    classes = {
        "llama": transformers.LlamaConfig,
        "qwen2": transformers.Qwen2Config,
        "gemma": transformers.GemmaConfig,
        "gemma2": transformers.Gemma2Config,
    }
    if architecture not in classes:
        raise ValueError(f"unknown architecture {architecture!r}; choose from {', '.join(ARCHITECTURES)}")
    if architecture.startswith("gemma"):
        common["head_dim"] = d_model // n_heads
    if architecture == "qwen2":
        # a separate lm_head, as the real Qwen2.5-Coder-0.5B-Instruct loads (not left to the config's default)
        common["tie_word_embeddings"] = False
    return classes[architecture](**common)


def build_tiny_model(
    architecture: str, path: str | Path, seed: int = 0, vocab_size: int | None = None, **config_kwargs
) -> Path:
    """Save a randomly initialised ``architecture`` model and a local tokenizer to ``path``; return it.

    ``vocab_size`` larger than the tokenizer's (e.g. 50257 for a GPT-2-small-shaped benchmark
    model) gives a realistically sized unembedding; the extra ids are never produced by the tokenizer.
    Biases are random, not zero (``random_biases``), so an analysis that ignores them shows it.
    """
    import transformers

    path = Path(path)
    tokenizer = build_tokenizer()
    config = tiny_config(architecture, vocab_size=max(vocab_size or 0, len(tokenizer)), **config_kwargs)
    torch.manual_seed(seed)
    model = transformers.AutoModelForCausalLM.from_config(config)
    random_biases(model, seed)
    model.eval()
    model.save_pretrained(str(path))
    tokenizer.save_pretrained(str(path))
    return path


def random_biases(model: torch.nn.Module, seed: int = 0) -> None:
    """Fill every bias that is exactly zero (transformers initialises them so) with seeded normal noise, in place.

    The noise has the config's ``initializer_range`` as its standard deviation (the weights' own, 0.02),
    drawn from a generator of its own so the weights are the same as without it. Qwen2's q/k/v
    biases and GPT-2's projection and LayerNorm biases then take part in every test.
    """
    std = float(getattr(model.config, "initializer_range", 0.02))
    generator = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for name, parameter in model.named_parameters():
            if name.endswith("bias") and not parameter.any():
                parameter.copy_(torch.randn(parameter.shape, generator=generator, dtype=torch.float32) * std)
