"""bench/prepare_folder: peak memory and images/s of preparing a big `folder:` source, streaming
(memory-mapped, chunked: the prepare stage) vs the old in-memory way (a list of decoded images,
np.stack, whole-array splits), each in its own subprocess, in one run, printed as a ratio.

    .venv/bin/python bench/prepare_folder.py [--images 50000] [--size 64] [--workers 0]
    .venv/bin/python bench/prepare_folder.py --tiny   # 300 16x16 images (CI)

Writes N coloured MNIST-5k digits as size x size RGB PNGs into a temporary folder (a process
pool), then prepares them both ways (prepare.size = --size, channels 3, every image split) and
checks both wrote the same bytes. Peak RSS is the child's own VmHWM; "at start" is its RSS
after the imports, before any work. Bar (issue 7): the streaming peak grows above the start by
less than a quarter of the decoded data's size in bytes.
"""
from __future__ import annotations

import argparse
import filecmp
import json
import multiprocessing
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

from _common import add_tiny, machine, ratio

_DIGITS: tuple[np.ndarray, np.ndarray] | None = None  # (size x size gray digits, labels)


def _init(gray: np.ndarray, labels: np.ndarray, size: int) -> None:
    """Per PNG-writing process: the 5,000 digits, resized once, the classes taking turns (the
    source's rows are sorted by label: a few hundred images still cover every class)."""
    from PIL import Image

    global _DIGITS
    rank = np.empty(len(labels), np.int64)  # each image's place within its class
    for c in np.unique(labels):
        rank[labels == c] = np.arange(np.count_nonzero(labels == c))
    order = np.lexsort((labels, rank))
    big = np.stack([np.asarray(Image.fromarray(g).resize((size, size))) for g in gray[order]])
    _DIGITS = big, labels[order]


def _write_pngs(job: tuple[Path, int, int]) -> None:
    """Images start..stop-1: digit i % 5000 in colours drawn per image (so all distinct),
    seeded by `start`, so the folder is the same whatever the number of processes."""
    from PIL import Image

    root, start, stop = job
    gray, labels = _DIGITS
    rng = np.random.default_rng(start)
    fgs, bgs = rng.integers(128, 256, (stop - start, 3)), rng.integers(0, 96, (stop - start, 3))
    ramp = np.arange(256)[:, None] / 255
    for i, fg, bg in zip(range(start, stop), fgs, bgs):
        lut = (bg + (fg - bg) * ramp).astype(np.uint8)  # gray value -> RGB, 256 x 3
        Image.fromarray(lut[gray[i % len(gray)]]).save(
            root / str(labels[i % len(gray)]) / f"{i:06d}.png", compress_level=1)


def make_folder(root: Path, n: int, size: int, workers: int) -> None:
    from synthaug.pipeline.data.config import PrepareConfig
    from synthaug.pipeline.data.sources import load_source

    src = load_source(PrepareConfig(), "unused", progress=False)
    for c in src.class_names:
        (root / c).mkdir(parents=True)
    jobs = [(root, s, min(n, s + 1000)) for s in range(0, n, 1000)]
    with multiprocessing.Pool(workers, _init, (src.images[..., 0], src.labels, size)) as pool:
        pool.map(_write_pngs, jobs)


def _rss_now_mb(field: str = "VmRSS") -> float:
    """This process's RSS (VmRSS) or peak RSS (VmHWM) in MB. VmHWM, unlike ru_maxrss, starts
    afresh at exec: ru_maxrss carries over the parent's peak at fork (a parent that has
    imported torch would lend the child its ~600 MB)."""
    status = Path("/proc/self/status").read_text()
    return int(status.split(f"{field}:")[1].split()[0]) / 1024


def worker(kind: str, folder: Path, out: Path, size: int) -> None:
    """One prepare of `folder` into `out`; prints a JSON line of what it measured."""
    from synthaug.pipeline.data.config import PrepareConfig
    from synthaug.pipeline.data.prepare import SPLITS, prepare_splits, split_meta
    from synthaug.pipeline.data.sources import (SKIPPED, RawSource, class_files, load_source,
                                                read_image)
    from synthaug.pipeline.core.outputs import atomic_output
    from synthaug.pipeline.data.storage import write_dataset
    import sklearn.model_selection  # noqa: F401  (both ways import it: counted "at start")
    import tqdm  # noqa: F401

    cfg = PrepareConfig(source=f"folder:{folder}", channels=3, size=size, train_per_class=None)
    start_mb = _rss_now_mb()
    t0 = time.perf_counter()
    with atomic_output(out) as tmp:
        if kind == "streaming":  # what `synthaug prepare` does
            src = load_source(cfg, "unused", progress=False, scratch=tmp)
            splits = prepare_splits(src, cfg)
            for name in SPLITS:
                s = splits[name]
                (tmp / name).mkdir()
                write_dataset(tmp / name, s.source, s.labels, src.class_names, s.provenance,
                              split_meta(src, cfg, splits, name), rows=s.rows)
        else:  # the old way: decode into a list, np.stack, splits as whole arrays
            classes = sorted(p for p in folder.iterdir() if p.is_dir())
            seen, skipped = set(), {k: [] for k in SKIPPED}
            files = [(i, f) for i, c in enumerate(classes) for f in class_files(c, seen, skipped)]
            images = [read_image(f, cfg) for _, f in files]
            src = RawSource(np.stack(images), np.array([i for i, _ in files], np.int64),
                            [c.name for c in classes],
                            [f.relative_to(folder).as_posix() for _, f in files])
            del images
            splits = prepare_splits(src, cfg)
            held = {name: splits[name].images for name in SPLITS}  # as the old Split held them
            for name in SPLITS:
                s = splits[name]
                (tmp / name).mkdir()
                write_dataset(tmp / name, held[name], s.labels, src.class_names, s.provenance,
                              split_meta(src, cfg, splits, name))
    seconds = time.perf_counter() - t0
    peak_mb = _rss_now_mb("VmHWM")
    print(json.dumps({"images": len(src.labels), "seconds": seconds, "peak_mb": peak_mb,
                      "start_mb": start_mb}))


def run_worker(kind: str, folder: Path, out: Path, size: int) -> dict:
    cmd = [sys.executable, __file__, "--worker", kind, "--folder", str(folder), "--out", str(out),
           "--size", str(size)]
    done = subprocess.run(cmd, capture_output=True, text=True)
    if done.returncode:
        sys.exit(f"the {kind} prepare failed:\n{done.stderr}")
    return json.loads(done.stdout.strip().splitlines()[-1])


def same_files(a: Path, b: Path) -> bool:
    names = sorted(p.relative_to(a) for p in a.rglob("*") if p.is_file())
    return names == sorted(p.relative_to(b) for p in b.rglob("*") if p.is_file()) and all(
        filecmp.cmp(a / n, b / n, shallow=False) for n in names)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--images", type=int, default=50_000)
    ap.add_argument("--size", type=int, default=64, help="prepare.size (images are RGB)")
    ap.add_argument("--workers", type=int, default=0, help="PNG writers (0: one per core)")
    ap.add_argument("--dir", type=Path, default=None, help="where the temporary folder goes")
    ap.add_argument("--worker", choices=["streaming", "in-memory"], help=argparse.SUPPRESS)
    ap.add_argument("--folder", type=Path, help=argparse.SUPPRESS)
    ap.add_argument("--out", type=Path, help=argparse.SUPPRESS)
    add_tiny(ap)
    args = ap.parse_args()
    if args.worker:
        return worker(args.worker, args.folder, args.out, args.size)
    if args.tiny:
        args.images, args.size = 300, 16

    from synthaug.pipeline.core.pool import usable_cores

    print(machine())

    work = Path(tempfile.mkdtemp(prefix="bench-prepare-", dir=args.dir))
    try:
        t0 = time.perf_counter()
        make_folder(work / "images", args.images, args.size, args.workers or usable_cores())
        data_mb = args.images * args.size * args.size * 3 / 1e6
        print(f"wrote {args.images:,} {args.size}x{args.size} RGB PNGs in "
              f"{time.perf_counter() - t0:.1f} s; decoded data {data_mb:,.1f} MB")
        res = {kind: run_worker(kind, work / "images", work / kind, args.size)
               for kind in ("streaming", "in-memory")}
        identical = same_files(work / "streaming", work / "in-memory")
    finally:
        shutil.rmtree(work, ignore_errors=True)
    s, m = res["streaming"], res["in-memory"]
    for name, r in (("streaming", s), ("in-memory baseline", m)):
        print(f"{name}: {r['images']:,} images, {r['images'] / r['seconds']:,.0f} img/s "
              f"({r['seconds']:.1f} s), peak RSS {r['peak_mb']:,.0f} MB "
              f"(at start {r['start_mb']:,.0f} MB; data {data_mb:,.0f} MB)")
    print(f"outputs byte-identical: {'yes' if identical else 'NO'}")
    grew = s["peak_mb"] - s["start_mb"]
    verdict = "not checked (--tiny)" if args.tiny else "PASS" if grew < data_mb / 4 else "FAIL"
    print(f"bar: streaming peak RSS above its start < data / 4 ({data_mb / 4:,.0f} MB): "
          f"{grew:,.0f} MB {verdict}")
    above = (m["peak_mb"] - m["start_mb"]) / max(grew, 1e-3)
    speed = (s["images"] / s["seconds"]) / (m["images"] / m["seconds"])
    ratio(f"{m['peak_mb'] / s['peak_mb']:.1f}x peak RSS of the in-memory way / streaming "
          f"({above:.1f}x above the start); streaming img/s {speed:.2f}x the in-memory way's")
    if not identical:
        sys.exit("the two ways wrote different files")


if __name__ == "__main__":
    main()
