"""Training a TopK (or BatchTopK) sparse autoencoder or transcoder from an activation store, resumable after a kill.

The coder is sparsify's ``SparseCoder`` (EleutherAI; TopK encoder with a custom backward, the AuxK loss for
dead latents, decoder columns at unit norm, the gradient parallel to them removed): what it does well is not
written again here. interp adds what training from a store needs: rows streamed over shards without loading
the store (``rows.TrainingRows``), checkpoints written atomically every ``checkpoint_every`` steps (the coder,
Adam's state, the tokens since each latent last fired, the step), and a resume that continues bit-exactly
where an uninterrupted run would be. Recipe (sparsify's defaults, Gao et al. 2024): ``b_dec`` starts at the
mean of the first batch's targets (a transcoder's encoder bias at minus the mean input's image), Adam at
``2e-4 / sqrt(d_sae / 2**14)`` with a linear warm-up, loss = FVU + ``auxk_alpha`` x AuxK, a latent is dead
after ``dead_after_tokens`` tokens without firing. ``activation="batchtopk"`` keeps the ``k x batch`` largest
activations of each batch instead (``batch_topk``); the dictionary it gives is a JumpReLU with one threshold.
"""

import contextlib
import io
import json
import logging
import math
from dataclasses import asdict
from pathlib import Path
from typing import Any

import numpy as np
import torch
from safetensors.torch import load_file

from interp.dictionaries.batch_topk import THRESHOLD_BUFFER, add_threshold, batch_topk_forward
from interp.dictionaries.dictionary import SparseDictionary
from interp.dictionaries.formats import INTERP_FILE, load_dictionary
from interp.dictionaries.log import TrainingLog
from interp.dictionaries.rows import DEFAULT_WINDOW_BYTES, TrainingRows
from interp.dictionaries.settings import TrainingSettings
from interp.dictionaries.writing import save_dictionary
from interp.directories import exclusive_lock
from interp.errors import InterpError
from interp.io import atomic_write_json, atomic_write_safetensors
from interp.progress import tqdm

logger = logging.getLogger(__name__)

CHECKPOINT, STATE = "checkpoint.safetensors", "checkpoint.json"


def train_dictionary(
    source,
    site: str,
    out: str | Path,
    output_site: str | None = None,
    settings: TrainingSettings | None = None,
    window_bytes: int = DEFAULT_WINDOW_BYTES,
    progress: bool = True,
    **overrides: Any,
) -> SparseDictionary:
    """Train a TopK dictionary on ``site`` of ``source`` (an autoencoder; with ``output_site``, a transcoder).

    Args:
        source: an ``ActivationStore`` cached at every position (``positions="all"``), or a ``[rows, d]``
            tensor (a tuple of two for a transcoder) of rows in memory.
        site / output_site: the hook read, and for a transcoder the hook predicted (e.g. an MLP's input
            ``blocks.3.ln2.hook_normalized`` and output ``blocks.3.hook_mlp_out``).
        out: the directory of the dictionary (sparsify's format, with interp's record) and of its training
            log and checkpoint; a run stopped at any point resumes from its last checkpoint when called again
            with the same settings.
        settings / overrides: ``TrainingSettings`` or its fields as keywords (``k=32, d_sae=4096, ...``).

    Returns the trained dictionary (also written to ``out``; ``TrainingLog.load(out)`` holds its curves).
    """
    settings = _settings(settings, overrides)
    sites = (site,) if output_site is None or output_site == site else (site, output_site)
    rows = TrainingRows(
        source,
        sites,
        skip_first=settings.skip_first,
        exclude_special=settings.exclude_special,
        window_bytes=window_bytes,
    )
    d_in, d_out = rows.widths[0], rows.widths[-1]
    d_sae = settings.d_sae or settings.expansion * d_in
    if settings.k > d_sae:
        raise InterpError(f"k = {settings.k} is larger than the dictionary's {d_sae} latents; choose k <= d_sae.")
    transcoder = len(sites) == 2
    if transcoder and settings.activation == "batchtopk":
        raise InterpError(
            "BatchTopK trains sparse autoencoders only here (a BatchTopK transcoder would be a JumpReLU transcoder, "
            "which no shared format holds); train the transcoder with activation='topk'."
        )
    if transcoder and d_out != d_in:
        raise InterpError(f"a transcoder needs input and output of one width; {site} is {d_in}, {output_site} {d_out}.")
    out = Path(out)
    record = {
        "settings": asdict(settings),
        "site": site,
        "output_site": output_site or "",
        "d_sae": d_sae,
        "source": _source_id(source),
    }
    with exclusive_lock(out, what="dictionary training directory"):
        return _train(rows, out, record, settings, d_in, d_sae, transcoder, progress, source)


def _train(
    rows: TrainingRows,
    out: Path,
    record: dict[str, Any],
    settings: TrainingSettings,
    d_in: int,
    d_sae: int,
    transcoder: bool,
    progress: bool,
    source,
) -> SparseDictionary:
    coder = _new_coder(d_in, d_sae, settings, transcoder)
    lr = settings.lr or 2e-4 / math.sqrt(d_sae / 2**14)
    optimizer = torch.optim.Adam(coder.parameters(), lr=lr)
    since_fired = torch.zeros(d_sae, dtype=torch.long)
    log = _Log()
    step = _resume(out, record, coder, optimizer, since_fired, log)
    if step >= settings.steps and (out / INTERP_FILE).exists():
        return load_dictionary(out)
    bar = tqdm(
        total=settings.steps,
        initial=step,
        desc=f"training {'transcoder' if transcoder else 'SAE'} ({d_sae} latents, k={settings.k})",
        unit="step",
        disable=not progress,
    )
    batches = rows.batches(settings.batch_size, settings.seed, start_step=step)
    while step < settings.steps:
        batch = next(batches)
        x, y = batch[0], batch[-1]
        if step == 0:
            _initialise_biases(coder, x, y, transcoder)
        for group in optimizer.param_groups:
            group["lr"] = lr * min(1.0, (step + 1) / max(1, settings.lr_warmup_steps))
        dead = since_fired >= settings.dead_after_tokens
        dead_mask = dead if settings.auxk_alpha > 0 else None
        if settings.activation == "batchtopk":
            output = batch_topk_forward(coder, x, y if transcoder else None, settings.k, dead_mask)
        else:
            output = coder(x, y if transcoder else None, dead_mask=dead_mask)
        loss = output.fvu + settings.auxk_alpha * output.auxk_loss
        loss.backward()
        if not transcoder:
            coder.remove_gradient_parallel_to_decoder_directions()
        optimizer.step()
        optimizer.zero_grad(set_to_none=True)
        if not transcoder:
            coder.set_decoder_norm_to_unit_norm()
        fired = torch.zeros(d_sae, dtype=torch.bool)
        fired[output.latent_indices.flatten()] = True
        since_fired += x.shape[0]
        since_fired[fired] = 0
        step += 1
        log.add(
            step,
            float(output.fvu.detach()),
            float(output.auxk_loss.detach()),
            float((output.latent_acts > 0).sum(-1).float().mean()),
            float(dead.float().mean()),
        )
        bar.update(1)
        bar.set_postfix(fvu=f"{log.fvu[-1]:.3f}", l0=f"{log.l0[-1]:.1f}", dead=f"{log.dead[-1]:.1%}")
        if step % settings.checkpoint_every == 0 or step == settings.steps:
            _checkpoint(out, record, coder, optimizer, since_fired, log, step)
    bar.close()
    dictionary = _as_dictionary(coder, settings, record, transcoder, source)
    save_dictionary(dictionary, out)  # sparsify's format for TopK, SAELens's for a JumpReLU (BatchTopK)
    log.result(record, step * settings.batch_size).save(out)
    return dictionary


def _settings(settings: TrainingSettings | None, overrides: dict[str, Any]) -> TrainingSettings:
    known = set(TrainingSettings.__dataclass_fields__)
    unknown = sorted(set(overrides) - known)
    if unknown:
        raise InterpError(f"unknown training setting {unknown[0]!r}; known: {', '.join(sorted(known))}.")
    base = settings or TrainingSettings()
    return TrainingSettings(**{**asdict(base), **overrides}) if overrides else base


def _new_coder(d_in: int, d_sae: int, settings: TrainingSettings, transcoder: bool):
    with contextlib.redirect_stdout(io.StringIO()):  # sparsify prints which decoder it uses when imported
        from sparsify import SparseCoder, SparseCoderConfig

    config = SparseCoderConfig(
        activation="topk",
        num_latents=d_sae,
        k=settings.k,
        normalize_decoder=not transcoder,
        skip_connection=settings.skip_connection and transcoder,
        transcode=transcoder,
    )
    with torch.random.fork_rng(devices=[]):  # the initialisation's randomness, seeded, without touching the caller's
        torch.manual_seed(settings.seed)
        coder = SparseCoder(d_in, config, dtype=torch.float32)
    if settings.activation == "batchtopk":
        add_threshold(coder)
    return coder


@torch.no_grad()
def _initialise_biases(coder, x: torch.Tensor, y: torch.Tensor, transcoder: bool) -> None:
    if transcoder:
        coder.encoder.bias.data = -x.mean(0) @ coder.encoder.weight.data.T
    coder.b_dec.data = y.mean(0).to(coder.b_dec.dtype)


def _as_dictionary(
    coder, settings: TrainingSettings, record: dict[str, Any], transcoder: bool, source
) -> SparseDictionary:
    provenance = getattr(source, "provenance", None)
    batch_topk = settings.activation == "batchtopk"
    threshold = getattr(coder, THRESHOLD_BUFFER, None)
    return SparseDictionary(
        W_enc=coder.encoder.weight.detach().T.contiguous().clone(),
        b_enc=coder.encoder.bias.detach().clone(),
        W_dec=coder.W_dec.detach().clone(),
        b_dec=coder.b_dec.detach().clone(),
        activation="jumprelu" if batch_topk else "topk",
        k=None if batch_topk else settings.k,
        threshold=torch.full((coder.num_latents,), float(threshold)) if batch_topk and threshold is not None else None,
        W_skip=None if coder.W_skip is None else coder.W_skip.detach().clone(),
        apply_b_dec_to_input=not transcoder,
        site=record["site"],
        output_site=record["output_site"],
        model_id=provenance.model_id if provenance else "",
        weights_hash=provenance.weights_hash if provenance else "",
        extra={"trained_as": "batchtopk", "k": settings.k} if batch_topk else {},
    )


# ---- checkpoints ----------------------------------------------------------------------------------------------


class _Log:
    def __init__(self) -> None:
        self.step: list[int] = []
        self.fvu: list[float] = []
        self.auxk: list[float] = []
        self.l0: list[float] = []
        self.dead: list[float] = []

    def add(self, step: int, fvu: float, auxk: float, l0: float, dead: float) -> None:
        for name, value in (("step", step), ("fvu", fvu), ("auxk", auxk), ("l0", l0), ("dead", dead)):
            getattr(self, name).append(value)

    def to_json(self) -> dict[str, list]:
        return {name: list(getattr(self, name)) for name in ("step", "fvu", "auxk", "l0", "dead")}

    def result(self, record: dict[str, Any], tokens: int) -> TrainingLog:
        return TrainingLog(
            steps=np.array(self.step),
            fvu=np.array(self.fvu),
            auxk_loss=np.array(self.auxk),
            l0=np.array(self.l0),
            dead_fraction=np.array(self.dead),
            tokens=tokens,
            site=record["site"],
            output_site=record["output_site"],
            d_sae=record["d_sae"],
            settings=json.dumps(record["settings"], sort_keys=True),
            provenance=None,
        )


def _checkpoint(out: Path, record: dict[str, Any], coder, optimizer, since_fired, log: _Log, step: int) -> None:
    tensors = {f"coder.{name}": value.detach() for name, value in coder.state_dict().items()}
    for index, state in optimizer.state_dict()["state"].items():
        for key, value in state.items():
            tensors[f"adam.{index}.{key}"] = value if isinstance(value, torch.Tensor) else torch.tensor(value)
    tensors["since_fired"] = since_fired
    atomic_write_safetensors(out / CHECKPOINT, tensors)
    atomic_write_json(
        out / STATE, {**record, "step": step, "log": log.to_json()}
    )  # written last: names a whole checkpoint


def _resume(out: Path, record: dict[str, Any], coder, optimizer, since_fired, log: _Log) -> int:
    state_path = out / STATE
    if not state_path.exists():
        if out.exists() and any(path.name not in (".interp.lock",) for path in out.iterdir()):
            raise InterpError(f"{out} is not empty and holds no dictionary training; choose a new directory.")
        return 0
    try:
        state = json.loads(state_path.read_text(encoding="utf-8"))
        step = int(state["step"])
        saved = {key: state[key] for key in record}
    except (OSError, ValueError, KeyError, TypeError, RecursionError) as error:
        raise InterpError(f"{state_path} is damaged ({type(error).__name__}); delete {out} to start over.") from None
    if saved != json.loads(json.dumps(record)):
        changed = sorted(key for key in record if saved.get(key) != json.loads(json.dumps(record))[key])
        raise InterpError(
            f"{out} holds a training run of other settings (changed: {', '.join(changed)}); use a new directory, "
            "or the same settings to resume it."
        )
    try:
        tensors = load_file(str(out / CHECKPOINT))
    except Exception as error:  # a damaged checkpoint: one line, not safetensors' traceback
        raise InterpError(
            f"{out / CHECKPOINT} is damaged ({type(error).__name__}); delete {out} to start over."
        ) from None
    coder.load_state_dict(
        {name[len("coder.") :]: value for name, value in tensors.items() if name.startswith("coder.")}
    )
    optimizer_state = optimizer.state_dict()
    for name, value in tensors.items():
        if name.startswith("adam."):
            _, index, key = name.split(".", 2)
            optimizer_state["state"].setdefault(int(index), {})[key] = value
    optimizer.load_state_dict(optimizer_state)
    since_fired.copy_(tensors["since_fired"])
    for key in ("step", "fvu", "auxk", "l0", "dead"):
        getattr(log, key).extend(state["log"][key])
    logger.info("interp: resuming the dictionary training in %s at step %d.", out, step)
    return step


def _source_id(source) -> str:
    """What identifies the training data: the store's id, or a hash of the rows in memory."""
    from interp.provenance import hash_bytes, tensor_bytes

    manifest = getattr(source, "manifest", None)
    if manifest is not None:
        return str(manifest.get("store_id") or manifest.get("prompts_hash"))
    tensors = (source,) if isinstance(source, torch.Tensor) else tuple(source)
    return hash_bytes(tensor_bytes(tensor) for tensor in tensors)


train = train_dictionary  # interp.dictionaries.train(...)
