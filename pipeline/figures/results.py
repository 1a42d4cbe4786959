"""Figures of training and results: learning curves, confusion matrices, the paired
differences (forest plot), sweeps. Matplotlib, headless (Agg)."""
from __future__ import annotations

from pathlib import Path

import numpy as np


def _plt():
    # in each figures module: they stand alone, and a stage lists as deps only those it uses
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


def not_drawn(path: Path, what: str, why: str) -> None:
    """A small figure that says `what` is not drawn and `why`: a figure the pipeline registers
    (dvc.yaml's plots) exists whatever the params, so `dvc plots show` never falls back to a
    data plot (and the network)."""
    import textwrap

    plt = _plt()
    fig, ax = plt.subplots(figsize=(6.4, 1.6))
    ax.axis("off")
    ax.text(0.5, 0.5, f"{what}: not drawn\n" + textwrap.fill(why, 70), ha="center",
            va="center", fontsize=10, color="0.3", transform=ax.transAxes)
    fig.savefig(path, dpi=110, metadata={"Software": None})
    plt.close(fig)


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


def difference_forest(rows: list[dict], path: Path, baseline: str = "real", title: str = "",
                      each: str = "seed") -> None:
    """A forest plot per model: each variant's paired difference to `baseline` (points) with
    its 95% CI, the seeds' own differences as dots and, shaded around 0, the band of +-MDE
    (the smallest difference the design detects with 80% power): an interval inside its band
    decides nothing. Filled markers: significant (p < 0.05). rows: variant, model, values,
    seeds and, off the baseline, vs_real (mean_diff, low, high, significant, mde)."""
    plt = _plt()
    models = list(dict.fromkeys(r["model"] for r in rows))
    variants = [v for v in dict.fromkeys(r["variant"] for r in rows) if v != baseline]
    base = {(r["model"], sd): x for r in rows if r["variant"] == baseline
            for sd, x in zip(r["seeds"], r["values"], strict=True)}
    height = max(2.6, 0.9 + 0.42 * len(variants))
    fig, axes = plt.subplots(1, len(models), figsize=(4.6 * len(models) + 1.4, height),
                             sharey=True, squeeze=False)
    for ax, model in zip(axes[0], models, strict=True):
        span = [0.0]  # each panel its own symmetric x range: models' spreads differ
        for y, variant in enumerate(variants):
            r = next((r for r in rows if r["variant"] == variant and r["model"] == model), None)
            vs = (r or {}).get("vs_real")
            if vs is None:
                ax.text(0, y, "no paired result", ha="center", va="center", fontsize=7, color="gray")
                continue
            mde = vs.get("mde")
            if mde is not None:
                ax.add_patch(plt.Rectangle((-100 * mde, y - 0.32), 200 * mde, 0.64,
                                           color="0.85", lw=0, zorder=0))
                span.append(100 * mde)
            d, lo, hi = 100 * vs["mean_diff"], 100 * vs["low"], 100 * vs["high"]
            colour = ("tab:green" if vs["significant"] and d > 0 else
                      "tab:red" if vs["significant"] else "0.25")
            ax.plot([lo, hi], [y, y], color=colour, lw=1.6, zorder=2)
            ax.plot(d, y, "o", color=colour, ms=6, zorder=3,
                    mfc=colour if vs["significant"] else "white")
            seeds = [100 * (x - base[(model, sd)]) for sd, x in zip(r["seeds"], r["values"], strict=True)
                     if (model, sd) in base]
            ax.scatter(seeds, [y + 0.2] * len(seeds), s=6, color=colour, alpha=0.6, zorder=3)
            span += [abs(lo), abs(hi), *map(abs, seeds)]
        ax.axvline(0, color="black", lw=0.8)
        ax.set_title(model, fontsize=10)
        ax.set_xlabel(f"difference to {baseline}, points of test accuracy")
        ax.grid(axis="x", alpha=0.3)
        lim = 1.1 * max(span) if max(span) > 0 else 1.0
        ax.set_xlim(-lim, lim)
    axes[0][0].set_yticks(range(len(variants)), variants)
    axes[0][0].set_ylim(len(variants) - 0.5, -0.5)  # the first variant on top
    from matplotlib.lines import Line2D
    from matplotlib.patches import Patch

    handles = [Line2D([], [], color="0.25", marker="o", mfc="white", lw=1.6,
                      label="mean, 95% CI (open: not significant)"),
               Line2D([], [], color="tab:green", marker="o", lw=1.6, label="significant gain"),
               Line2D([], [], color="tab:red", marker="o", lw=1.6, label="significant loss"),
               Line2D([], [], color="0.25", marker=".", lw=0, label=f"each {each}"),
               Patch(color="0.85", label="+-MDE (80% power)")]
    fig.legend(handles=handles, loc="lower center", ncol=len(handles), fontsize=7,
               frameon=False, bbox_to_anchor=(0.5, 0.0))
    fig.suptitle(title or f"paired difference to {baseline} over seeds: 95% CI and the "
                          "minimum detectable effect", fontsize=10)
    fig.tight_layout(rect=(0, 0.07, 1, 1))
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


def sweep_plot(points: dict[str, dict[float, list[float]]], path: Path, xlabel: str,
               title: str = "", xscale: str = "log", marks: dict[float, str] | None = None,
               dashed: frozenset[str] | set[str] = frozenset()) -> None:
    """Test accuracy against a swept amount, one line per model: the mean over seeds, the
    seeds' range shaded (min-max: with two or three seeds a t interval would fill the plot)
    and each seed as a dot. points: model -> {x value: [accuracy per seed]}. xscale: log, or
    symlog (for an x of 0). marks: x value -> a note at the foot of the axis (e.g. "study").
    dashed: lines drawn dashed (the when figure: those that also see unlabelled images)."""
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
        n, least = max(len(pts[x]) for x in xs), min(len(pts[x]) for x in xs)
        seeds = f"{least}-{n}" if least < n else f"{n}"
        ax.plot(xs, [float(np.mean(pts[x])) for x in xs], "o--" if model in dashed else "o-",
                color=color, lw=1.6, ms=4,
                label=f"{model} ({seeds} seed{'s' if n > 1 else ''})")
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
