"""Atomic writes (a file is either absent, or complete; never half-written) and the one layout of saved results.

Every result is saved with ``write_result`` and read with ``read_result``: a JSON meta file tagged
``{"format": "interp.<kind>", "format_version": N}``, tensors as safetensors (read lazily), figures as
HTML with plotly.js inlined (they open offline), provenance through ``Provenance.to_dict/from_dict``.
"""

import contextlib
import json
import os
import re
import tempfile
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch
from safetensors import SafetensorError, safe_open
from safetensors.torch import load_file
from safetensors.torch import save as safetensors_bytes

import interp
from interp.checks import filesystem_error
from interp.errors import InterpError
from interp.provenance import Provenance

CONFIG_FILE = "config.json"  # what an experiment directory holds its description in
_SAFE_NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9._-]{0,63}")


def safe_name(name: Any, what: str = "name") -> str:
    """``name`` if it can be one file or directory name as it is, else InterpError naming ``what``.

    The one rule for every user-supplied name that becomes part of a path (experiment categories,
    labels, shard files): 1-64 ASCII letters, digits, ``.``, ``_`` or ``-``, not starting with
    ``.`` or ``-``, so no separator, ``..``, hidden file or absolute path gets through.

    >>> safe_name("cyber", what="category")
    'cyber'
    """
    if not isinstance(name, str) or not _SAFE_NAME.fullmatch(name):
        raise InterpError(
            f"{what} {name!r} cannot be used as a file name: use 1-64 letters, digits, '.', '_' or '-', "
            "starting with a letter or digit (no '/', backslash, '..' or spaces)."
        )
    return name


def inside(root: str | os.PathLike, relative: Any, what: str) -> Path:
    """``root / relative`` if ``relative`` is a relative path that stays inside ``root``.

    Refused: ``..``, links that lead out, absolute paths.
    """
    root = Path(root)
    if (
        not isinstance(relative, str)
        or not relative
        or Path(relative).is_absolute()
        or any(part in ("..", "") for part in relative.split("/"))
        or "\\" in relative
    ):
        raise InterpError(
            f"{what} {relative!r} is not a path inside {root}; the directory is damaged or was edited by hand."
        )
    path = root / relative
    if not path.resolve().is_relative_to(root.resolve()):
        raise InterpError(
            f"{what} {relative!r} leads outside {root} (through a link); the directory is damaged or was edited by "
            "hand."
        )
    return path


def atomic_write_bytes(path: Path, data: bytes) -> None:
    """Write ``data`` to a temporary file beside ``path``, fsync it, and rename it into place.

    The file gets the permissions a plain ``open(path, "w")`` would give (mkstemp's are 0600).
    A failure of the file system (no space, no permission, a file or directory in the way) is an
    InterpError naming ``path`` and the fix; nothing is left behind but what was there before.
    """
    path = Path(path)
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        handle, tmp_name = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    except OSError as error:
        raise filesystem_error(error, path) from error
    try:
        os.fchmod(handle, 0o666 & ~_umask())
        with os.fdopen(handle, "wb") as tmp:
            tmp.write(data)
            tmp.flush()
            os.fsync(tmp.fileno())
        os.replace(tmp_name, path)
    except BaseException as error:
        if os.path.exists(tmp_name):
            os.unlink(tmp_name)
        if isinstance(error, OSError):
            raise filesystem_error(error, path) from error
        raise


def _umask() -> int:
    """The process umask; read from /proc where it can be (setting it, the fallback, is not thread-safe)."""
    try:
        for line in Path("/proc/self/status").read_text().splitlines():
            if line.startswith("Umask:"):
                return int(line.split()[1], 8)
    except OSError:
        pass
    mask = os.umask(0o022)
    os.umask(mask)
    return mask


def atomic_write_text(path: Path, text: str) -> None:
    atomic_write_bytes(path, text.encode("utf-8"))


def atomic_write_json(path: Path, obj: Any) -> None:
    atomic_write_text(path, json.dumps(obj, indent=2, ensure_ascii=False, default=_json_default) + "\n")


def atomic_write_jsonl(path: Path, rows: list[Mapping[str, Any]]) -> None:
    lines = (json.dumps(row, ensure_ascii=False, default=_json_default) for row in rows)
    atomic_write_text(path, "".join(line + "\n" for line in lines))


def read_jsonl(
    source: str | os.PathLike | bytes,
    what: str = "",
    torn_tail: bool = False,
    hint: str = "each line must be one JSON object",
) -> list[dict[str, Any]]:
    """The JSON objects of a JSONL file (a path, or its bytes), one per line; blank lines are skipped.

    Lines end at ``"\\n"`` only: U+2028, U+2029 and U+0085 inside a string are text, not line ends
    (``str.splitlines`` would cut there). ``torn_tail=True`` (append-only logs): a last line without
    its newline is an interrupted write and is dropped, even if cut inside a UTF-8 character.
    Anything else unreadable is an InterpError naming ``what`` (default: the path), the line and ``hint``.
    """
    if isinstance(source, bytes):
        data, what = source, what or "the JSONL data"
    else:
        what = what or str(source)
        try:
            data = Path(source).read_bytes()
        except IsADirectoryError:
            raise InterpError(f"{what} is a directory, not a JSONL file.") from None
        except OSError as error:
            raise InterpError(f"cannot read {what}: {error.strerror or error}.") from error
    lines = data.split(b"\n")
    if torn_tail or not lines[-1].strip():
        lines = lines[:-1]  # "" after the final newline, or a torn last line
    records = []
    for number, raw in enumerate(lines, start=1):
        try:
            line = raw.decode("utf-8")
        except UnicodeDecodeError as error:
            raise InterpError(
                f"{what}, line {number}: not UTF-8 text ({error.reason} at byte {error.start}); {hint}."
            ) from None
        if not line.strip():
            continue
        try:
            record = json.loads(line)
        except json.JSONDecodeError as error:
            raise InterpError(f"{what}, line {number}: not valid JSON ({error.msg}); {hint}.") from None
        except RecursionError:
            raise InterpError(f"{what}, line {number}: JSON nested too deeply to read; {hint}.") from None
        if not isinstance(record, dict):
            raise InterpError(
                f'{what}, line {number}: expected a JSON object like {{"text": ...}}, '
                f"got {type(record).__name__}; {hint}."
            )
        records.append(record)
    return records


def atomic_write_safetensors(
    path: Path, tensors: Mapping[str, torch.Tensor], metadata: Mapping[str, str] | None = None
) -> None:
    """safetensors refuses shared memory, so every tensor is made contiguous and owned first (a view of a larger
    storage, or a storage another of ``tensors`` uses too, is copied)."""
    owned: dict[str, torch.Tensor] = {}
    seen: set[int] = set()
    for name, tensor in tensors.items():
        tensor = tensor.detach().contiguous()
        pointer = tensor.untyped_storage().data_ptr()
        shared = _shares_storage(tensor) or (tensor.numel() > 0 and pointer in seen)
        owned[name] = tensor.clone() if shared else tensor
        seen.add(pointer)
    atomic_write_bytes(path, safetensors_bytes(owned, metadata=dict(metadata) if metadata else None))


def atomic_write_figure(path: Path, figure: Any) -> None:
    """A Plotly figure as a standalone HTML page with plotly.js inlined, so it opens offline."""
    atomic_write_text(path, figure.to_html(include_plotlyjs=True, full_html=True))


# ---- saved results -------------------------------------------------------------------------------


@dataclass(frozen=True)
class ResultFormat:
    """How one kind of result is stored: its tag ``interp.<kind>``, version, files, and how to make and load one.

    Args:
        kind: ``"lens"``, ``"patching"``, ...; the meta carries ``"format": "interp.<kind>"``.
        version: the format version this interp writes (raise it when the stored fields change).
        name: what messages call the result ("logit-lens result").
        meta_file: the JSON meta in the result's directory; ``""``: the result is one safetensors
            file whose string metadata holds the meta (importance scores, masks).
        tensors_file: the safetensors file of the tensors (``""``: none).
        create: how to make one, named when a directory holds none.
        load: how to read one, named when another kind's loader is given it.
        aliases: tags written by earlier interps -> the format version they stand for (read, never written).
        untagged: the version of a meta without a ``format`` tag (saved before tags), or None: refused.
        migrations: ``{v: step}``; ``step(meta)`` turns the meta of version ``v`` into that of ``v + 1``.
    """

    kind: str
    version: int
    name: str
    meta_file: str
    tensors_file: str = ""
    create: str = ""
    load: str = ""
    aliases: Mapping[str, int] = field(default_factory=dict)
    untagged: int | None = None
    migrations: Mapping[int, Callable[[dict[str, Any]], dict[str, Any]]] = field(default_factory=dict)

    def __post_init__(self) -> None:
        RESULT_FORMATS[self.kind] = self

    @property
    def tag(self) -> str:
        return f"interp.{self.kind}"


RESULT_FORMATS: dict[
    str, ResultFormat
] = {}  # kind -> format; each result module declares its own (ResultFormat registers itself)


def _by_tag(tag: str) -> ResultFormat | None:
    """The format a tag (or an earlier interp's alias of it) names, among the kinds imported so far."""
    return next((fmt for fmt in RESULT_FORMATS.values() if tag == fmt.tag or tag in fmt.aliases), None)


@dataclass(frozen=True)
class SavedResult:
    """What ``read_result`` read: the meta (migrated to the current version), tensors (lazy) and provenance."""

    path: Path  # the meta file (or the safetensors file of a single-file format)
    meta: dict[str, Any]
    tensors: "LazyTensors | None"
    provenance: Provenance | None
    version: int  # the format version the result was saved with


def write_result(
    target: str | os.PathLike,
    fmt: ResultFormat,
    meta: Mapping[str, Any],
    *,
    provenance: Provenance | None,
    tensors: Mapping[str, torch.Tensor] | None = None,
    tensor_metadata: Mapping[str, str] | None = None,
    figures: Mapping[str, Any] | None = None,
    files: Mapping[str, str] | None = None,
) -> Path:
    """Save a result: tensors, text ``files`` and ``figures`` (HTML, plotly.js inlined), then the meta last.

    The meta file is written last, so a directory holds a result only once everything is there.
    ``target`` is the result's directory, or (``fmt.meta_file == ""``) its safetensors file, whose
    string metadata then holds ``meta`` (string values); a directory there gets ``fmt.tensors_file``.
    Returns the directory (or file) written.
    """
    if provenance is not None and not isinstance(provenance, Provenance):
        raise TypeError(f"provenance must be a Provenance or None, not {type(provenance).__name__}")
    tag = {"format": fmt.tag, "format_version": fmt.version}
    if not fmt.meta_file:
        path = Path(target)
        path = path / fmt.tensors_file if path.is_dir() else path
        strings = {key: str(value) for key, value in tag.items()} | dict(meta)
        strings["provenance"] = json.dumps(
            provenance.to_dict() if provenance else None, sort_keys=True, default=_json_default
        )
        atomic_write_safetensors(path, tensors or {}, strings)
        return path
    directory = Path(target)  # each atomic write below creates it (an OSError there is an InterpError naming the path)
    if tensors is not None:
        atomic_write_safetensors(
            directory / fmt.tensors_file,
            tensors,
            {key: str(value) for key, value in tag.items()} | dict(tensor_metadata or {}),
        )
    for name, text in (files or {}).items():
        atomic_write_text(directory / name, text)
    for name, figure in (figures or {}).items():
        atomic_write_figure(directory / name, figure)
    atomic_write_json(
        directory / fmt.meta_file, {**tag, **meta, "provenance": provenance.to_dict() if provenance else None}
    )
    return directory


def read_result(source: str | os.PathLike, fmt: ResultFormat) -> SavedResult:
    """Read a result saved by ``write_result``, or by an earlier interp (old tags, older versions).

    Raises InterpError, naming the fix, for a missing or incomplete result, a result of another
    kind, one written by a newer interp, and an older version that cannot be converted.
    """
    if not fmt.meta_file:
        path = Path(source)
        path = path / fmt.tensors_file if path.is_dir() else path
        if not path.is_file():
            raise InterpError(f"{path} holds no saved {fmt.name} (no such file). Create one with {fmt.create}.")
        try:
            with safe_open(str(path), framework="pt") as handle:
                meta: Any = dict(handle.metadata() or {})
        except Exception as error:
            raise InterpError(
                f"{path} is not a readable safetensors file ({error}); it is not a saved {fmt.name}."
            ) from error
        meta, version = _current(path, meta, fmt)
        try:
            provenance = json.loads(meta["provenance"]) if meta.get("provenance") else None
        except (json.JSONDecodeError, RecursionError) as error:
            raise InterpError(
                f"{path} holds a provenance that is not valid JSON; the saved {fmt.name} is damaged. Create it again "
                f"with {fmt.create}."
            ) from error
        return SavedResult(path, meta, LazyTensors(path), _provenance(path, provenance, fmt), version)
    directory = Path(source)
    meta_path = directory / fmt.meta_file
    if not meta_path.is_file():
        raise InterpError(_missing(directory, fmt, [fmt.meta_file]))
    try:
        meta = json.loads(meta_path.read_text(encoding="utf-8"))
    except (UnicodeDecodeError, json.JSONDecodeError, RecursionError) as error:
        reason = "nested too deeply to read" if isinstance(error, RecursionError) else error
        raise InterpError(
            f"{meta_path} is not valid JSON ({reason}); the saved {fmt.name} is damaged. Create it again with "
            f"{fmt.create}."
        ) from error
    if not isinstance(meta, dict):
        raise InterpError(f"{meta_path} holds a JSON {type(meta).__name__}, not the meta of a saved {fmt.name}.")
    meta, version = _current(meta_path, meta, fmt)
    tensors = None
    if fmt.tensors_file:
        if not (directory / fmt.tensors_file).is_file():
            raise InterpError(_missing(directory, fmt, [fmt.tensors_file]))
        tensors = LazyTensors(directory / fmt.tensors_file)
    provenance = _provenance(meta_path, meta.get("provenance"), fmt)
    return SavedResult(meta_path, meta, tensors, provenance, version)


_PROVENANCE_FIELDS: dict[str, tuple[str, Callable[[Any], bool]]] = {
    "model_id": ("a string", lambda v: isinstance(v, str)),
    "weights_hash": ("a string", lambda v: isinstance(v, str)),
    "dataset_hash": ("a string", lambda v: isinstance(v, str)),
    "interp_version": ("a string", lambda v: isinstance(v, str)),
    "seed": ("an integer or null", lambda v: v is None or (isinstance(v, int) and not isinstance(v, bool))),
    "hooks": ("a list of strings", lambda v: isinstance(v, list) and all(isinstance(x, str) for x in v)),
    "workarounds": ("a list of strings", lambda v: isinstance(v, list) and all(isinstance(x, str) for x in v)),
    "extra": ("an object", lambda v: isinstance(v, dict)),
    "versions": ("an object", lambda v: isinstance(v, dict)),
}


def _provenance(where: Path, data: Any, fmt: ResultFormat) -> Provenance | None:
    """The saved provenance, each field checked before it is trusted (None when the result saved none)."""
    if not data:
        return None
    problem = ""
    if not isinstance(data, dict):
        problem = f"holds a provenance that is not an object ({type(data).__name__})"
    elif "model_id" not in data or "weights_hash" not in data:
        problem = f"holds a provenance without {'model_id' if 'model_id' not in data else 'weights_hash'}"
    else:
        wrong = next((key for key, (_, ok) in _PROVENANCE_FIELDS.items() if key in data and not ok(data[key])), None)
        if wrong is not None:
            problem = f"field 'provenance.{wrong}' should be {_PROVENANCE_FIELDS[wrong][0]}"
    if problem:
        raise InterpError(
            f"{where} {problem}; the saved {fmt.name} is damaged or was edited by hand. Create it again with "
            f"{fmt.create}."
        )
    return Provenance.from_dict(data)


def _current(where: Path, meta: dict[str, Any], fmt: ResultFormat) -> tuple[dict[str, Any], int]:
    """``meta`` migrated to ``fmt.version``, and the version it was saved with."""
    tag = meta.get("format")
    if isinstance(tag, str) and (tag == fmt.tag or tag in fmt.aliases):
        try:
            version = int(meta.get("format_version", fmt.aliases.get(tag, -1)))
        except (TypeError, ValueError):
            version = -1
        if version < 0:
            raise InterpError(
                f"{where} says format {tag!r} but has no readable format_version; the saved {fmt.name} is damaged. "
                f"Create it again with {fmt.create}."
            )
    elif tag is None and fmt.untagged is not None:
        version = fmt.untagged
    else:
        if tag is not None:
            other = _by_tag(str(tag))
        else:  # an untagged meta of the same file name: a result of a kind that wrote no tag
            other = next(
                (
                    f
                    for f in RESULT_FORMATS.values()
                    if f.kind != fmt.kind and f.meta_file == where.name and f.untagged is not None
                ),
                None,
            )
        if other is not None:
            raise InterpError(
                f"{where} is a {other.name} (format {tag!r}), not a {fmt.name}; load it with {other.load}."
            )
        found = "no format tag" if tag is None else f"format {tag!r}"
        raise InterpError(
            f"{where} has {found}, so it is not a {fmt.name} (format {fmt.tag!r}); load it with the loader of its own "
            f"kind, or create a {fmt.name} with {fmt.create}."
        )
    saved = version
    if version > fmt.version:
        raise InterpError(
            f"{where} was written by a newer interp ({fmt.tag} format version {version}; interp {interp.__version__} "
            "reads up to "
            f"version {fmt.version}); upgrade interp to read it."
        )
    while version < fmt.version:
        step = fmt.migrations.get(version)
        if step is None:
            raise InterpError(
                f"{where} is {fmt.tag} format version {version}, older than this interp converts (it reads version "
                f"{fmt.version}). "
                "Convert it by loading it with the interp that wrote it and recomputing it with this one: "
                f"{fmt.create}."
            )
        meta = step(dict(meta))
        version += 1
    return meta, saved


def _missing(directory: Path, fmt: ResultFormat, files: list[str]) -> str:
    text = (
        f"{directory} holds no saved {fmt.name} (no {' or '.join(files)}): it is not a saved {fmt.name} directory, "
        f"or its save did not finish. Create one with {fmt.create}."
    )
    for name in dict.fromkeys(
        other.meta_file for other in RESULT_FORMATS.values() if other.meta_file and other.meta_file != fmt.meta_file
    ):
        other = _identify(directory / name)
        if other is not None:
            text += f" It holds a {other.name} ({name}); load that with {other.load}."
    return text


def _identify(path: Path) -> ResultFormat | None:
    """The format of the meta file ``path`` (by its tag, or by its name for untagged ones), if it is one."""
    if not path.is_file():
        return None
    try:
        tag = json.loads(path.read_text(encoding="utf-8")).get("format")
    except (OSError, UnicodeDecodeError, json.JSONDecodeError, AttributeError):
        return None
    if tag is not None:
        return _by_tag(str(tag))
    return next(
        (fmt for fmt in RESULT_FORMATS.values() if fmt.meta_file == path.name and fmt.untagged is not None), None
    )


@contextlib.contextmanager
def _readable(path: Path) -> Iterator[None]:
    """Turn safetensors' own error for a damaged file (a bad header, a cut body) into one line naming ``path``."""
    try:
        yield
    except SafetensorError as error:
        reason = str(error).replace("Error while deserializing header: ", "")
        raise InterpError(
            f"{path} is not a readable safetensors file ({reason}); the saved result is damaged: create it again."
        ) from error


class LazyTensors(Mapping[str, torch.Tensor]):
    """A read-only ``{key: tensor}`` view of a safetensors file; each tensor is read on access."""

    def __init__(self, path: str | os.PathLike):
        self.path = Path(path)
        with _readable(self.path), safe_open(str(self.path), framework="pt") as handle:
            self._shapes = {key: tuple(handle.get_slice(key).get_shape()) for key in handle.keys()}

    def shape(self, key: str) -> tuple[int, ...]:
        return self._shapes[key]

    def __getitem__(self, key: str) -> torch.Tensor:
        if key not in self._shapes:
            raise KeyError(key)
        with _readable(self.path), safe_open(str(self.path), framework="pt") as handle:
            return handle.get_tensor(key)

    def __iter__(self) -> Iterator[str]:
        return iter(self._shapes)

    def __len__(self) -> int:
        return len(self._shapes)

    def load_all(self) -> dict[str, torch.Tensor]:
        """Every tensor, read in one pass."""
        with _readable(self.path):
            return load_file(str(self.path))

    def require(self, names: "tuple[str, ...] | list[str]", what: str) -> dict[str, torch.Tensor]:
        """The tensors ``names`` (read in one pass); InterpError naming the missing ones."""
        missing = [name for name in names if name not in self._shapes]
        if missing:
            raise InterpError(
                f"{self.path} lacks the tensors {', '.join(missing)} of a saved {what}; the directory is damaged or "
                "of another kind."
            )
        tensors = self.load_all()
        return {name: tensors[name] for name in names}


def _shares_storage(tensor: torch.Tensor) -> bool:
    return tensor.untyped_storage().nbytes() != tensor.numel() * tensor.element_size()


def _json_default(obj: Any) -> Any:
    if isinstance(obj, Path):
        return str(obj)
    if isinstance(obj, torch.Tensor):
        return obj.tolist()
    if hasattr(obj, "tolist"):
        return obj.tolist()
    if hasattr(obj, "to_dict"):
        return obj.to_dict()
    raise TypeError(f"cannot write {type(obj).__name__} as JSON")
