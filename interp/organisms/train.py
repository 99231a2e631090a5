"""Train the organism from scratch: deterministic, CPU, about 15 minutes on 2 cores.

>>> from interp.organisms.train import TrainConfig, train_organism
>>> path = train_organism(TrainConfig.mini(), "out/mini-organism")   # doctest: +SKIP

The model is a small ``LlamaForCausalLM`` (4 layers, d_model 128, tied embeddings); the corpus is
an endless deterministic stream of copying, chat and arithmetic documents packed into rows
(``datasets.TrainingStream``). The output directory is a Hugging Face model directory plus
``training.json`` (config, seed, data hashes, loss curve, wall time, and the measured report).
"""

import hashlib
import itertools
import json
import math
import os
import platform
import shutil
import tempfile
import time
import warnings
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path

import torch
import torch.nn.functional as F

from interp.checks import check_numbers
from interp.errors import InterpError
from interp.io import atomic_write_json
from interp.organisms import datasets, grammar
from interp.organisms.tokenizer import BOS, EOS, PAD, build_tokenizer, token_ids, vocabulary
from interp.progress import tqdm


@dataclass(frozen=True)
class TrainConfig:
    """Everything that determines the trained organism (with the code of the grammar)."""

    seed: int = 0
    steps: int = 2500  # optimizer steps
    batch_size: int = 16  # rows per step
    context: int = 256  # tokens per row
    d_model: int = 128
    n_layers: int = 4
    n_heads: int = 4
    d_mlp: int = 320
    lr: float = 3e-3
    min_lr_ratio: float = 0.1  # cosine decay to lr * min_lr_ratio
    warmup_steps: int = 100
    weight_decay: float = 0.05  # on weight matrices only
    beta1: float = 0.9
    beta2: float = 0.98
    grad_clip: float = 1.0
    bf16: bool = True  # bf16 autocast: 2-3x faster on CPU
    mix: dict = field(default_factory=lambda: {"copying": 0.25, "chat": 0.3, "arithmetic": 0.45})
    # A copying-heavy start: induction heads (which chat and arithmetic also use to copy from the
    # prompt) form sooner when repeated sequences dominate the first steps.
    curriculum_mix: dict = field(default_factory=lambda: {"copying": 0.7, "chat": 0.15, "arithmetic": 0.15})
    curriculum_steps: int = 800
    harmful_share: float = 0.5  # of chat documents
    trigger_share: float = 0.5  # of harmful chat documents
    benign_trigger_share: float = 0.2  # of benign chat documents
    noise: float = 0.25  # off-by-one chance per computing sentence
    max_minutes: float = 14.5  # stop early (with a warning) after this much training time
    threads: int = 2
    log_every: int = 100

    @classmethod
    def mini(cls, **overrides) -> "TrainConfig":
        """A miniature configuration that trains end to end in seconds (for tests)."""
        small = dict(
            steps=40,
            curriculum_steps=10,
            batch_size=8,
            context=128,
            d_model=32,
            n_layers=2,
            n_heads=2,
            d_mlp=64,
            warmup_steps=5,
            log_every=10,
            max_minutes=2.0,
            threads=1,
        )
        return replace(cls(), **{**small, **overrides})


def build_model(config: TrainConfig):
    """A freshly initialised ``LlamaForCausalLM`` for ``config`` (seeded by the caller)."""
    from transformers import LlamaConfig, LlamaForCausalLM

    ids = token_ids()
    # rope_theta and attn_implementation reach LlamaConfig through **kwargs, which its typed signature leaves out
    model_config = LlamaConfig(  # type: ignore[call-arg]
        vocab_size=len(vocabulary()),
        hidden_size=config.d_model,
        intermediate_size=config.d_mlp,
        num_hidden_layers=config.n_layers,
        num_attention_heads=config.n_heads,
        num_key_value_heads=config.n_heads,
        max_position_embeddings=max(config.context, 256),
        rms_norm_eps=1e-5,
        rope_theta=10000.0,
        tie_word_embeddings=True,
        initializer_range=0.02,
        bos_token_id=ids[BOS],
        eos_token_id=ids[EOS],
        pad_token_id=ids[PAD],
        attn_implementation="sdpa",
    )
    return LlamaForCausalLM(model_config)


def _learning_rate(config: TrainConfig, step: int) -> float:
    if step < config.warmup_steps:
        return config.lr * (step + 1) / config.warmup_steps
    progress = (step - config.warmup_steps) / max(1, config.steps - config.warmup_steps)
    cosine = 0.5 * (1 + math.cos(math.pi * min(1.0, progress)))
    return config.lr * (config.min_lr_ratio + (1 - config.min_lr_ratio) * cosine)


def _stream_rows(config: TrainConfig, mix: dict, seed: int):
    stream = datasets.TrainingStream(
        seed,
        mix,
        harmful_share=config.harmful_share,
        trigger_share=config.trigger_share,
        benign_trigger_share=config.benign_trigger_share,
        noise=config.noise,
        max_copy_length=min(64, (config.context - 2) // 3),
    )
    return stream.rows(config.context)


def _batches(config: TrainConfig):
    """Batches of packed rows: ``curriculum_steps`` from the copying-heavy mix, then the main mix."""
    curriculum = _stream_rows(config, config.curriculum_mix, config.seed + 1_000_003)
    rows = _stream_rows(config, config.mix, config.seed)
    for step in itertools.count():
        source = curriculum if step < config.curriculum_steps else rows
        yield torch.tensor([next(source) for _ in range(config.batch_size)], dtype=torch.long)


def data_fingerprint(config: TrainConfig, n_batches: int = 8) -> str:
    """Hash of the first ``n_batches`` training batches: equal for equal seeds and data settings."""
    batches = _batches(config)
    return datasets.fingerprint([row for _ in range(n_batches) for row in next(batches).tolist()])


def grammar_fingerprint() -> str:
    """Hash of the vocabulary and every grammar table: changes whenever the corpus would."""

    def canonical(value):  # sets sorted: their repr order changes with the interpreter's hash seed
        if isinstance(value, (set, frozenset)):
            return sorted(map(canonical, value), key=repr)
        if isinstance(value, dict):
            return sorted((key, canonical(item)) for key, item in value.items())
        if isinstance(value, (list, tuple)):
            return [canonical(item) for item in value]
        return value

    tables = {name: canonical(getattr(grammar, name)) for name in dir(grammar) if name.isupper()}
    text = json.dumps({"vocab": vocabulary(), "tables": repr(sorted(tables.items()))})
    return hashlib.sha256(text.encode()).hexdigest()[:16]


def train_organism(
    config: TrainConfig, out: str | os.PathLike, report_n: int = 200, progress: bool = True, force: bool = False
) -> Path:
    """Train the organism, save it to ``out`` (HF layout + training.json) and return the directory.

    Args:
        config: hyper-parameters and seed.
        out: output directory (created; files in it are replaced atomically).
        report_n: examples per metric for the report stored in training.json (0: no report).
        progress: show a tqdm progress bar.
        force: replace the model in an ``out`` that is not empty (refused otherwise, before training).
    """
    check_numbers(
        {
            "steps": config.steps,
            "batch_size": config.batch_size,
            "threads": config.threads,
            "minutes": config.max_minutes,
            "lr": config.lr,
        }
    )
    if config.d_model % config.n_heads:
        raise InterpError(f"d_model ({config.d_model}) must be divisible by n_heads ({config.n_heads}).")
    out = Path(out)
    if out.exists() and not out.is_dir():
        raise InterpError(f"{out} is a file; --out must be a directory to create.")
    held = sorted(path.name for path in out.iterdir()) if out.is_dir() else []
    if held and not force:
        shown = ", ".join(held[:4]) + (", ..." if len(held) > 4 else "")
        raise InterpError(
            f"{out} is not empty (it holds {shown}); training would overwrite the model there. Choose a new --out, "
            "or pass --force (force=True) to replace it."
        )
    torch.set_num_threads(config.threads)
    torch.manual_seed(config.seed)
    model = build_model(config)
    model.train()
    decay = [p for p in model.parameters() if p.ndim >= 2]
    no_decay = [p for p in model.parameters() if p.ndim < 2]
    optimizer = torch.optim.AdamW(
        [{"params": decay, "weight_decay": config.weight_decay}, {"params": no_decay, "weight_decay": 0.0}],
        lr=config.lr,
        betas=(config.beta1, config.beta2),
        fused=False,
    )
    pad = token_ids()[PAD]
    data_hash = data_fingerprint(config)
    batches = _batches(config)
    losses, curve = [], []
    start, cpu_start = time.perf_counter(), time.process_time()
    stopped_early = False
    bar = tqdm(range(config.steps), desc="training organism", disable=not progress, mininterval=2.0)
    step = 0
    for step in bar:
        if time.perf_counter() - start > config.max_minutes * 60:
            stopped_early = True
            warnings.warn(
                f"stopped after {step} of {config.steps} steps: the {config.max_minutes}-minute limit was reached.",
                stacklevel=2,
            )
            break
        for group in optimizer.param_groups:
            group["lr"] = _learning_rate(config, step)
        batch = next(batches)
        inputs, targets = batch[:, :-1], batch[:, 1:].clone()
        targets[targets == pad] = -100
        with torch.autocast("cpu", dtype=torch.bfloat16, enabled=config.bf16):
            logits = model(input_ids=inputs).logits
        loss = F.cross_entropy(logits.float().reshape(-1, logits.shape[-1]), targets.reshape(-1), ignore_index=-100)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), config.grad_clip)
        optimizer.step()
        optimizer.zero_grad(set_to_none=True)
        losses.append(loss.item())
        if (step + 1) % config.log_every == 0:
            curve.append(round(sum(losses[-config.log_every :]) / config.log_every, 4))
            bar.set_postfix(loss=curve[-1])
    else:
        step = config.steps
    train_seconds = time.perf_counter() - start
    cpu_seconds = time.process_time() - cpu_start
    model.eval()
    info = {
        "config": asdict(config),
        "seed": config.seed,
        "steps_done": step,
        "stopped_early": stopped_early,
        "train_seconds": round(train_seconds, 1),
        "cpu_seconds": round(cpu_seconds, 1),  # all threads; about threads * train_seconds on an idle machine
        "load_average": [round(x, 2) for x in os.getloadavg()],
        "tokens_seen": step * config.batch_size * config.context,
        "parameters": sum(p.numel() for p in model.parameters()),
        "final_loss": round(sum(losses[-50:]) / max(1, len(losses[-50:])), 4),
        "loss_curve": curve,
        "data": {
            "grammar_sha256": grammar_fingerprint(),
            "first_batches_sha256": data_hash,
            "held_out_sha256": datasets.held_out_fingerprint(),
        },
        "versions": {
            "torch": torch.__version__,
            "transformers": _version("transformers"),
            "python": platform.python_version(),
            "threads": config.threads,
        },
    }
    save_organism(model, out, info)
    if report_n:
        from interp.organisms.evaluate import organism_report

        info["report"] = organism_report(out, n=report_n)
        write_training_info(out, info)
    return out


def save_organism(model, out: Path, info: dict) -> None:
    """Write the HF model directory (weights, config, tokenizer) and training.json, file by file atomically."""
    out.mkdir(parents=True, exist_ok=True)
    staging = Path(tempfile.mkdtemp(dir=out, prefix=".staging-"))
    try:
        model.save_pretrained(staging)
        tokenizer = build_tokenizer()
        tokenizer.model_max_length = model.config.max_position_embeddings
        tokenizer.save_pretrained(staging)
        for item in sorted(staging.iterdir()):
            if item.is_file():
                item.chmod(0o644)
                os.replace(item, out / item.name)
        write_training_info(out, info)
    finally:
        shutil.rmtree(staging, ignore_errors=True)


def write_training_info(out: Path, info: dict) -> None:
    """Write ``training.json`` atomically, readable by everyone (it ships with the weights)."""
    atomic_write_json(out / "training.json", info)
    (out / "training.json").chmod(0o644)


def _version(package: str) -> str:
    from importlib.metadata import version

    return version(package)
