"""Several processes, one run: ``torchrun --nproc-per-node N -m qianyi run ...``.

Each process holds the whole task (same splits, same seed, same initial weights) and, at every step,
takes its contiguous 1/N share of the step's global source and target mini-batches (``--batch-size`` is
the global batch per domain; it must divide by N). After each ``backward`` the gradients of the
parameters being updated are averaged over the processes (one flattened ``all_reduce``), which is
what ``DistributedDataParallel`` does, done at the method's update so that methods with several
updates per step (games, teachers) work unchanged. Batch-norm statistics are computed per process
and averaged at every epoch end and checkpoint.

**Losses are per process.** Every loss term, including those that need a whole batch (MMD, CORAL,
LMMD, a domain discriminator's), is computed on the process's own share, as in the usual DDP
recipes: it keeps every method correct as written (a method may feed its inputs to private
encoders, teachers or decoders, which a gathered batch would break), costs no extra communication,
and an MMD estimated on B/N samples per domain estimates the same population quantity with more
variance. For losses that are means over samples (cross-entropy) the averaged gradient equals the
one-process gradient of the global batch exactly (up to float rounding); the difference for
whole-batch terms is measured in docs/scale.md.

Process 0 writes checkpoints, results and logs; the others only train. A killed process stops the
group (torchrun); starting the same command again resumes every process from process 0's last
checkpoint. Backend: NCCL on CUDA, gloo on CPU.
"""
from __future__ import annotations

import os
from typing import Iterable

import torch
from torch import nn

from ..errors import ConfigError


def world() -> tuple[int, int]:
    """(rank, number of processes); (0, 1) outside ``torchrun``."""
    import torch.distributed as dist

    if dist.is_available() and dist.is_initialized():
        return dist.get_rank(), dist.get_world_size()
    return 0, 1


def is_main() -> bool:
    return world()[0] == 0


def launched() -> bool:
    """Whether this process was started by torchrun with more than one process."""
    return int(os.environ.get("WORLD_SIZE", "1")) > 1


def init_from_env(device: str | None) -> None:
    """Join the process group torchrun set up (no-op for one process or when already joined)."""
    import torch.distributed as dist

    if not launched() or (dist.is_available() and dist.is_initialized()):
        return
    if not dist.is_available():
        raise ConfigError("this torch build has no torch.distributed; run one process (plain `qianyi run`)")
    missing = [v for v in ("MASTER_ADDR", "MASTER_PORT", "RANK") if not os.environ.get(v)]
    if missing:  # (torch's env:// rendezvous failed with a traceback)
        raise ConfigError(f"WORLD_SIZE={os.environ['WORLD_SIZE']} says this process is one of several started by "
                          f"torchrun, but {', '.join(missing)} {'is' if len(missing) == 1 else 'are'} not set: start "
                          "it with `torchrun --nproc-per-node N -m qianyi ...`, or unset WORLD_SIZE and RANK (left "
                          "over from another job?) to train in one process")
    cuda = device not in ("cpu",) and torch.cuda.is_available() and (device is None or str(device).startswith(("cuda", "auto")))
    if cuda:
        torch.cuda.set_device(int(os.environ.get("LOCAL_RANK", "0")))
    dist.init_process_group("nccl" if cuda else "gloo")


def local_device(device: torch.device) -> torch.device:
    """This process's device: ``cuda:LOCAL_RANK`` when training on CUDA under torchrun."""
    if device.type == "cuda" and world()[1] > 1:
        return torch.device("cuda", int(os.environ.get("LOCAL_RANK", "0")))
    return device


def shard(index: torch.Tensor, what: str, rank: int | None = None, size: int | None = None) -> torch.Tensor:
    """This process's contiguous share of a step's global mini-batch indices."""
    if rank is None or size is None:
        rank, size = world()
    if size == 1:
        return index
    if len(index) % size:
        raise ConfigError(f"the {what} mini-batch of {len(index)} samples does not divide among {size} processes; "
                          f"choose --batch-size divisible by {size} (and no larger than the smaller domain)")
    per = len(index) // size
    return index[rank * per:(rank + 1) * per]


def average_gradients(params: Iterable[torch.Tensor]) -> None:
    """Average the gradients of ``params`` over the processes (one flattened all_reduce)."""
    import torch.distributed as dist

    size = world()[1]
    if size == 1:
        return
    grads = [p.grad for p in dict.fromkeys(params) if p.grad is not None]
    if not grads:
        return
    flat = torch.cat([g.reshape(-1) for g in grads])
    dist.all_reduce(flat)
    flat /= size
    offset = 0
    for g in grads:
        g.copy_(flat[offset:offset + g.numel()].view_as(g))
        offset += g.numel()


def shared_buffers(module: nn.Module) -> list[torch.Tensor]:
    """The floating-point buffers of ``module`` that processes share (batch-norm statistics), without any
    method's memory of its own recent target predictions (``memory_buffers``)."""
    own = {id(getattr(m, k)) for m in module.modules() for k in getattr(m, "memory_buffers", ())
           if isinstance(getattr(m, k, None), torch.Tensor)}
    return [b for b in module.buffers() if b.is_floating_point() and id(b) not in own]


def average_buffers(*modules: nn.Module) -> None:
    """Average floating-point buffers (batch-norm running statistics) over the processes. A method's memory of
    recent target predictions (``memory_buffers``) is each process's own: its samples differ, and so may its
    length; it is left alone."""
    import torch.distributed as dist

    size = world()[1]
    if size == 1:
        return
    for module in modules:
        for buf in shared_buffers(module):
            dist.all_reduce(buf)
            buf /= size


def broadcast_parameters(*modules: nn.Module) -> None:
    """Give every process process 0's weights and buffers."""
    import torch.distributed as dist

    if world()[1] == 1:
        return
    for module in modules:
        for t in [*module.parameters(), *module.buffers()]:
            dist.broadcast(t.data, 0)


def average_values(values: dict[str, float]) -> dict[str, float]:
    """The mean of each logged number over the processes (the same keys everywhere)."""
    import torch.distributed as dist

    size = world()[1]
    if size == 1 or not values:
        return values
    keys = sorted(values)
    # NCCL reduces CUDA tensors only (a CPU tensor fails with "no backend for device type cpu")
    device = torch.device("cuda", torch.cuda.current_device()) if dist.get_backend() == "nccl" else None
    t = torch.tensor([values[k] for k in keys], dtype=torch.float64, device=device)
    dist.all_reduce(t)
    return {k: float(v) / size for k, v in zip(keys, t.tolist())}


def barrier() -> None:
    import torch.distributed as dist

    if world()[1] > 1:
        dist.barrier()
