"""One code path for one process or many: torchrun's environment decides.

``torchrun`` sets ``RANK``, ``WORLD_SIZE``, ``LOCAL_RANK``, ``MASTER_ADDR`` and ``MASTER_PORT``. With them
we join a process group (NCCL on CUDA, gloo on CPU), each rank takes ``cuda:LOCAL_RANK`` (or the CPU), and
gradients are averaged across ranks: the supervised ``Trainer`` wraps its model in DistributedDataParallel
(which averages during ``backward`` and overlaps it with the backward pass), MRL calls
:func:`all_reduce_gradients` after its ``loss.backward()``. Without them everything still works as a single
process with ``world_size = 1``. Only rank 0 writes files.
"""

from __future__ import annotations

import os
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import torch
import torch.distributed as dist
from torch import nn

from rxmrl.runtime import RunDirectoryInUse, RunLock


@dataclass(frozen=True)
class DistEnv:
    rank: int = 0
    world_size: int = 1
    local_rank: int = 0
    device: torch.device = torch.device("cpu")

    @property
    def is_main(self) -> bool:
        """Rank 0: the one process that writes checkpoints, metrics and progress bars."""
        return self.rank == 0

    @property
    def distributed(self) -> bool:
        return self.world_size > 1


def init_distributed(backend: str | None = None, device: str | None = None) -> DistEnv:
    """Read torchrun's variables, join the process group if world size > 1, pick the device."""
    world_size = int(os.environ.get("WORLD_SIZE", "1"))
    rank = int(os.environ.get("RANK", "0"))
    local_rank = int(os.environ.get("LOCAL_RANK", str(rank)))
    use_cuda = torch.cuda.is_available() if device is None else device.startswith("cuda")
    if use_cuda:
        torch.cuda.set_device(local_rank)
        chosen = torch.device("cuda", local_rank)
    else:
        chosen = torch.device(device or "cpu")
    if world_size > 1 and not dist.is_initialized():
        dist.init_process_group(backend or ("nccl" if use_cuda else "gloo"), rank=rank, world_size=world_size)
    return DistEnv(rank=rank, world_size=world_size, local_rank=local_rank, device=chosen)


def wrap_ddp(model: nn.Module, env: DistEnv, find_unused_parameters: bool = True) -> nn.Module:
    """DDP over the parameters that train now (rebuild after changing ``requires_grad``).

    ``find_unused_parameters`` defaults to True because MoE routing may leave experts unused on one rank.
    """
    if not env.distributed:
        return model
    device_ids = [env.device.index] if env.device.type == "cuda" else None
    return nn.parallel.DistributedDataParallel(model, device_ids=device_ids,
                                               find_unused_parameters=find_unused_parameters)


def broadcast_parameters(model: nn.Module, env: DistEnv) -> None:
    """Rank 0's weights and buffers on every rank (what DDP does when it wraps a model)."""
    if env.distributed:
        for tensor in model.state_dict().values():
            dist.broadcast(tensor, src=0)


def all_reduce_gradients(parameters: Sequence[nn.Parameter], env: DistEnv) -> None:
    """Average the gradients of ``parameters`` over the ranks, in place, in one all-reduce.

    ``g ← (1/W) Σ_r g_r``, what DDP does during ``backward``, written out for a loop that owns its update
    (MRL). A rank without a gradient for a parameter (an MoE expert no token of its shard was routed to)
    contributes zeros; a parameter no rank has a gradient for keeps ``grad = None``, so AdamW skips it, as
    under DDP. Every rank must pass the same parameters in the same order.
    """
    if not env.distributed:
        return
    params = list(parameters)
    if not params:
        return
    grads = [p.grad.reshape(-1) if p.grad is not None else torch.zeros(p.numel(), dtype=p.dtype, device=p.device)
             for p in params]
    present = torch.tensor([float(p.grad is not None) for p in params], dtype=grads[0].dtype, device=grads[0].device)
    flat = torch.cat([*grads, present])
    dist.all_reduce(flat, op=dist.ReduceOp.SUM)
    counts = flat[-len(params):]
    offset = 0
    for param, count in zip(params, counts.tolist(), strict=True):
        size = param.numel()
        if count > 0:
            param.grad = (flat[offset:offset + size] / env.world_size).view_as(param).clone()
        offset += size


def all_reduce_mean(values: Mapping[str, float], env: DistEnv) -> dict[str, float]:
    """Mean of each scalar across ranks (every rank must pass the same keys)."""
    if not env.distributed or not values:
        return {k: float(v) for k, v in values.items()}
    keys = sorted(values)
    tensor = torch.tensor([float(values[k]) for k in keys], dtype=torch.float64, device=env.device)
    dist.all_reduce(tensor, op=dist.ReduceOp.SUM)
    return {k: v / env.world_size for k, v in zip(keys, tensor.tolist())}


def any_rank(flag: bool, env: DistEnv) -> bool:
    """True on every rank if ``flag`` is True on any rank (so all ranks stop together)."""
    if not env.distributed:
        return flag
    tensor = torch.tensor([1.0 if flag else 0.0], device=env.device)
    dist.all_reduce(tensor, op=dist.ReduceOp.MAX)
    return bool(tensor.item())


def gather_objects(obj: Any, env: DistEnv) -> list[Any]:
    """Every rank's ``obj`` in rank order, on every rank (used for per-rank RNG states)."""
    if not env.distributed:
        return [obj]
    gathered: list[Any] = [None] * env.world_size
    dist.all_gather_object(gathered, obj)
    return gathered


def broadcast_object(obj: Any, env: DistEnv) -> Any:
    """Rank 0's ``obj`` on every rank."""
    if not env.distributed:
        return obj
    holder = [obj]
    dist.broadcast_object_list(holder, src=0)
    return holder[0]


def lock_run_dir(run_dir: str | os.PathLike, env: DistEnv) -> RunLock | None:
    """Rank 0 takes the run directory's lock (see :class:`rxmrl.runtime.RunLock`); if it cannot, every rank
    raises :class:`RunDirectoryInUse`, so no rank is left waiting in a collective. Release it with
    ``lock.release()`` (other ranks get None)."""
    lock, refusal = None, None
    if env.is_main:
        try:
            lock = RunLock(run_dir).acquire()
        except RunDirectoryInUse as error:
            refusal = str(error)
        if lock is not None and lock.took_over:
            print(f"note: {run_dir} was locked by process {lock.took_over.get('pid')} on "
                  f"{lock.took_over.get('host')}, which is no longer running; continuing its run", flush=True)
    refusal = broadcast_object(refusal, env)
    if refusal is not None:
        raise RunDirectoryInUse(refusal)
    return lock


def barrier(env: DistEnv) -> None:
    if env.distributed:
        dist.barrier()


def cleanup() -> None:
    """Leave the process group (safe to call when none was joined).

    Every rank waits at a barrier first: a rank that tears down its gloo group while another rank is
    still working (rank 0 writing files, say) can abort the other with ``terminate called without an
    active exception``.
    """
    if dist.is_available() and dist.is_initialized():
        dist.barrier()
        dist.destroy_process_group()
