"""Figures people would rather look at than read. Matplotlib, headless (Agg)."""
from __future__ import annotations

from pathlib import Path

import numpy as np


def _plt():
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


def learning_curves(history: list[dict], path: Path, title: str = "", best_epoch: int | None = None) -> None:
    plt = _plt()
    ep = [h["epoch"] for h in history]
    fig, (a, b) = plt.subplots(1, 2, figsize=(10, 3.8))
    a.plot(ep, [h["train_loss"] for h in history], "o-", label="train")
    a.plot(ep, [h["val_loss"] for h in history], "o-", label="val")
    a.set(xlabel="epoch", ylabel="cross-entropy loss", title="loss")
    b.plot(ep, [h["train_accuracy"] for h in history], "o-", label="train")
    b.plot(ep, [h["val_accuracy"] for h in history], "o-", label="val")
    b.set(xlabel="epoch", ylabel="accuracy", title="accuracy")
    for ax in (a, b):
        if best_epoch:
            ax.axvline(best_epoch, color="gray", ls="--", lw=1, label=f"best (epoch {best_epoch})")
        ax.grid(alpha=0.3)
        ax.legend()
    fig.suptitle(title)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


def confusion_matrix_png(cm: list[list[int]], class_names: list[str], path: Path,
                         title: str = "") -> None:
    plt = _plt()
    cm = np.asarray(cm)
    k = len(class_names)
    size = min(14, 2.5 + 0.45 * k)
    fig, ax = plt.subplots(figsize=(size + 1, size))
    rows = cm.sum(1, keepdims=True).clip(min=1)
    im = ax.imshow(cm / rows, cmap="Blues", vmin=0, vmax=1)
    fig.colorbar(im, ax=ax, fraction=0.046, label="fraction of true class")
    if k <= 30:
        for i in range(k):
            for j in range(k):
                if cm[i, j]:
                    ax.text(j, i, str(cm[i, j]), ha="center", va="center", fontsize=8,
                            color="white" if cm[i, j] / rows[i, 0] > 0.5 else "black")
        ax.set_xticks(range(k), class_names, rotation=90 if k > 10 else 0)
        ax.set_yticks(range(k), class_names)
    ax.set(xlabel="predicted", ylabel="true", title=title)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


def sample_grid(images: np.ndarray, labels: np.ndarray, class_names: list[str], path: Path,
                per_class: int = 10, seed: int = 0, title: str = "") -> None:
    """One row per class, `per_class` random images each (uint8 N x H x W x C)."""
    plt = _plt()
    rng = np.random.default_rng(seed)
    k = len(class_names)
    height = k * 0.7 + 0.7  # inches; the last 0.4 hold the title
    fig, axes = plt.subplots(k, per_class, figsize=(per_class * 0.7 + 1, height), squeeze=False)
    for row, name in enumerate(class_names):
        idx = np.flatnonzero(labels == row)
        pick = rng.choice(idx, size=min(per_class, len(idx)), replace=False) if len(idx) else []
        for col in range(per_class):
            ax = axes[row, col]
            ax.set_xticks([])
            ax.set_yticks([])
            for s in ax.spines.values():
                s.set_visible(False)
            if col < len(pick):
                im = np.asarray(images[pick[col]])
                ax.imshow(im[..., 0] if im.shape[-1] == 1 else im, cmap="gray", vmin=0, vmax=255)
        axes[row, 0].set_ylabel(name, rotation=0, ha="right", va="center", fontsize=8)
    fig.suptitle(title, fontsize=10)
    fig.tight_layout(pad=0.3, rect=(0, 0, 1, 1 - 0.4 / height))
    fig.savefig(path, dpi=90, metadata={"Software": None})  # no version stamp: byte-stable
    plt.close(fig)


def interpolation_strip(rows: np.ndarray, row_names: list[str], path: Path, title: str = "") -> None:
    """R rows of S images each (uint8 R x S x H x W x C), e.g. a latent walk per class or
    interpolation strips; each row is read left to right."""
    plt = _plt()
    r, s = rows.shape[:2]
    # fixed margins in inches (tight_layout overlaps rows of long strips): 0.6 on the left for
    # the row names, 0.45 on top for the title, 0.7 x 0.7 per image
    width, height = s * 0.7 + 0.7, r * 0.7 + 0.55
    fig, axes = plt.subplots(r, s, figsize=(width, height), squeeze=False)
    fig.subplots_adjust(left=0.6 / width, right=1 - 0.1 / width, bottom=0.1 / height,
                        top=1 - 0.45 / height, wspace=0.06, hspace=0.06)
    for row in range(r):
        for col in range(s):
            ax = axes[row, col]
            im = rows[row, col]
            ax.imshow(im[..., 0] if im.shape[-1] == 1 else im, cmap="gray", vmin=0, vmax=255)
            ax.set_xticks([])
            ax.set_yticks([])
            for spine in ax.spines.values():
                spine.set_visible(False)
        axes[row, 0].set_ylabel(row_names[row], rotation=0, ha="right", va="center", fontsize=8)
    fig.suptitle(title, fontsize=10, y=1 - 0.12 / height)
    fig.savefig(path, dpi=90, metadata={"Software": None})  # byte-stable
    plt.close(fig)


def augment_grid(originals: np.ndarray, copies: np.ndarray, row_names: list[str], path: Path,
                 title: str = "") -> None:
    """One row per original: the original (framed) then its augmented copies.
    originals: uint8 N x H x W x C; copies: N x K x H x W x C."""
    plt = _plt()
    n, k = copies.shape[:2]
    height = n * 0.7 + 0.7
    fig, axes = plt.subplots(n, k + 1, figsize=((k + 1) * 0.7 + 1, height), squeeze=False)
    for row in range(n):
        for col in range(k + 1):
            ax = axes[row, col]
            im = originals[row] if col == 0 else copies[row, col - 1]
            ax.imshow(im[..., 0] if im.shape[-1] == 1 else im, cmap="gray", vmin=0, vmax=255)
            ax.set_xticks([])
            ax.set_yticks([])
            for s in ax.spines.values():
                s.set_visible(col == 0)
                s.set_color("tab:orange")
                s.set_linewidth(2)
        axes[row, 0].set_ylabel(row_names[row], rotation=0, ha="right", va="center", fontsize=8)
    axes[0, 0].set_title("original", fontsize=7)
    for col in range(1, k + 1):
        axes[0, col].set_title(f"copy {col}", fontsize=7)
    fig.suptitle(title, fontsize=10)
    fig.tight_layout(pad=0.3, rect=(0, 0, 1, 1 - 0.4 / height))
    fig.savefig(path, dpi=90, metadata={"Software": None})  # byte-stable
    plt.close(fig)


def accuracy_bars(rows: list[dict], path: Path, baseline: str = "real", title: str = "") -> None:
    """Bars of mean test accuracy with 95% CI whiskers, grouped by model, one bar per variant;
    the dots are the seeds. rows: variant, model, mean, low, high, values."""
    plt = _plt()
    models = list(dict.fromkeys(r["model"] for r in rows))
    variants = list(dict.fromkeys(r["variant"] for r in rows))
    width = 0.8 / len(variants)
    fig, ax = plt.subplots(figsize=(max(5.0, 1.2 + len(models) * len(variants) * 0.7) + 1.5, 3.8))
    cmap = plt.get_cmap("tab10")
    for j, variant in enumerate(variants):
        for i, model in enumerate(models):
            r = next((r for r in rows if r["variant"] == variant and r["model"] == model), None)
            if r is None:
                continue
            x = i + (j - (len(variants) - 1) / 2) * width
            ax.bar(x, r["mean"], width * 0.9, color=cmap(j % 10),
                   label=variant if i == 0 else None, alpha=0.85,
                   edgecolor="black" if variant == baseline else "none")
            ax.errorbar(x, r["mean"], yerr=[[r["mean"] - r["low"]], [r["high"] - r["mean"]]],
                        color="black", capsize=3, lw=1)
            ax.scatter([x] * len(r["values"]), r["values"], s=8, color="black", zorder=3)
    lows = [min(r["low"], *r["values"]) for r in rows]
    ax.set_ylim(max(0.0, min(lows) - 0.03), min(1.0, max(r["high"] for r in rows) + 0.02))
    ax.set_xticks(range(len(models)), models)
    ax.set_ylabel("test accuracy (real images)")
    ax.set_title(title or "mean test accuracy, 95% CI over seeds", fontsize=10)
    ax.legend(fontsize=8, loc="upper left", bbox_to_anchor=(1.01, 1), frameon=False)  # off the bars
    ax.grid(axis="y", alpha=0.3)
    fig.tight_layout()
    fig.savefig(path, dpi=110, metadata={"Software": None})
    plt.close(fig)


def curves_by_variant(histories: dict[str, list[list[dict]]], path: Path, title: str = "") -> None:
    """Validation accuracy per epoch, one line per (variant, model) mean over seeds, with the
    seeds' range shaded. Names "variant / model" get one panel per model, one colour per
    variant (the same in every panel), and the legend beside the panels."""
    plt = _plt()
    models = list(dict.fromkeys(name.rpartition(" / ")[2] for name in histories))
    variants = list(dict.fromkeys(name.rpartition(" / ")[0] or name for name in histories))
    cmap = plt.get_cmap("tab10" if len(variants) <= 10 else "tab20")
    fig, axes = plt.subplots(1, len(models), figsize=(4.2 * len(models) + 1.8, 3.6),
                             sharey=True, squeeze=False)
    for name, runs in histories.items():
        variant, _, model = name.rpartition(" / ")
        variant = variant or name
        ax = axes[0][models.index(model)]
        colour = cmap(variants.index(variant) % cmap.N)
        epochs = max(len(h) for h in runs)
        acc = np.full((len(runs), epochs), np.nan)
        for i, h in enumerate(runs):
            acc[i, :len(h)] = [row["val_accuracy"] for row in h]
        x = np.arange(1, epochs + 1)
        ax.plot(x, np.nanmean(acc, 0), label=variant, lw=1.5, color=colour)
        ax.fill_between(x, np.nanmin(acc, 0), np.nanmax(acc, 0), alpha=0.15, color=colour)
    from matplotlib.ticker import MaxNLocator

    for ax, model in zip(axes[0], models, strict=True):
        ax.set(xlabel="epoch", title=model if len(models) > 1 or model else "")
        ax.xaxis.set_major_locator(MaxNLocator(integer=True))
        ax.grid(alpha=0.3)
    axes[0][0].set_ylabel("validation accuracy")
    handles, labels = {}, []
    for ax in axes[0]:
        for h, label in zip(*ax.get_legend_handles_labels(), strict=True):
            handles.setdefault(label, h)
    labels = [v for v in variants if v in handles]
    fig.legend([handles[v] for v in labels], labels, loc="center left", bbox_to_anchor=(1.0, 0.5),
               fontsize=8, frameon=False)
    fig.suptitle(title or "learning curves", fontsize=10)
    fig.tight_layout()
    fig.savefig(path, dpi=110, metadata={"Software": None}, bbox_inches="tight")
    plt.close(fig)


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


def sweep_plot(points: dict[str, dict[float, list[float]]], path: Path, xlabel: str,
               title: str = "", xscale: str = "log", marks: dict[float, str] | None = None) -> None:
    """Test accuracy against a swept amount, one line per model: the mean over seeds, the
    seeds' range shaded (min-max: with two or three seeds a t interval would fill the plot)
    and each seed as a dot. points: model -> {x value: [accuracy per seed]}. xscale: log, or
    symlog (for an x of 0). marks: x value -> a note at the foot of the axis (e.g. "study")."""
    import textwrap

    plt = _plt()
    from matplotlib.ticker import FixedLocator, FuncFormatter, NullLocator

    fig, ax = plt.subplots(figsize=(6.4, 3.8))
    cmap = plt.get_cmap("tab10")
    xs_all = sorted({x for pts in points.values() for x in pts})
    values = [v for pts in points.values() for accs in pts.values() for v in accs]
    for j, (model, pts) in enumerate(points.items()):
        xs = sorted(pts)
        color = cmap(j % 10)
        n = max(len(pts[x]) for x in xs)
        ax.plot(xs, [float(np.mean(pts[x])) for x in xs], "o-", color=color, lw=1.6, ms=4,
                label=f"{model} ({n} seed{'s' if n > 1 else ''})")
        if n > 1:
            ax.fill_between(xs, [min(pts[x]) for x in xs], [max(pts[x]) for x in xs],
                            color=color, alpha=0.15, lw=0)
            ax.scatter([x for x in xs for _ in pts[x]], [v for x in xs for v in pts[x]], s=7,
                       color=color, alpha=0.6, zorder=3)
    if xscale == "symlog":
        positive = [x for x in xs_all if x > 0]
        ax.set_xscale("symlog", linthresh=min(positive) if positive else 1.0, linscale=0.5)
    else:
        ax.set_xscale(xscale)
    ax.xaxis.set_major_locator(FixedLocator(xs_all))
    ax.xaxis.set_major_formatter(FuncFormatter(lambda v, _: f"{v:g}"))
    ax.xaxis.set_minor_locator(NullLocator())
    if xscale == "log" and len(xs_all) > 1:  # room left and right of the outer points
        a, b = np.log10(xs_all[0]), np.log10(xs_all[-1])
        ax.set_xlim(10 ** (a - 0.06 * (b - a)), 10 ** (b + 0.06 * (b - a)))
    if values:
        span = max(values) - min(values)
        ax.set_ylim(max(0.0, min(values) - 0.1 * span - 0.005),
                    min(1.0, max(values) + 0.1 * span + 0.005))
    for x, note in (marks or {}).items():
        ax.axvline(x, color="gray", ls=":", lw=1)
        ax.annotate(note, (x, 0), xycoords=("data", "axes fraction"), xytext=(3, 4),
                    textcoords="offset points", fontsize=7, color="gray")
    ax.set(xlabel=xlabel, ylabel="test accuracy (real images)")
    ax.set_title("\n".join(textwrap.wrap(title, 70)), fontsize=10)
    ax.grid(alpha=0.3)
    ax.legend(fontsize=8, loc="upper left", bbox_to_anchor=(1.01, 1), frameon=False,
              title="mean; band: min-max\nover seeds", title_fontsize=7)
    fig.tight_layout()
    fig.savefig(path, dpi=110, metadata={"Software": None})
    plt.close(fig)
