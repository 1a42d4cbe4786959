"""Data-parallel training across processes (torchrun + torch.distributed), one code path.

`torchrun --nproc_per_node N -m stages.cli train ...` starts N copies of a stage; each one calls
`from_env()`, which joins the process group (NCCL on CUDA, gloo on CPU) and gives it a rank.
Every rank builds the same model from the same seed and draws the same shuffled order; each
global batch of `batch_size` samples is then split between the ranks (`part`), and gradients are
averaged (DistributedDataParallel for classifiers, `all_reduce_grads` for the multi-optimiser
generators). With the loss weight `part` returns, the averaged gradient is exactly the gradient
of the whole batch's mean loss: the run sees the same data once per epoch and takes the same
steps as one process with the same batch size. Only rank 0 writes outputs.

Without torchrun (no WORLD_SIZE in the environment) `from_env()` is `SINGLE` and everything here
is a no-op.
"""
from __future__ import annotations

import os
from dataclasses import dataclass

import torch


@dataclass(frozen=True)
class Dist:
    rank: int = 0
    world: int = 1
    local_rank: int = 0

    @property
    def active(self) -> bool:
        return self.world > 1

    @property
    def main(self) -> bool:
        return self.rank == 0

    def device(self, device: torch.device) -> torch.device:
        """One GPU per process: `cuda` becomes this process's cuda:LOCAL_RANK."""
        if self.active and device.type == "cuda" and device.index is None:
            return torch.device("cuda", self.local_rank)
        return device

    def part(self, n: int) -> tuple[slice, float]:
        """This rank's share of a global batch of n samples (every world-th one, from its rank)
        and the weight of its mean loss: world * share / n, so that the ranks' averaged
        gradients equal the gradient of the mean over all n. A rank left without a sample
        (n < world) takes sample 0 with weight 0, so that every rank still steps together."""
        if not self.active:
            return slice(None), 1.0
        if self.rank >= n:
            return slice(0, 1), 0.0
        share = len(range(self.rank, n, self.world))
        return slice(self.rank, None, self.world), self.world * share / n

    def sum(self, *values: float) -> list[float]:
        """Sum numbers over the ranks (every rank gets the totals)."""
        if not self.active:
            return list(values)
        t = torch.tensor(values, dtype=torch.float64)
        torch.distributed.all_reduce(t)
        return t.tolist()


SINGLE = Dist()


def from_env(backend: str | None = None) -> Dist:
    """The process group torchrun describes in the environment (joined once), else SINGLE."""
    world = int(os.environ.get("WORLD_SIZE", "1"))
    if world <= 1:
        return SINGLE
    import torch.distributed as dist

    if not dist.is_initialized():
        if backend is None:
            backend = "nccl" if torch.cuda.is_available() and dist.is_nccl_available() else "gloo"
        dist.init_process_group(backend)
        import atexit

        atexit.register(dist.destroy_process_group)  # a clean exit, without NCCL warnings
    return Dist(dist.get_rank(), dist.get_world_size(), int(os.environ.get("LOCAL_RANK", "0")))


def wrap(model: torch.nn.Module, d: Dist, device: torch.device) -> torch.nn.Module:
    """The module the training step calls: DistributedDataParallel over the parameters that
    train now (call again when that set changes, e.g. gradual unfreezing), else the model."""
    if not d.active:
        return model
    from torch.nn.parallel import DistributedDataParallel

    if not any(p.requires_grad for p in model.parameters()):
        return model
    ids = [device.index] if device.type == "cuda" else None
    # broadcast_buffers: every rank runs BatchNorm with rank 0's running statistics, so the
    # model that is validated and saved is the same on every rank
    return DistributedDataParallel(model, device_ids=ids, broadcast_buffers=True)


def all_reduce_grads(params, d: Dist) -> None:
    """Average the gradients of `params` over the ranks, in one flat all_reduce."""
    if not d.active:
        return
    grads = [p.grad for p in params if p.grad is not None]
    if not grads:
        return
    flat = torch.cat([g.reshape(-1) for g in grads]).div_(d.world)
    torch.distributed.all_reduce(flat)
    offset = 0
    for g in grads:
        g.copy_(flat[offset:offset + g.numel()].view_as(g))
        offset += g.numel()


def broadcast_buffers(module: torch.nn.Module, d: Dist) -> None:
    """Rank 0's buffers (BatchNorm statistics, spectral-norm vectors) on every rank."""
    if not d.active:
        return
    for b in module.buffers():
        torch.distributed.broadcast(b, 0)
