"""Figures of the data: sample grids, latent walks, augmented copies, data sets side by side,
and the synthetic sets' quality (closest pairs, distance vs usefulness). Matplotlib,
headless (Agg)."""
from __future__ import annotations

from pathlib import Path

import numpy as np


def _plt():
    # in each figures module: they stand alone, and a stage lists as deps only those it uses
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


GAP = 3  # pixels between the cells of a mosaic (at the images' own resolution)
ORANGE = (255, 127, 14)  # matplotlib's tab:orange


def _tile(cells: list[list[np.ndarray | None]], frame_col: int | None = None) -> np.ndarray:
    """Rows of uint8 H x W x C images (None: an empty cell, only at a row's end) as one RGB
    picture on a white ground with a GAP-pixel border (`_mosaic`); `frame_col`'s cells get
    an orange frame in their gap. One imshow of this draws hundreds of images in a fraction
    of a second (one matplotlib axes per image took ~6 s per figure)."""
    flat = [np.asarray(im) for row in cells for im in row if im is not None]
    rows, n = [], 0
    for row in cells:
        k = sum(im is not None for im in row)
        rows.append(list(range(n, n + k)))
        n += k
    h, w = flat[0].shape[:2]
    inner = _mosaic(np.stack(flat), rows, max(len(r) for r in cells), GAP, rgb=True)
    out = np.pad(inner, ((GAP, GAP), (GAP, GAP), (0, 0)), constant_values=255)
    if frame_col is not None:
        x = GAP + frame_col * (w + GAP)
        for i in range(len(cells)):
            y = GAP + i * (h + GAP)
            ring = out[y - 2:y + h + 2, x - 2:x + w + 2]
            ring[:2], ring[-2:], ring[:, :2], ring[:, -2:] = ORANGE, ORANGE, ORANGE, ORANGE
    return out


def _draw(mosaic: np.ndarray, cell: tuple[int, int], row_names: list[str], path: Path,
          title: str, col_names: list[str] | None = None) -> None:
    """The mosaic at 0.7 inch per cell, row names on the left, column names on top, a title."""
    plt = _plt()
    h, w = cell
    r, s = (mosaic.shape[0] - GAP) // (h + GAP), (mosaic.shape[1] - GAP) // (w + GAP)
    top = 0.45 + (0.2 if col_names else 0)  # inches
    width, height = s * 0.7 + 0.8, r * 0.7 + top + 0.1
    fig = plt.figure(figsize=(width, height))
    ax = fig.add_axes((0.7 / width, 0.1 / height, s * 0.7 / width, r * 0.7 / height))
    ax.imshow(mosaic, interpolation="nearest", aspect="auto")
    ax.set_yticks([GAP + i * (h + GAP) + h / 2 for i in range(r)], row_names, fontsize=8)
    if col_names:
        ax.xaxis.tick_top()
        ax.set_xticks([GAP + j * (w + GAP) + w / 2 for j in range(len(col_names))], col_names,
                      fontsize=7)
    else:
        ax.set_xticks([])
    ax.tick_params(length=0)
    for spine in ax.spines.values():
        spine.set_visible(False)
    fig.suptitle(title, fontsize=10, y=1 - 0.12 / height)
    fig.savefig(path, dpi=90, metadata={"Software": None})  # no version stamp: byte-stable
    plt.close(fig)


def sample_grid(images: np.ndarray, labels: np.ndarray, class_names: list[str], path: Path,
                per_class: int = 10, seed: int = 0, title: str = "") -> None:
    """One row per class, `per_class` random images each (uint8 N x H x W x C)."""
    rng = np.random.default_rng(seed)
    if not len(labels):
        images = np.zeros((1, 8, 8, 1), np.uint8)  # nothing to show: one blank cell
    rows = []
    for row in range(len(class_names)):
        idx = np.flatnonzero(labels == row)
        pick = rng.choice(idx, size=min(per_class, len(idx)), replace=False) if len(idx) else []
        rows.append([images[i] for i in pick] + [None] * (per_class - len(pick)))
    if not any(c is not None for row in rows for c in row):  # no image at all: one blank
        rows[0][0] = np.zeros_like(np.asarray(images[0]))
    _draw(_tile(rows), np.asarray(images[0]).shape[:2], list(class_names), path, title)


def interpolation_strip(rows: np.ndarray, row_names: list[str], path: Path, title: str = "") -> None:
    """R rows of S images each (uint8 R x S x H x W x C), e.g. a latent walk per class or
    interpolation strips; each row is read left to right."""
    _draw(_tile([list(row) for row in rows]), rows.shape[2:4], row_names, path, title)


def augment_grid(originals: np.ndarray, copies: np.ndarray, row_names: list[str], path: Path,
                 title: str = "") -> None:
    """One row per original: the original (framed) then its augmented copies.
    originals: uint8 N x H x W x C; copies: N x K x H x W x C."""
    k = copies.shape[1]
    cells = [[originals[i], *copies[i]] for i in range(len(row_names))]
    _draw(_tile(cells, frame_col=0), np.asarray(originals[0]).shape[:2], row_names, path, title,
          ["original", *(f"copy {c}" for c in range(1, k + 1))])


def closest_pairs(fake: np.ndarray, train: np.ndarray, dist: np.ndarray, idx: np.ndarray,
                  path: Path, n: int = 16, title: str = "") -> None:
    """The `n` synthetic images closest to a training image (top row, distance above) over
    that training image (bottom row). fake/train: uint8 N x H x W x C; dist/idx: from
    pipeline.quality.nearest_train."""
    plt = _plt()
    order = np.argsort(np.asarray(dist), kind="stable")[:n]
    cols = max(1, len(order))
    fig, axes = plt.subplots(2, cols, figsize=(cols * 0.9 + 0.6, 2.6), squeeze=False)
    for col in range(cols):
        for row in range(2):
            ax = axes[row, col]
            ax.set_xticks([])
            ax.set_yticks([])
            if col >= len(order):
                ax.set_axis_off()
                continue
            i = order[col]
            im = np.asarray(fake[i] if row == 0 else train[idx[i]])
            ax.imshow(im[..., 0] if im.shape[-1] == 1 else im, cmap="gray", vmin=0, vmax=255)
        if col < len(order):
            axes[0, col].set_title(f"{dist[order[col]]:.3f}", fontsize=7)
    axes[0, 0].set_ylabel("synthetic", fontsize=7)
    axes[1, 0].set_ylabel("train", fontsize=7)
    fig.suptitle(title or "closest synthetic / training pairs (RMS distance)", fontsize=9)
    fig.tight_layout(pad=0.3)
    fig.savefig(path, dpi=90, metadata={"Software": None})
    plt.close(fig)


def quality_scatter(rows: list[dict], path: Path) -> None:
    """FID-domain (x) against CAS (y; judge agreement when no row has CAS), one labelled point
    per set; reference rows (kind == "reference") are red stars."""
    plt = _plt()
    y_key = "cas" if any(r.get("cas") is not None for r in rows) else "judge_accuracy"
    fig, ax = plt.subplots(figsize=(8, 4.2))
    number = 0
    for r in rows:
        x, y = r.get("fid_domain"), r.get(y_key)
        if x is None or y is None:
            continue
        if r.get("kind") == "reference":
            ax.scatter([x], [y], s=90, marker="*", color="tab:red", zorder=3)
            ax.annotate(r["name"], (x, y), textcoords="offset points", xytext=(5, 4), fontsize=8,
                        fontweight="bold")
            continue
        # sets crowd together: a number at the point, the name in the legend
        number += 1
        ax.scatter([x], [y], s=40, zorder=3, label=f"{number}  {r['name']}")
        ax.annotate(str(number), (x, y), textcoords="offset points", xytext=(4, 3), fontsize=8)
    if number:
        ax.legend(loc="center left", bbox_to_anchor=(1.02, 0.5), fontsize=8, frameon=False)
    ax.set_xscale("symlog", linthresh=1.0)
    ax.set(xlabel="FID-domain (judge features, lower is better)",
           ylabel="CAS (real test accuracy)" if y_key == "cas" else "judge agreement",
           title="distribution distance vs usefulness")
    ax.grid(alpha=0.3)
    fig.tight_layout()
    fig.savefig(path, dpi=110, metadata={"Software": None})
    plt.close(fig)


def _mosaic(images: np.ndarray, rows: list[list[int]], cols: int, pad: int = 2,
            rgb: bool = False) -> np.ndarray:
    """Tile images[rows[r][c]] into one uint8 array (rows x cols cells, `pad` white pixels
    between cells; missing cells stay white). Gray images become RGB when `rgb`."""
    h, w, c = images.shape[1:]
    out = np.full((len(rows) * (h + pad) - pad, cols * (w + pad) - pad, 3 if rgb else 1), 255,
                  dtype=np.uint8)
    for r, idx in enumerate(rows):
        for col, i in enumerate(idx[:cols]):
            im = np.asarray(images[i])
            if rgb and c == 1:
                im = np.repeat(im, 3, axis=-1)
            out[r * (h + pad):r * (h + pad) + h, col * (w + pad):col * (w + pad) + w] = im
    return out


def sample_panels(panels: list[dict], class_names: list[str], path: Path, per_class: int = 6,
                  seed: int = 0, max_classes: int = 10, panels_per_row: int = 4,
                  title: str = "") -> None:
    """Data sets side by side, one panel each: one row per class (the first `max_classes` of
    `class_names`, matched by name in each set), `per_class` random images per row (seeded;
    the same seed for every panel). panels: dicts with `title`, `images` (uint8 N x H x W x C,
    may be memory-mapped), `labels` and `class_names`, optional `subtitle`. Panels wrap into
    rows of at most `panels_per_row`."""
    plt = _plt()
    shown = list(class_names)[:max_classes]
    n = len(panels)
    per_row = min(n, -(-n // -(-n // panels_per_row)))  # balanced: 9 panels -> 3 rows of 3
    grid_rows = -(-n // per_row)
    rgb = any(pnl["images"].shape[-1] == 3 for pnl in panels)
    cell = 0.36  # inches per image
    label_w = max(0.3, 0.058 * max(len(c) for c in shown) + 0.15)  # class names, left
    panel_w, gap = per_class * cell, 0.25
    title_h = 0.42  # two title lines per panel
    panel_h = len(shown) * cell
    top = 0.35 if title else 0.1
    width = per_row * (label_w + panel_w) + (per_row - 1) * gap + 0.2
    height = top + grid_rows * (title_h + panel_h) + (grid_rows - 1) * 0.15 + 0.15
    fig = plt.figure(figsize=(width, height))
    for k, pnl in enumerate(panels):
        r, c = divmod(k, per_row)
        x0 = 0.05 + c * (label_w + panel_w + gap) + label_w
        y0 = height - top - r * (title_h + panel_h + 0.15) - title_h - panel_h
        ax = fig.add_axes((x0 / width, y0 / height, panel_w / width, panel_h / height))
        rng = np.random.default_rng(seed)
        labels = np.asarray(pnl["labels"])
        names = list(pnl["class_names"])
        rows = []
        for name in shown:
            idx = np.flatnonzero(labels == names.index(name)) if name in names else np.array([], int)
            pick = rng.choice(idx, size=min(per_class, len(idx)), replace=False) if len(idx) else []
            rows.append(sorted(int(i) for i in pick))  # sorted: memory-mapped reads in order
        mosaic = _mosaic(pnl["images"], rows, per_class, rgb=rgb)
        ax.imshow(mosaic if rgb else mosaic[..., 0], cmap=None if rgb else "gray", vmin=0,
                  vmax=255, interpolation="nearest" if pnl["images"].shape[1] <= 64 else "antialiased",
                  aspect="auto")
        h = pnl["images"].shape[1] + 2
        ax.set_xticks([])
        ax.set_yticks([i * h + (h - 2) / 2 for i in range(len(shown))], shown, fontsize=7)
        ax.tick_params(length=0, pad=2)
        for s in ax.spines.values():
            s.set_visible(False)
        ax.set_title(pnl["title"] + (f"\n{pnl['subtitle']}" if pnl.get("subtitle") else ""),
                     fontsize=7.5, pad=3, loc="left")
    if title:
        fig.suptitle(title, fontsize=10, y=1 - 0.12 / height, va="top")
    fig.savefig(path, dpi=90, metadata={"Software": None})  # byte-stable
    plt.close(fig)
