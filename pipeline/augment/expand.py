"""Running an augmentation spec over many images: offline expansion and online batches.

Both cut the work into fixed pieces whose RNG seed depends only on (seed, piece) -- offline a
chunk of CHUNK parent images, online one mini-batch of one epoch -- and re-seed the augmenter
at the start of each piece. The output is therefore byte-identical whatever the number of
processes, and re-seeding once per piece (not per image) keeps its cost below 1%.
"""
from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass

import numpy as np

from synthaug.pipeline.augment.classic import Augmenter, build_augmenter
from synthaug.pipeline.core.pool import fork_context, helper_workers, imap, usable_cores

CHUNK = 32  # parent images per offline piece


def piece_seed(*keys: int) -> int:
    return int(np.random.SeedSequence([int(k) for k in keys]).generate_state(1)[0])


@dataclass
class Expansion:
    images: np.ndarray  # uint8 (N * copies) x H x W x C, parent-major
    labels: np.ndarray
    parents: np.ndarray  # index of each copy's parent in the input
    copies: np.ndarray  # 0..copies-1
    seeds: np.ndarray  # the seed of the piece each copy was drawn in


def _chunk_state(images, spec, shape, copies, seed) -> dict:
    """A worker's state (pipeline.core.pool): input images, augmenter, settings."""
    return dict(images=images, aug=build_augmenter(spec, shape), copies=copies, seed=seed)


def _run_chunk(state: dict, chunk: int) -> tuple[np.ndarray, int]:
    images, aug, copies = state["images"], state["aug"], state["copies"]
    seed = piece_seed(state["seed"], chunk)
    aug.reseed(seed)
    part = images[chunk * CHUNK:(chunk + 1) * CHUNK]
    out = np.empty((len(part) * copies, *images.shape[1:]), dtype=np.uint8)
    for i, image in enumerate(part):
        for k in range(copies):
            out[i * copies + k] = aug(image)
    return out, seed


def expand(images: np.ndarray, labels: np.ndarray, spec: str | list, copies: int, seed: int,
           workers: int = 0, progress: bool = True) -> Expansion:
    """`copies` augmented copies of every image, spread over `workers` processes (0 = all
    cores; 1 = this process). The spec is validated here, before any work starts."""
    n, h, w, c = images.shape
    shape = (c, h, w)
    aug = build_augmenter(spec, shape)  # fail fast with the spec's own error, in this process
    # torchvision policies (randaugment, trivialaugment) run torch ops: a forked worker runs
    # them on one thread, else it can hang on the OpenMP thread pool the parent had in use
    # (GNU OpenMP does not survive fork), as after the classic choice's fits
    torch_ops = any(kind == "torchvision" for kind, _ in aug.steps)
    workers = workers or usable_cores()
    chunks = range((n + CHUNK - 1) // CHUNK)
    out = np.empty((n * copies, h, w, c), dtype=np.uint8)
    seeds = np.empty(n * copies, dtype=np.int64)
    from tqdm.auto import tqdm

    bar = tqdm(total=n * copies, unit="img", desc="augment", disable=None if progress else True)
    args = (images, spec, shape, copies, seed)
    try:  # the one worker pool: forked one-thread processes share `images` for free
        for chunk, (part, piece) in imap(_chunk_state, args, _run_chunk, list(chunks), workers,
                                         threads=1, torch_threads=torch_ops):
            start = chunk * CHUNK * copies
            out[start:start + len(part)] = part
            seeds[start:start + len(part)] = piece
            bar.update(len(part))
    finally:
        bar.close()
    return Expansion(out, np.repeat(np.asarray(labels), copies), np.repeat(np.arange(n), copies),
                     np.tile(np.arange(copies), n), seeds)


class _EpochBatches:
    """Map-style data set whose items are whole mini-batches of one epoch (a DataLoader with
    batch_size=None hands them out): worker count never changes what a batch holds."""

    def __init__(self, images, labels, spec, seed, epoch, order, batch_size):
        self.images, self.labels, self.spec = images, labels, spec
        self.seed, self.epoch, self.order, self.batch_size = seed, epoch, order, batch_size
        self.aug: Augmenter | None = None

    def __len__(self) -> int:
        return (len(self.order) + self.batch_size - 1) // self.batch_size

    def __getitem__(self, b: int):
        import torch

        if self.aug is None:  # built lazily: once per worker process
            _, h, w, c = self.images.shape
            self.aug = build_augmenter(self.spec, (c, h, w))
        self.aug.reseed(piece_seed(self.seed, self.epoch, b))
        idx = self.order[b * self.batch_size:(b + 1) * self.batch_size]
        batch = np.stack([self.aug(self.images[i]) for i in idx])
        x = torch.from_numpy(batch).permute(0, 3, 1, 2).contiguous()
        return x, torch.as_tensor(self.labels[idx])


class OnlineAugment:
    """Fresh augmented copies of the training images every epoch, for `training.fit`."""

    def __init__(self, images: np.ndarray, labels: np.ndarray, spec: str | list, seed: int,
                 workers: int | None = None):
        _, h, w, c = images.shape
        self.augmenter = build_augmenter(spec, (c, h, w), where="train.online_augment")
        self.images, self.labels = np.ascontiguousarray(images), np.asarray(labels)
        self.spec, self.seed = spec, seed
        self.workers = helper_workers() if workers is None else workers

    def batches(self, order, batch_size: int, epoch: int, device) -> Iterator:
        """(float [0,1] images on `device`, labels) batches in `order` for this epoch."""
        import torch
        from torch.utils.data import DataLoader

        ds = _EpochBatches(self.images, self.labels, self.spec, self.seed, epoch,
                           np.asarray(order.cpu()), batch_size)
        ds.aug = self.augmenter
        if self.workers > 0:
            loader = DataLoader(ds, batch_size=None, shuffle=False, num_workers=self.workers,
                                multiprocessing_context=fork_context(), worker_init_fn=_worker_init,
                                prefetch_factor=4,
                                # its own generator: the DataLoader draws worker seeds from it,
                                # not from the global RNG that dropout uses
                                generator=torch.Generator().manual_seed(self.seed))
        else:
            loader = (ds[b] for b in range(len(ds)))
        for x, y in loader:
            yield x.to(device, non_blocking=True).float().div_(255), y.to(device)


def _worker_init(_: int) -> None:
    """One torch thread per loader worker: the parallelism is the processes."""
    import torch

    torch.set_num_threads(1)


def preview_pick(labels: np.ndarray, per_class: int = 2) -> np.ndarray:
    """Indices of the first `per_class` images of every class, class by class."""
    labels = np.asarray(labels)
    return np.concatenate([np.flatnonzero(labels == k)[:per_class] for k in np.unique(labels)])
