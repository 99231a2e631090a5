"""Data-parallel runs under torchrun: which rank this process is, the process group, the split of work.

``torchrun --nproc-per-node N -m interp cache ...`` starts N copies of one command (``--nnodes M``
copies on each of M machines that share a file system). Each copy reads its rank from the
environment torchrun sets (``RANK``, ``WORLD_SIZE``, ``LOCAL_RANK``, ``LOCAL_WORLD_SIZE``,
``MASTER_ADDR``). Without ``WORLD_SIZE`` a process is rank 0 of a world of one: nothing here
talks to another process, and every caller behaves as it does without torchrun.

Work is split round-robin (rank ``r`` of ``n`` takes items ``r, r + n, r + 2n, ...``), so the
items (shards, problems) and their names do not depend on the number of ranks.

>>> World(rank=1, size=2).take(range(5))
[1, 3]
>>> World(rank=0, size=1).device_for("cuda")      # a world of one keeps the device asked for
'cuda'
"""

import json
import os
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from datetime import timedelta
from typing import Any, TypeVar

import torch

from interp.errors import InterpError

T = TypeVar("T")

# How long a rank waits at a barrier for the slowest one. A rank that dies is noticed by torchrun,
# which stops the others; the timeout only ends a run whose ranks were started by hand and lost.
BARRIER_TIMEOUT = timedelta(hours=2)
_ENV = ("RANK", "WORLD_SIZE", "LOCAL_RANK", "LOCAL_WORLD_SIZE")


@dataclass(frozen=True)
class World:
    """This process's place in a data-parallel run: ``rank`` of ``size``, ``local_rank`` of ``local_size`` on its
    machine."""

    rank: int = 0
    size: int = 1
    local_rank: int = 0
    local_size: int = 1

    def __post_init__(self):
        if not (0 <= self.rank < self.size and 0 <= self.local_rank < self.local_size):
            raise InterpError(
                f"rank {self.rank} of {self.size} (local rank {self.local_rank} of {self.local_size}) is not a valid "
                "place in a run; start the command with torchrun, which sets RANK, WORLD_SIZE, "
                "LOCAL_RANK and LOCAL_WORLD_SIZE, or unset them."
            )

    @property
    def is_distributed(self) -> bool:
        return self.size > 1

    @property
    def is_main(self) -> bool:
        """Rank 0: the one that writes what all ranks share (a store's manifest, the summary)."""
        return self.rank == 0

    def take(self, items: Iterable[T]) -> list[T]:
        """This rank's share of ``items``, round-robin: every ``size``-th item from position ``rank``."""
        return list(items)[self.rank :: self.size]

    def device_for(self, requested: str | None) -> str | None:
        """The device this rank's model goes to: ``cuda`` (or nothing asked, with CUDA present) is ``cuda:LOCAL_RANK``.

        A world of one and ``cpu`` keep what was asked; ``cuda:K`` is refused where several ranks share a
        machine (they would all run on one GPU).
        """
        if self.is_distributed and requested is not None and requested.startswith("cuda:") and self.local_size > 1:
            raise InterpError(
                f"--device {requested} would put all {self.local_size} ranks of this machine on one GPU; "
                "pass --device cuda (each rank takes cuda:LOCAL_RANK), or choose the GPUs with CUDA_VISIBLE_DEVICES."
            )
        if (
            not self.is_distributed
            or (requested not in (None, "cuda"))
            or (requested is None and not torch.cuda.is_available())
        ):
            return requested
        found = torch.cuda.device_count()
        if self.local_rank >= found:
            raise InterpError(
                f"rank {self.rank} is local rank {self.local_rank} on its machine, which has {found} CUDA devices; "
                f"start at most {found} ranks per machine (torchrun --nproc-per-node {found}), or pass --device cpu."
            )
        return f"cuda:{self.local_rank}"


SINGLE = World()


def current_world() -> World:
    """The World torchrun put this process in (``SINGLE`` when ``WORLD_SIZE`` is unset)."""
    if os.environ.get("WORLD_SIZE") is None:
        return SINGLE
    values = {}
    for name in _ENV:
        text = os.environ.get(name, "1" if name == "LOCAL_WORLD_SIZE" else None)
        if text is None or not text.strip().lstrip("-").isdigit():
            raise InterpError(
                f"WORLD_SIZE is set but {name} is {text!r}, not a number; start the command with torchrun "
                "(torchrun --nproc-per-node N -m interp ...), or unset WORLD_SIZE to run one process."
            )
        values[name] = int(text)
    return World(
        rank=values["RANK"],
        size=values["WORLD_SIZE"],
        local_rank=values["LOCAL_RANK"],
        local_size=values["LOCAL_WORLD_SIZE"],
    )


def ensure_process_group(world: World, device: str | torch.device | None = None) -> None:
    """Join the run's process group once: NCCL when ``device`` is a CUDA device, gloo otherwise. A world of one joins
    nothing."""
    import torch.distributed as dist

    if not world.is_distributed or dist.is_initialized():
        return
    missing = [name for name in ("MASTER_ADDR", "MASTER_PORT") if not os.environ.get(name)]
    if missing:
        raise InterpError(
            f"WORLD_SIZE={world.size} but {' and '.join(missing)} unset; "
            "start the command with torchrun, which sets them."
        )
    on_cuda = device is not None and torch.device(device).type == "cuda"
    backend = "nccl" if on_cuda and dist.is_nccl_available() else "gloo"
    if backend == "nccl" and device is not None:  # nccl implies a CUDA device, so never None here
        torch.cuda.set_device(torch.device(device))
    dist.init_process_group(backend, rank=world.rank, world_size=world.size, timeout=BARRIER_TIMEOUT)


def leave_process_group() -> None:
    """Leave the process group if this process joined one (at the end of a command)."""
    import torch.distributed as dist

    if dist.is_available() and dist.is_initialized():
        dist.destroy_process_group()


def barrier(world: World) -> None:
    """Wait until every rank gets here (nothing to wait for in a world of one)."""
    if world.is_distributed:
        import torch.distributed as dist

        dist.barrier()


def on_main(world: World, compute: Callable[[], T]) -> T:
    """Run ``compute`` on rank 0 only; every rank returns its (JSON) result, or raises its InterpError.

    The result travels as JSON bytes, not pickles. An InterpError on rank 0 is raised on every rank
    with the same message, so no rank is left waiting for a rank 0 that gave up.
    """
    if not world.is_distributed:
        return compute()
    outcome: dict[str, Any] = {}
    if world.is_main:
        try:
            outcome = {"value": compute()}
        except InterpError as error:
            outcome = {"error": str(error)}
        except BaseException as error:
            _broadcast_json({"error": f"rank 0 failed ({type(error).__name__}: {error}); see its traceback."})
            raise
    outcome = _broadcast_json(outcome)
    if "error" in outcome:
        raise InterpError(outcome["error"])
    return outcome["value"]


def _broadcast_json(value: Any) -> Any:
    """Rank 0's ``value``, on every rank: its JSON length, then its bytes, as uint8 tensors."""
    import torch.distributed as dist

    device = torch.device("cuda", torch.cuda.current_device()) if dist.get_backend() == "nccl" else torch.device("cpu")
    payload = json.dumps(value).encode("utf-8") if dist.get_rank() == 0 else b""
    length = torch.tensor([len(payload)], dtype=torch.int64, device=device)
    dist.broadcast(length, src=0)
    data = (
        torch.frombuffer(bytearray(payload), dtype=torch.uint8).to(device)
        if payload
        else torch.empty(int(length), dtype=torch.uint8, device=device)
    )
    dist.broadcast(data, src=0)
    return json.loads(data.cpu().numpy().tobytes().decode("utf-8"))


def hide_launcher_environment() -> None:
    """Remove torchrun's variables from this process's environment (after ``current_world`` has read them).

    For a library that would take them as its own launch (vLLM starts its own workers for tensor
    parallelism): each rank then looks like a process started alone.
    """
    for name in [
        *_ENV,
        "GROUP_RANK",
        "GROUP_WORLD_SIZE",
        "ROLE_RANK",
        "ROLE_WORLD_SIZE",
        "ROLE_NAME",
        "MASTER_ADDR",
        "MASTER_PORT",
    ]:
        os.environ.pop(name, None)
    for name in [name for name in os.environ if name.startswith("TORCHELASTIC_")]:
        os.environ.pop(name, None)


def check_enough_work(world: World, n_items: int, items: str, fix: str) -> None:
    """Refuse a run with more ranks than items of work: a rank with nothing to do is a mistake in the launch."""
    if n_items < world.size:
        raise InterpError(
            f"this run has {world.size} ranks but only {n_items} {items}; start at most {n_items} ranks "
            f"(torchrun: nnodes x nproc-per-node <= {n_items}){fix}."
        )
