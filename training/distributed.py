"""Data-parallel training: the one place the trainers talk to ``torch.distributed``.

``dara train sft|grpo`` run unchanged under ``torchrun --nproc_per_node N`` or
``accelerate launch --multi_gpu --num_processes N`` (docs/training.md, "Data-parallel
training"). Every rank builds the step's whole batch (a pure function of seed and step),
keeps a contiguous slice of it (:meth:`World.shard`; a GRPO group never straddles two
ranks), computes its part of a loss whose denominator is the *global* one
(:func:`sum_tensor` of the counts), and the summed gradients (:func:`all_reduce_grads`)
are then the single-process gradient up to float summation order. Every rank applies
the same update, so the weights stay replicated; logs and checkpoints come from rank 0
(:attr:`World.is_main`), and the others wait for its writes (:func:`barrier`).

In a single process (no ``WORLD_SIZE`` > 1 in the environment) every helper is the
identity or a no-op and neither ``accelerate`` nor ``torch.distributed`` is touched.
With several processes the process group is created through ``accelerate.PartialState``
(``env://`` rendezvous, as both launchers set it up), so ``accelerate`` is needed: the
``train`` extra, ``pip install 'dara[train]'``.

Devices: :func:`resolve_device` turns the config's ``device`` into this process's
``torch.device`` (``auto``/``cuda`` = ``cuda:<LOCAL_RANK>``, one GPU per process), and
:func:`world` joins the group with the backend that device needs (:func:`backend_for`:
nccl on CUDA, gloo on CPU); the collectives then run on tensors on that device.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from typing import Any, Iterable, Sequence

import torch


class MissingAccelerate(ImportError):
    """Several processes were launched but ``accelerate`` is not installed."""


@dataclass(frozen=True)
class World:
    """This process's place among the data-parallel ranks."""

    rank: int = 0
    size: int = 1

    @property
    def is_main(self) -> bool:
        """Rank 0: the one that logs, prints and writes checkpoints and adapters."""
        return self.rank == 0

    def shard(self, n: int, name: str = "rows") -> range:
        """This rank's contiguous slice of ``n`` global items (rank order = global order);
        ``name`` is the config field that sets ``n``, for the error when ``n`` is too small."""
        check_split(n, name, self.size)
        return range(self.rank * n // self.size, (self.rank + 1) * n // self.size)


_INITIALISED: World | None = None


def launched_size() -> int:
    """Processes the launcher started (``WORLD_SIZE``, as torchrun and accelerate set it)."""
    raw = os.environ.get("WORLD_SIZE", "1")
    try:
        return int(raw)
    except ValueError:
        raise ValueError(f"WORLD_SIZE must be an integer, got {raw!r}") from None


def launched_local_rank() -> int:
    """This process's index on its machine (``LOCAL_RANK``, as torchrun and accelerate set
    it; 0 in a single process): which GPU it gets."""
    raw = os.environ.get("LOCAL_RANK", "0")
    try:
        rank = int(raw)
    except ValueError:
        raise ValueError(f"LOCAL_RANK must be an integer, got {raw!r}") from None
    if rank < 0:
        raise ValueError(f"LOCAL_RANK must be >= 0, got {rank}")
    return rank


DEVICE_HELP = "'auto' (cuda:<LOCAL_RANK> when CUDA is available, else cpu), 'cpu', 'cuda' or 'cuda:N'"


def resolve_device(spec: str = "auto") -> torch.device:
    """This process's training device from the config's ``device`` (:data:`DEVICE_HELP`).

    ``auto`` and ``cuda`` give every process of a data-parallel run its own GPU, the one
    of its ``LOCAL_RANK``; ``cuda:N`` pins the process to GPU N, so it is only for a single
    process (NCCL cannot run two ranks on one GPU). Raises a one-line ``ValueError`` for
    a malformed value, CUDA asked on a machine without it, or a GPU that does not exist.
    """
    raw = str(spec).strip().lower()
    if raw == "cpu":
        return torch.device("cpu")
    if raw == "auto" and not torch.cuda.is_available():
        return torch.device("cpu")
    index: int | None = None
    if raw not in ("auto", "cuda"):
        kind, _, num = raw.partition(":")
        if kind != "cuda" or not num.isdigit():
            raise ValueError(f"device must be {DEVICE_HELP}, got {spec!r}")
        index = int(num)
    if not torch.cuda.is_available():
        raise ValueError(f"device={spec!r} asks for CUDA but torch.cuda.is_available() is False on this "
                         "machine (CPU-only torch build or no GPU); use --device cpu or auto")
    count = torch.cuda.device_count()
    if index is None:
        index = launched_local_rank()
        if index >= count:
            raise ValueError(f"device={spec!r}: LOCAL_RANK {index} needs GPU {index} but this machine has "
                             f"{count}; launch at most {count} processes per machine")
        return torch.device("cuda", index)
    if index >= count:
        raise ValueError(f"device={spec!r}: this machine has {count} GPU(s) (cuda:0..cuda:{count - 1})")
    if launched_size() > 1:
        raise ValueError(f"device={spec!r} puts all {launched_size()} processes on one GPU; use 'cuda' or "
                         "'auto' (each process takes cuda:<LOCAL_RANK>)")
    return torch.device("cuda", index)


def backend_for(device: torch.device | str) -> str:
    """The ``torch.distributed`` backend for collectives on ``device``: nccl on CUDA, gloo on CPU."""
    kind = torch.device(device).type
    if kind == "cuda":
        return "nccl"
    if kind == "cpu":
        return "gloo"
    raise ValueError(f"no process-group backend for device type {kind!r} (only cpu and cuda)")


_DEVICE = torch.device("cpu")  # where the collectives' own tensors live (set by world())


def world(device: torch.device | str | None = None) -> World:
    """This process's :class:`World`; with several processes, joins the process group
    (once) through ``accelerate.PartialState``, with :func:`backend_for` ``device``'s
    backend (``device`` default: ``resolve_device("auto")``)."""
    global _INITIALISED, _DEVICE
    if _INITIALISED is not None:
        if device is not None and backend_for(device) != backend_for(_DEVICE):
            raise RuntimeError(f"the process group was created for {_DEVICE.type} ({backend_for(_DEVICE)}); "
                               f"it cannot also serve device {device}")
        return _INITIALISED
    n = launched_size()
    if n <= 1:
        return World()
    device = resolve_device() if device is None else torch.device(device)
    backend = backend_for(device)
    try:
        from accelerate import PartialState
    except ImportError as e:
        raise MissingAccelerate(f"{n} processes were launched but accelerate is not installed: "
                                "pip install 'dara[train]'") from e
    # cpu=True keeps accelerate off the GPUs (gloo, even where CUDA exists); on CUDA the
    # resolved GPU becomes the current device, the one NCCL collectives and barriers use
    state = PartialState(cpu=device.type == "cpu", backend=backend)
    if device.type == "cuda":
        torch.cuda.set_device(device)
    _DEVICE = device
    _INITIALISED = World(rank=int(state.process_index), size=int(state.num_processes))
    return _INITIALISED


def check_split(n: int, name: str, size: int | None = None) -> None:
    """Every rank needs at least one item of the global batch."""
    size = world().size if size is None else size
    if n < size:
        raise ValueError(f"{name}={n} is smaller than the {size} data-parallel processes "
                         f"(each needs at least one); raise {name} or launch fewer processes")


def shutdown() -> None:
    """Leave the process group (at the end of a run; nothing to do in a single process)."""
    global _INITIALISED, _DEVICE
    if _INITIALISED is not None:
        from accelerate import PartialState

        PartialState().destroy_process_group()
        _INITIALISED = None
        _DEVICE = torch.device("cpu")


# ---------------------------------------------------------------------------------------
# collectives (identity in a single process)
# ---------------------------------------------------------------------------------------
def _distributed() -> bool:
    return world().size > 1


def sum_tensor(t: torch.Tensor) -> torch.Tensor:
    """``t`` summed over ranks (a new tensor; ``t`` itself in a single process); ``t`` is
    on this process's device (a CUDA tensor under nccl)."""
    if not _distributed():
        return t
    import torch.distributed as dist

    out = t.detach().clone()
    dist.all_reduce(out, op=dist.ReduceOp.SUM)
    return out


def sum_floats(values: Sequence[float]) -> list[float]:
    """Each value summed over ranks (one all-reduce, float64)."""
    if not _distributed():
        return [float(v) for v in values]
    return sum_tensor(torch.tensor([float(v) for v in values], dtype=torch.float64, device=_DEVICE)).tolist()


def max_floats(values: Sequence[float]) -> list[float]:
    """Each value's maximum over ranks."""
    if not _distributed():
        return [float(v) for v in values]
    import torch.distributed as dist

    t = torch.tensor([float(v) for v in values], dtype=torch.float64, device=_DEVICE)
    dist.all_reduce(t, op=dist.ReduceOp.MAX)
    return t.tolist()


def weighted_means(means: Sequence[float], weight: float) -> list[float]:
    """Global means from per-rank ``means`` over ``weight`` items each (e.g. a per-token
    KL over this rank's completion tokens); the values themselves in a single process."""
    if not _distributed():
        return [float(m) for m in means]
    *sums, total = sum_floats([float(m) * weight for m in means] + [weight])
    return [s / total if total else 0.0 for s in sums]


def all_reduce_grads(params: Iterable[torch.nn.Parameter]) -> None:
    """Sum the gradients of ``params`` over ranks, in place (one flat all-reduce).

    The losses are normalised by global denominators, so the sum (not the mean) is the
    whole batch's gradient. A parameter without a gradient on this rank counts as zeros.
    The flat buffer is on the parameters' device (a GPU under nccl).
    """
    if not _distributed():
        return
    import torch.distributed as dist

    params = list(params)
    grads = [p.grad if p.grad is not None else torch.zeros_like(p) for p in params]
    flat = torch.cat([g.reshape(-1) for g in grads])
    dist.all_reduce(flat, op=dist.ReduceOp.SUM)
    i = 0
    for p in params:
        n = p.numel()
        summed = flat[i:i + n].view_as(p)
        if p.grad is None:
            p.grad = summed.clone()
        else:
            p.grad.copy_(summed)
        i += n


def gather(obj: Any) -> list[Any]:
    """Every rank's ``obj``, in rank order (``[obj]`` in a single process)."""
    if not _distributed():
        return [obj]
    import torch.distributed as dist

    out: list[Any] = [None] * world().size
    dist.all_gather_object(out, obj)
    return out


def barrier() -> None:
    """Wait until every rank gets here (e.g. until rank 0 has written a checkpoint)."""
    if _distributed():
        import torch.distributed as dist

        dist.barrier()


def check_agree(what: str, value: float) -> None:
    """Raise if the ranks hold different ``value``s for ``what`` (replicated state that
    must not drift: a step's reference refresh, a checksum of the weights)."""
    if not _distributed():
        return
    hi, neg_lo = max_floats([value, -value])
    if hi != -neg_lo:
        raise RuntimeError(f"data-parallel ranks disagree on {what}: values range over [{-neg_lo}, {hi}]")


def check_replicated(what: str, tensors: Iterable[torch.Tensor]) -> None:
    """Raise unless ``tensors`` are bitwise the same on every rank (compared through a
    float64 sum and sum of squares, one all-reduce each)."""
    if not _distributed():
        return
    s = q = 0.0
    for t in tensors:
        d = t.detach().double()
        s += float(d.sum())
        q += float(d.square().sum())
    check_agree(f"{what} (sum)", s)
    check_agree(f"{what} (sum of squares)", q)


def seed_rank_rng(seed: int, step: int) -> None:
    """With several ranks, reseed torch's global generator per (seed, step, rank), so
    stochastic layers (LoRA dropout) draw independent masks on each rank and a resumed
    run at any world size draws the same ones; a single process keeps its own stream."""
    w = world()
    if w.size > 1:
        torch.manual_seed((int(seed) * 1_000_003 + int(step) * 7919 + 104_729 * (w.rank + 1)) % (2**63 - 1))
