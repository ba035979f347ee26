"""Training in several processes: ``torchrun --nproc_per_node=N -m brlgraph train ...``.

torchrun starts N copies of the command with ``RANK``, ``WORLD_SIZE``, ``LOCAL_RANK``
and a rendezvous address in their environment. :func:`setup` joins them into one
process group (gloo on the CPU, nccl on GPUs; one GPU per process, ``cuda:LOCAL_RANK``)
and the loop (:func:`brlgraph.train.loop.fit`) then trains through
``torch.nn.parallel.DistributedDataParallel``:

- every process builds the same data, sequences and model from the same seed; DDP
  checks that the initial weights agree and averages the gradients after each backward;
- each step's global batch (``train.batch_size`` target nodes; the training rows of a
  one-sequence graph) is cut into N contiguous parts (:func:`shard`), process r computes
  the loss of part r weighted by ``N * len(part) / len(batch)``, so that DDP's average
  over processes is the one-process mean: the same gradient, summed in another order;
- evaluation shares the targets of node-as-sequence data sets out the same way and
  gathers the logits (:func:`gather_rows`; a one-sequence graph is evaluated whole in
  every process), so every process scores the same logits and takes the same
  early-stopping decision;
- rank 0 alone writes checkpoints, ``results.jsonl``, prediction files and progress;
  a checkpoint also holds every rank's RNG state, so ``--resume`` under torchrun
  continues each process where it stopped.

Equal to one process: with dropout 0 the runs train on the same batches with the same
gradients up to the order of the floating-point sums, and end with the same metrics
(tests/train/test_distributed.py, 2 CPU processes). With dropout each process draws
the masks of its own part from its own generator, so the runs differ as two seeds do.

The blocks of :class:`~brlgraph.nn.BRLFormer` and
:class:`~brlgraph.nn.brlformer.BRLGraphSequenceModel` create reservoir-stream
parameters that the readout never reads (the last block's ``ff_c``, ``norm2_c`` and
``reservoir_out``); they get no gradient, which plain DDP reports as an error at its
second step. The models keep them (removing them would change the initial random
draws of every shipped config), and DDP runs with ``find_unused_parameters=True``,
which leaves their gradients unset as one process does.

``reproduce`` under torchrun does not use DDP: the processes share out the runs
(:func:`one_process` turns the group off inside each run).
"""

from __future__ import annotations

import contextlib
import os
from collections.abc import Iterator
from typing import Any

import torch
import torch.distributed as dist

_local = False  # inside one_process(): runs of this process alone


def launched() -> bool:
    """Whether this process was started by torchrun with more than one process."""
    return int(os.environ.get("WORLD_SIZE", "1")) > 1


def setup(device: str = "cpu") -> str:
    """Join torchrun's process group (once; nothing in a one-process run) and return the
    device this process trains on: ``cuda:LOCAL_RANK`` for ``cuda``, else ``device``."""
    if not launched():
        return device
    local_rank = int(os.environ.get("LOCAL_RANK", "0"))
    if device.startswith("cuda"):
        torch.cuda.set_device(local_rank)
        device = f"cuda:{local_rank}"
    if not dist.is_initialized():
        dist.init_process_group("nccl" if device.startswith("cuda") else "gloo")
    return device


def shutdown() -> None:
    """Leave the process group (at the end of a torchrun command)."""
    if dist.is_initialized():
        dist.destroy_process_group()


def active() -> bool:
    """Whether training runs data-parallel over several processes now."""
    return not _local and dist.is_available() and dist.is_initialized() and dist.get_world_size() > 1


def world_size() -> int:
    return dist.get_world_size() if active() else 1


def rank() -> int:
    return dist.get_rank() if active() else 0


def is_main() -> bool:
    """Rank 0 of the group, or the only process: the one that writes files."""
    if _local or not (dist.is_available() and dist.is_initialized()):
        return True
    return dist.get_rank() == 0


@contextlib.contextmanager
def one_process() -> Iterator[None]:
    """Within the block every run is this process's own (no DDP, no sharding, its files
    written by itself): ``reproduce`` shares whole runs out over the processes."""
    global _local
    before, _local = _local, True
    try:
        yield
    finally:
        _local = before


def shard(n: int) -> tuple[slice, float] | None:
    """This rank's part of a global batch of ``n`` rows and the weight of its mean loss
    (``world * len(part) / n``, so that DDP's average of the weighted means is the mean
    over the whole batch); ``None`` in one process."""
    if not active():
        return None
    world, r = world_size(), rank()
    bounds = [n * i // world for i in range(world + 1)]
    part = slice(bounds[r], bounds[r + 1])
    return part, world * (part.stop - part.start) / max(n, 1)


def wrap(model: torch.nn.Module) -> torch.nn.Module:
    """``model`` in DistributedDataParallel when :func:`active` (see the module doc on
    ``find_unused_parameters``), else ``model`` itself."""
    if not active():
        return model
    from torch.nn.parallel import DistributedDataParallel

    device = next(model.parameters()).device
    ids = [device.index] if device.type == "cuda" else None
    return DistributedDataParallel(model, device_ids=ids, find_unused_parameters=True)


@contextlib.contextmanager
def training_forward(task: Any, wrapped: torch.nn.Module) -> Iterator[None]:
    """While the block runs, ``task.model`` is ``wrapped`` (the DDP module), so that the
    task's loss runs its forward through DDP; the plain model again afterwards."""
    if wrapped is task.model:
        yield
        return
    plain, task.model = task.model, wrapped
    try:
        yield
    finally:
        task.model = plain


def mean(value: float) -> float:
    """The mean of ``value`` over the processes (the logged training loss)."""
    if not active():
        return value
    t = torch.tensor([value], dtype=torch.float64)
    dist.all_reduce(t)
    return float(t.item()) / world_size()


def gather_rows(local: torch.Tensor, n: int) -> torch.Tensor:
    """The [n, ...] concatenation, in rank order, of every process's rows ``local`` (its
    :func:`shard` of n rows): evaluation shares the targets out and gathers the logits."""
    world = world_size()
    bounds = [n * i // world for i in range(world + 1)]
    size = max(b - a for a, b in zip(bounds, bounds[1:], strict=False))
    padded = local.new_zeros(size, *local.shape[1:])
    padded[:len(local)] = local
    parts = [torch.empty_like(padded) for _ in range(world)]
    dist.all_gather(parts, padded)
    return torch.cat([part[:b - a] for part, a, b in zip(parts, bounds, bounds[1:], strict=False)])


def gather(obj: Any) -> list[Any]:
    """Every process's ``obj``, in rank order (``[obj]`` in one process)."""
    if not (dist.is_available() and dist.is_initialized()) or dist.get_world_size() == 1:
        return [obj]
    out: list[Any] = [None] * dist.get_world_size()
    dist.all_gather_object(out, obj)
    return out


def group_rank_and_size() -> tuple[int, int]:
    """(rank, size) of torchrun's group whether or not DDP is :func:`active` (``reproduce``
    shares runs over it); (0, 1) without one."""
    if not (dist.is_available() and dist.is_initialized()):
        return 0, 1
    return dist.get_rank(), dist.get_world_size()
