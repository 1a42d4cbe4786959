"""Batch plumbing shared by every training loop (classifiers and generators alike).

A data set that fits in memory lives as one uint8 N x C x H x W tensor on the device and is cut
into mini-batches by index: no per-sample Python, no DataLoader workers (on 2 CPU cores that is
several times faster than a DataLoader over a Dataset). One that does not fit is read from its
memory map batch by batch (`place`). `ShuffledStream` gives back-to-back shuffled passes, so a
run can be a budget of samples or steps whatever the set's size; `mixed_precision` picks the
autocast dtype (and grad scaler) for a device.
"""
from __future__ import annotations

import os
import warnings
from typing import Iterator

import numpy as np
import torch


def as_tensor(images: np.ndarray, device: torch.device) -> torch.Tensor:
    """uint8 N x H x W x C (maybe memory-mapped) -> uint8 N x C x H x W on `device`."""
    with warnings.catch_warnings():  # a read-only memmap: .contiguous() copies it right away
        warnings.filterwarnings("ignore", "The given NumPy array is not writable")
        x = torch.from_numpy(np.ascontiguousarray(images))
    return x.permute(0, 3, 1, 2).contiguous().to(device)


def _free_bytes(device: torch.device) -> int | None:
    """Memory free for a resident copy: GPU memory on CUDA, else available RAM (None: unknown)."""
    if device.type == "cuda":
        return torch.cuda.mem_get_info(device)[0]
    try:
        return os.sysconf("SC_AVPHYS_PAGES") * os.sysconf("SC_PAGE_SIZE")
    except (ValueError, OSError, AttributeError):  # not every OS has these names
        return None


def place(images: np.ndarray, device: torch.device, load: str = "auto") -> torch.Tensor | np.ndarray:
    """Where training reads `images` from: `memory` -> one uint8 tensor on `device` (batches are
    index gathers, no per-sample Python); `mmap` -> the (memory-mapped) array itself, each batch
    read from it on demand, so a set larger than memory trains in bounded memory; `auto` ->
    memory when the set takes at most a quarter of the free memory, else mmap."""
    if load == "auto":
        free = _free_bytes(device)
        load = "memory" if free is None or images.nbytes <= free // 4 else "mmap"
    return as_tensor(images, device) if load == "memory" else images


def gather(x: torch.Tensor | np.ndarray, y: torch.Tensor, idx: torch.Tensor
           ) -> tuple[torch.Tensor, torch.Tensor]:
    """uint8 N x C x H x W images and labels of `idx`, on y's device. From a memory-mapped
    array the indices are read in ascending order (a batch is a set; sequential reads)."""
    if isinstance(x, torch.Tensor):
        idx = idx.to(x.device)
        return x[idx], y[idx]
    idx = idx.sort().values
    xb = torch.from_numpy(x[idx.numpy()]).permute(0, 3, 1, 2)
    pin = y.device.type == "cuda"
    xb = (xb.pin_memory() if pin else xb).to(y.device, non_blocking=pin)
    return xb, y[idx.to(y.device)]


class ShuffledStream:
    """Shuffled passes over n samples, back to back, cut into epochs of a fixed size: a small
    set repeats within an epoch, a large one spreads a pass over several epochs (and every
    sample is still seen once per pass)."""

    def __init__(self, n: int, generator: torch.Generator):
        self.n, self.generator = n, generator
        self.left = torch.empty(0, dtype=torch.long)

    def take(self, size: int) -> torch.Tensor:
        while len(self.left) < size:
            self.left = torch.cat([self.left, torch.randperm(self.n, generator=self.generator)])
        out, self.left = self.left[:size], self.left[size:]
        return out


def layout(x: torch.Tensor, channels_last: bool) -> torch.Tensor:
    """An N x C x H x W batch in the memory layout the model was put in."""
    return x.contiguous(memory_format=torch.channels_last) if channels_last else x


def batches(x: torch.Tensor | np.ndarray, y: torch.Tensor, batch_size: int,
            generator: torch.Generator | None = None, channels_last: bool = False,
            order: torch.Tensor | None = None) -> Iterator[tuple[torch.Tensor, torch.Tensor]]:
    """Yield (float [0,1] images, labels) in `order`; without one, one pass shuffled with a
    generator, else in storage order. `x`: a resident tensor or a (memory-mapped) array."""
    n = len(y)
    if order is None:
        order = torch.randperm(n, generator=generator) if generator is not None else torch.arange(n)
    for i in range(0, len(order), batch_size):
        xb, yb = gather(x, y, order[i:i + batch_size])
        yield layout(xb.float().div_(255), channels_last), yb


# oneDNN ISA caps (ONEDNN_MAX_CPU_ISA) below native bf16: a stand-in for an older CPU
NO_BF16_ISAS = {"SSE41", "AVX", "AVX2", "AVX2_VNNI", "AVX2_VNNI_2", "AVX512_CORE",
                "AVX512_CORE_VNNI"}


# On a CPU an inference batch beyond a few dozen images of the study's sizes spills the caches:
# efficientnet_lite0 scored the 1,000 test images (40 px) in 1.7 s at 1,024 a batch, 1.1-1.3 s
# at 512 and 0.82-0.9 s at 64, and its ImageNet features (64 px) in 3.2 s at 512 and 1.55 s at
# 64, one thread of an AMD EPYC Zen 4; the logits and features were the same bit for bit.
CPU_INFERENCE_BATCH = 64


def inference_batch(device: torch.device, size: int) -> int:
    """Images per inference batch: `size`, at most CPU_INFERENCE_BATCH on a CPU (a GPU wants
    large batches; a CPU's caches small ones)."""
    return min(size, CPU_INFERENCE_BATCH) if device.type == "cpu" else size


def cpu_bf16() -> tuple[bool, str]:
    """Whether CPU bf16 autocast runs natively here, and why: oneDNN's bf16 support (AVX512-BF16
    or AMX), honouring a lower ONEDNN_MAX_CPU_ISA or ATEN_CPU_CAPABILITY cap."""
    import os

    cap = os.environ.get("ONEDNN_MAX_CPU_ISA", "").upper()
    if cap in NO_BF16_ISAS:
        return False, f"ONEDNN_MAX_CPU_ISA={cap}"
    aten = os.environ.get("ATEN_CPU_CAPABILITY", "").lower()
    if aten in ("default", "avx2"):
        return False, f"ATEN_CPU_CAPABILITY={aten}"
    if torch.ops.mkldnn._is_mkldnn_bf16_supported():
        return True, "oneDNN has native bf16 (AVX512-BF16/AMX)"
    return False, "no AVX512-BF16/AMX"


def precision_note(device: torch.device, enabled: bool, cpu: bool = False,
                   setting: str = "train.cpu_bf16") -> str:
    """What `mixed_precision` picks and why, for the training log: `cpu: fp32 (no ...)`;
    `setting` names the switch that `cpu` comes from."""
    dtype, scaler = mixed_precision(device, enabled, cpu)
    name = {None: "fp32", torch.bfloat16: "bf16 autocast", torch.float16: "fp16 autocast"}[dtype]
    if device.type == "cpu":
        why = cpu_bf16()[1] if cpu else f"{setting} is off"
    else:
        why = "amp is off" if not enabled else ("no bf16 on this GPU, loss scaling"
                                                if scaler is not None else "GPU has bf16")
    return f"{device.type}: {name} ({why})"


def mixed_precision(device: torch.device, enabled: bool, cpu: bool = False):
    """(autocast dtype, grad scaler) for mixed precision: bf16 where the GPU has it, else fp16 + scaler; on the
    CPU (`cpu`) bf16 where oneDNN runs it natively (AVX512-BF16, AMX; `cpu_bf16`), else none."""
    if device.type == "cpu":
        return (torch.bfloat16, None) if cpu and cpu_bf16()[0] else (None, None)
    if not enabled or device.type != "cuda":
        return None, None
    if torch.cuda.is_bf16_supported():
        return torch.bfloat16, None
    return torch.float16, torch.amp.GradScaler("cuda")
