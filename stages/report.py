"""`synthaug report`: the study's answer on one page, from every evaluated cell."""
from __future__ import annotations

import json
import math
import os
from pathlib import Path

from stages.common import ParamsOpt, SetOpt, params_from, say, user_errors

BASELINE = "real"
SWEEPS = ("real_per_class", "ratio")
SPLITS = ("train", "val", "test")
SAMPLE_SEED = 0  # which images the sample figure shows


def _n(items: list, word: str) -> str:
    return f"{len(items)} {word}{'' if len(items) == 1 else 's'}"


def _fmt(x: float) -> str:
    return f"{100 * x:.1f}"


def _num(v: float) -> str:
    """A swept value as text: 10, 0.25, 2."""
    return f"{v:g}"


@user_errors
def command(params: ParamsOpt = Path("params.yaml"), set_: SetOpt = None) -> None:
    """Summarise the study: the data, test accuracy per variant and model (mean and 95% CI over
    `study.seeds`), a paired t-test of each variant against `real` on the same seeds, a bar
    chart, learning curves, the best cell's confusion matrix, the sweeps (accuracy against the
    number of real images per class and against the synthetic ratio, per model), sample
    images of every data set and the synthetic data quality table.

    Reads `paths.evaluate_metrics` and `paths.train_metrics` for every cell of the study, and
    `paths.prepared`, `paths.synthetic`, `paths.augmented`, `paths.sweep` and `paths.quality`
    where present; writes `paths.report`: report.md, results.json (for `dvc metrics show`) and
    figures/.
    """
    p = params_from(params, set_)
    from pipeline.core.errors import SynthaugError
    from pipeline.report.figures import (
        accuracy_bars,
        confusion_matrix_png,
        curves_by_variant,
        sample_panels,
        sweep_plot,
    )
    from pipeline.evaluation.stats import mean_ci, paired_test
    from pipeline.data.storage import atomic_output

    cells, missing = {}, []
    for variant in p.study.variants:
        for model in p.study.models:
            for seed in p.study.seeds:
                run = p.run_name(variant, model, seed)
                f = p.paths.evaluate_metrics / run / "metrics.json"
                if f.is_file():
                    hist = p.paths.train_metrics / run / "history.json"
                    cells[(variant, model, seed)] = {
                        **json.loads(f.read_text()),
                        "history": json.loads(hist.read_text()) if hist.is_file() else []}
                else:
                    missing.append(str(run))
    if not cells:
        raise SynthaugError(f"{p.paths.evaluate_metrics}: no evaluated cells of the study; run "
                            "`dvc repro` first")
    rows = []
    for variant in p.study.variants:
        for model in p.study.models:
            seeds = [s for s in p.study.seeds if (variant, model, s) in cells]
            if not seeds:
                continue
            acc = [cells[(variant, model, s)]["accuracy"] for s in seeds]
            f1 = [cells[(variant, model, s)]["macro_f1"] for s in seeds]
            s = mean_ci(acc)
            row = {"variant": variant, "model": model, "seeds": seeds, "values": acc,
                   "mean": s.mean, "low": s.low, "high": s.high, "std": s.std,
                   "macro_f1": mean_ci(f1).mean}
            base = [cells.get((BASELINE, model, sd), {}).get("accuracy") for sd in seeds]
            if variant != BASELINE and all(b is not None for b in base):
                t = paired_test(acc, base)
                row["vs_real"] = {"mean_diff": t.mean_diff, "low": t.low, "high": t.high,
                                  "p_value": t.p_value, "significant": t.significant, "n": t.n}
            rows.append(row)

    best = max(cells, key=lambda k: cells[k]["accuracy"])
    splits = _splits(p)
    panels, unsampled = _panels(p, splits)
    sweeps = load_sweeps(p, cells)
    # its three outputs, each atomically: paths.report also holds other stages' outputs
    # (the quality report), which replacing the whole folder would delete
    out = p.paths.report
    drawn = set()
    with atomic_output(out / "figures") as figs, \
            atomic_output(out / "results.json", is_dir=False) as results_file, \
            atomic_output(out / "report.md", is_dir=False) as report_file, \
            atomic_output(out / "plots") as plots:
        # data of the dvc.yaml top-level plot (`dvc plots show`): one bar per cell
        (plots / "accuracy.json").write_text(json.dumps(
            [{"cell": f"{v} / {m} / seed {sd}", "variant": v, "model": m, "seed": sd,
              "accuracy": cells[(v, m, sd)]["accuracy"]} for (v, m, sd) in sorted(cells)],
            indent=1) + "\n")
        (plots / "learning_curves.json").write_text(json.dumps(
            [{"cell": f"{v} / {m} / seed {sd}", "epoch": row["epoch"],
              "val_accuracy": row["val_accuracy"]}
             for (v, m, sd) in sorted(cells) for row in cells[(v, m, sd)]["history"]]) + "\n")
        predictions = p.paths.evaluate_metrics / p.run_name(*best) / "predictions.csv"
        if predictions.is_file():
            (plots / "best_confusion.csv").write_bytes(predictions.read_bytes())
        accuracy_bars(rows, figs / "accuracy.png", BASELINE)
        curves_by_variant({f"{r['variant']} / {r['model']}": [cells[(r["variant"], r["model"], s)]
                                                             ["history"] for s in r["seeds"]]
                           for r in rows if all(cells[(r["variant"], r["model"], s)]["history"]
                                                for s in r["seeds"])},
                          figs / "learning_curves.png",
                          title="validation accuracy (mean over seeds; band: min-max)")
        confusion = p.paths.evaluate_metrics / p.run_name(*best) / "confusion.json"
        if confusion.is_file():
            c = json.loads(confusion.read_text())
            confusion_matrix_png(c["matrix"], c["class_names"], figs / "best_confusion.png",
                                 title=f"best cell: {best[1]} / {best[0]} / seed {best[2]}\n"
                                       f"{_fmt(cells[best]['accuracy'])}% test accuracy")
            drawn.add("best_confusion.png")
        if panels:
            names = (splits["train"].class_names if "train" in splits
                     else panels[0]["class_names"])
            sample_panels(panels, names, figs / "samples.png", per_class=6, seed=SAMPLE_SEED,
                          title=f"random training images, {min(10, len(names))} of "
                                f"{len(names)} classes (seed {SAMPLE_SEED})"
                          if len(names) > 10 else "")
            drawn.add("samples.png")
        for name, sweep in sweeps.items():
            points = {m: {x: [v[0] for v in by_seed.values()] for x, by_seed in pts.items()}
                      for m, pts in sweep["points"].items()}
            if any(len(pts) > 1 for pts in points.values()):
                sweep_plot(points, figs / f"sweep_{name}.png", **_sweep_axes(p, name))
                drawn.add(f"sweep_{name}.png")
        results = {f"{r['variant']}/{r['model']}": {
            "accuracy_mean": r["mean"], "accuracy_ci_low": r["low"], "accuracy_ci_high": r["high"],
            "macro_f1_mean": r["macro_f1"], "seeds": len(r["seeds"]),
            **({"gain_vs_real": r["vs_real"]["mean_diff"], "p_vs_real": r["vs_real"]["p_value"]}
               if "vs_real" in r else {})} for r in rows}
        results.update(_sweep_results(sweeps))
        results_file.write_text(json.dumps(results, indent=2) + "\n")
        report_file.write_text(_markdown(p, rows, best, cells, missing, splits=splits,
                                         panels=panels, unsampled=unsampled, sweeps=sweeps,
                                         drawn=drawn))
    say(_table(rows))
    say(f"-> {p.paths.report / 'report.md'}")


# -- the data ----------------------------------------------------------------------------------

def _splits(p) -> dict:
    from pipeline.data.storage import is_dataset, read_dataset

    return {s: read_dataset(p.paths.prepared / s, mmap=True) for s in SPLITS
            if is_dataset(p.paths.prepared / s)}


def _panels(p, splits: dict) -> tuple[list[dict], list[str]]:
    """The sample figure's panels (real train, each synthetic set, classic copies) and the
    synthetic sets not sampled yet."""
    from pipeline.data.storage import is_dataset, read_dataset

    def panel(title: str, subtitle: str, ds) -> dict:
        return {"title": title, "subtitle": subtitle, "images": ds.images, "labels": ds.labels,
                "class_names": ds.class_names}

    panels, unsampled = [], []
    if "train" in splits:
        panels.append(panel("real (train split)", f"{len(splits['train'])} images",
                            splits["train"]))
    for name, cfg in p.sample.sets.items():
        folder = p.paths.synthetic / name
        if not is_dataset(folder):
            unsampled.append(name)
            continue
        settings = ", ".join(f"{k}={v:g}" if isinstance(v, float) else f"{k}={v}"
                             for k, v in cfg.settings().items())
        panels.append(panel(name, f"{cfg.generator} / {cfg.sampler}"
                            + (f" ({settings})" if settings else ""),
                            read_dataset(folder, mmap=True)))
    if is_dataset(p.paths.augmented):
        ds = read_dataset(p.paths.augmented, mmap=True)
        aug = ds.meta.get("augment", {})
        spec = p.augment.pipeline if isinstance(p.augment.pipeline, str) else "custom"
        panels.append(panel("classic augmentation",
                            f"{spec}, {aug.get('copies_per_image', '?')} copies per image", ds))
    return panels, unsampled


def _data_section(p, splits: dict, rel) -> list[str]:
    import numpy as np

    from pipeline.data.storage import is_dataset, read_dataset

    parts = ["## Data", ""]
    if not splits:
        parts += [(f"The prepared splits are missing (`{p.paths.prepared}`); run "
                   "`synthaug prepare`."), ""]
    else:
        first = splits["train"] if "train" in splits else next(iter(splits.values()))
        c, h, w = first.shape
        names = first.class_names
        shown = ", ".join(names[:20]) + (f", ... ({len(names) - 20} more)" if len(names) > 20 else "")
        parts += [f"- Source: `{first.meta.get('source', '?')}`",
                  (f"- Images: {h} x {w}, {c} channel{'s' if c > 1 else ''} "
                   f"({'RGB' if c == 3 else 'grayscale' if c == 1 else '?'})"),
                  f"- Classes ({len(names)}): {shown}",
                  "- Images per split: " + ", ".join(f"{s} {len(splits[s])}" for s in SPLITS
                                                     if s in splits)]
        if "train" in splits:
            counts = np.bincount(splits["train"].labels, minlength=len(names))
            if counts.min() == counts.max():
                per = f"{counts.min()} per class"
            else:
                per = (f"{counts.min()} to {counts.max()} per class (mean {counts.mean():.1f}"
                       + ("; " + ", ".join(f"{n}: {k}" for n, k in zip(names, counts))
                          if len(names) <= 20 else "") + ")")
            limit = p.prepare.train_per_class
            parts.append(f"- Real training images: {per}"
                         + (f" (`prepare.train_per_class` = {limit})" if limit else ""))
        parts.append("")
        preview = p.paths.prepared / "preview.png"
        if preview.is_file():
            parts += [f"![real training images]({rel(preview)})", ""]
    made = []
    for variant in p.study.variants:
        folder = p.paths.variants / variant
        if is_dataset(folder):
            meta = read_dataset(folder).meta
            made.append(f"| {variant} | {meta['num_images']} | "
                        + ", ".join(f"{k}: {sum(v)}" for k, v in meta.get("made_of", {}).items())
                        + f" | {meta.get('online_augment') or '-'} |")
    parts += ["### Training sets", ""]
    if made:
        parts += ["| variant | images | made of | online augmentation |", "|---|---|---|---|",
                  *made, ""]
    else:
        parts += [f"No composed training sets under `{p.paths.variants}` yet.", ""]
    classic = p.paths.augmented / "preview.png"
    if classic.is_file():
        parts += [f"![classic augmentation]({rel(classic)})", ""]
    return parts


def _samples_section(p, panels, unsampled, drawn) -> list[str]:
    parts = ["## Sample images", ""]
    if "samples.png" in drawn:
        shown = [pnl["title"] for pnl in panels]
        parts += [(f"{_n(shown, 'data set')} side by side ({', '.join(shown)}): one row per "
                   "class, six random images each."), "",
                  "![real, synthetic and augmented samples](figures/samples.png)", ""]
    else:
        parts += ["No data set to show yet.", ""]
    if unsampled:
        parts += [f"Not sampled yet (no packed set under `{p.paths.synthetic}`): "
                  + ", ".join(unsampled) + ".", ""]
    if not any(pnl["title"] == "classic augmentation" for pnl in panels):
        parts += [f"No classic augmentation copies (`{p.paths.augmented}`) yet.", ""]
    return parts


def _quality_section(p, rel) -> list[str]:
    parts = ["## Synthetic data quality", ""]
    q = p.paths.quality / "quality.md"
    if not q.is_file():
        return parts + [f"The quality stage has not run (no `{q}`); run `synthaug quality`.", ""]
    # the quality table and what follows it (best CAS, the ranking check) up to the per-set
    # sections; headings one level down, images dropped (their links are relative to q)
    lines, started = [], False
    for line in q.read_text().splitlines():
        if not started:
            started = line.startswith("|")
            if not started:
                continue
        if line.startswith("### ") or line.strip() == "## Sets":
            break
        if line.startswith("!["):
            continue
        lines.append("#" + line if line.startswith("#") else line)
    while lines and not lines[-1].strip():
        lines.pop()
    parts += [*lines, "", f"Full quality report: [{q.name}]({rel(q)})", ""]
    scatter = p.paths.quality / "figures" / "fid_vs_cas.png"
    if scatter.is_file():
        parts += [f"![FID-domain vs CAS]({rel(scatter)})", ""]
    return parts


# -- the sweeps --------------------------------------------------------------------------------

def load_sweeps(p, cells: dict) -> dict:
    """sweep name -> {"points": {model: {value: {seed: (accuracy, macro_f1)}}}, "study":
    values the study's own cells supplied, "files": results files read, "absent": models
    without one}. The sweep stage's rows first; the study's cells fill in the points they
    cover (`real_per_class` at prepare.train_per_class; `ratio` 0 = the real cells and the
    ratio variant's own ratio)."""
    out = {s: {"points": {}, "study": set(), "files": [], "absent": []} for s in SWEEPS}

    def add(sweep, model, value, seed, acc, f1, fill=False):
        by_seed = out[sweep]["points"].setdefault(model, {}).setdefault(float(value), {})
        if fill and seed in by_seed:
            return
        by_seed[seed] = (acc, f1)
        if fill:
            out[sweep]["study"].add(float(value))

    for model in p.sweep.models:
        f = p.paths.sweep / model / "results.json"
        if not f.is_file():
            for s in SWEEPS:
                out[s]["absent"].append(model)
            continue
        data = json.loads(f.read_text())
        for row in data.get("rows", []):
            if row.get("sweep") in out:
                add(row["sweep"], row.get("model", data.get("model", model)), row["value"],
                    row.get("seed", 0), row["accuracy"], row.get("macro_f1"))
        for s in SWEEPS:
            out[s]["files"].append(f)
    k = p.prepare.train_per_class
    ratio = p.compose.variants[p.sweep.ratio_variant].ratio
    for (variant, model, seed), c in cells.items():
        if variant == BASELINE:
            if k:
                add("real_per_class", model, k, seed, c["accuracy"], c.get("macro_f1"), True)
            add("ratio", model, 0.0, seed, c["accuracy"], c.get("macro_f1"), True)
        if variant == p.sweep.ratio_variant and ratio is not None:
            add("ratio", model, ratio, seed, c["accuracy"], c.get("macro_f1"), True)
    models = list(dict.fromkeys([*p.sweep.models, *p.study.models]))
    for s in SWEEPS:  # models in a fixed order: sweep.models, then the study's
        pts = out[s]["points"]
        out[s]["points"] = {m: dict(sorted(pts[m].items())) for m in
                            [*[m for m in models if m in pts], *[m for m in pts if m not in models]]}
    return out


def _sweep_axes(p, name: str) -> dict:
    if name == "real_per_class":
        k = p.prepare.train_per_class
        return {"xlabel": "real training images per class (log scale)",
                "title": "test accuracy vs real training images per class",
                "marks": {float(k): "study"} if k else None}
    variant = p.compose.variants[p.sweep.ratio_variant]
    return {"xlabel": "synthetic images per real training image (0: real only)",
            "title": (f"test accuracy vs synthetic ratio: {p.sweep.ratio_variant} "
                      f"({', '.join(variant.synthetic_parts())})"),
            "xscale": "symlog"}


def _summary(by_seed: dict):
    from pipeline.evaluation.stats import mean_ci

    return mean_ci([v[0] for v in by_seed.values()])


def _sweep_results(sweeps: dict) -> dict:
    """Flat results.json entries: "sweep/<sweep>/<value>/<model>" -> accuracy summary."""
    from pipeline.evaluation.stats import mean_ci

    out = {}
    for name, sweep in sweeps.items():
        for model, pts in sweep["points"].items():
            for value, by_seed in pts.items():
                s = _summary(by_seed)
                f1 = [v[1] for v in by_seed.values()]
                out[f"sweep/{name}/{_num(value)}/{model}"] = {
                    "accuracy_mean": s.mean, "accuracy_ci_low": s.low, "accuracy_ci_high": s.high,
                    **({"macro_f1_mean": mean_ci(f1).mean} if None not in f1 else {}),
                    "seeds": s.n}
    return out


def sweep_table(sweep: dict, label=_num, header: str = "value") -> str:
    """Rows: the swept values; columns: models; cells: mean test accuracy % (95% CI over
    seeds), the best model of a row in bold."""
    models = list(sweep["points"])
    values = sorted({v for pts in sweep["points"].values() for v in pts})
    lines = ["| " + " | ".join([header, *models]) + " |", "|---" * (len(models) + 1) + "|"]
    for v in values:
        stats = {m: _summary(sweep["points"][m][v]) for m in models if v in sweep["points"][m]}
        top = max(s.mean for s in stats.values())
        row = []
        for m in models:
            s = stats.get(m)
            if s is None:
                row.append("-")
                continue
            mean = f"**{_fmt(s.mean)}**" if len(stats) > 1 and s.mean == top else _fmt(s.mean)
            row.append(f"{mean} ({_fmt(s.low)}-{_fmt(s.high)})" if s.n > 1 else f"{mean} (1 seed)")
        lines.append("| " + " | ".join([label(v), *row]) + " |")
    return "\n".join(lines)


def winner_line(sweep: dict, k: float = 10) -> str | None:
    """Which model wins the real_per_class sweep at `k` real images per class (else at the
    smallest k that several models share), and by how much."""
    pts = sweep["points"]
    at = [v for v in sorted({v for p in pts.values() for v in p})
          if sum(v in p for p in pts.values()) > 1]
    if float(k) in {v for p in pts.values() for v in p}:
        value = float(k)
    elif at:
        value = at[0]
    else:
        return None
    ranked = sorted(((m, _summary(p[value])) for m, p in pts.items() if value in p),
                    key=lambda ms: -ms[1].mean)
    head = f"At {_num(value)} real images per class"
    if len(ranked) == 1:
        m, s = ranked[0]
        return f"{head} only {m} has results: {_fmt(s.mean)}% ({_n([0] * s.n, 'seed')})."
    (a, sa), (b, sb) = ranked[:2]
    seeds = (_n([0] * sa.n, "seed") if sa.n == sb.n else f"{sa.n} and {sb.n} seeds")
    rest = "".join(f", then {m} {_fmt(s.mean)}%" for m, s in ranked[2:])
    return (f"{head}: {a} {_fmt(sa.mean)}% vs {b} {_fmt(sb.mean)}% "
            f"({100 * (sa.mean - sb.mean):+.1f} pp over {seeds}){rest}.")


def _sweeps_section(p, sweeps: dict, drawn: set, rel) -> list[str]:
    parts = ["## Sweeps", "",
             ("Test accuracy on the real test split against the amount of data, per model. "
              "Tables: mean over seeds with a t-based 95% confidence interval, the best model "
              "of a row in bold; figures: the mean, the seeds' range shaded. The study's own "
              "cells supply the points marked *study*."), ""]
    absent = sweeps["real_per_class"]["absent"]  # one results file per model holds both sweeps
    if absent:
        parts += [f"No sweep results for {', '.join(absent)} yet (missing "
                  + ", ".join(f"`{p.paths.sweep / m / 'results.json'}`" for m in absent)
                  + "; run `synthaug sweep`).", ""]
    ratio = p.compose.variants[p.sweep.ratio_variant].ratio
    labels = {
        "real_per_class": ("Real images per class", "real images / class",
                           lambda v: _num(v) + (" (*study*)" if v in sweeps["real_per_class"]["study"]
                                                else "")),
        "ratio": (f"Synthetic ratio ({p.sweep.ratio_variant})",
                  "synthetic / real",
                  lambda v: _num(v) + (" (*study*: real)" if v == 0 and 0.0 in sweeps["ratio"]["study"]
                                       else f" (*study*: {p.sweep.ratio_variant})"
                                       if ratio is not None and v == ratio
                                       and v in sweeps["ratio"]["study"] else "")),
    }
    for name, sweep in sweeps.items():
        heading, what, label = labels[name]
        parts += [f"### {heading}", ""]
        if not sweep["points"]:
            parts += ["Nothing to show.", ""]
            continue
        if name == "ratio":
            parts += [(f"`{p.sweep.ratio_variant}` re-composed with this many synthetic images "
                       "(from " + ", ".join(p.compose.variants[p.sweep.ratio_variant]
                                             .synthetic_parts())
                       + ") per real training image; 0 is real only."), ""]
        parts += ["Test accuracy %:", "", sweep_table(sweep, label, what), ""]
        if name == "real_per_class":
            line = winner_line(sweep)
            if line:
                parts += [line, ""]
        if f"sweep_{name}.png" in drawn:
            parts += [f"![{heading.lower()}](figures/sweep_{name}.png)", ""]
        else:
            parts += ["(No figure: every model has a single point so far.)", ""]
    return parts


# -- the page ----------------------------------------------------------------------------------

def _table(rows: list[dict]) -> str:
    lines = ["| variant | model | seeds | test accuracy % (95% CI) | macro-F1 % | vs real (pp, 95% CI) | p |",
             "|---|---|---|---|---|---|---|"]
    for r in rows:
        vs = r.get("vs_real")
        gain = (f"{100 * vs['mean_diff']:+.1f} ({100 * vs['low']:+.1f} to {100 * vs['high']:+.1f})"
                f"{' **significant**' if vs['significant'] else ''}" if vs else "baseline"
                if r["variant"] == BASELINE else "-")
        p = f"{vs['p_value']:.3f}" if vs and not math.isnan(vs["p_value"]) else "-"
        lines.append(f"| {r['variant']} | {r['model']} | {len(r['seeds'])} | {_fmt(r['mean'])} "
                     f"({_fmt(r['low'])}-{_fmt(r['high'])}) | {_fmt(r['macro_f1'])} | {gain} | {p} |")
    return "\n".join(lines)


def _markdown(p, rows, best, cells, missing, splits=None, panels=(), unsampled=(),
              sweeps=None, drawn=frozenset()) -> str:
    def rel(path: Path) -> Path:  # report.md sits in paths.report; links are relative to it
        return path if path.is_absolute() else Path(os.path.relpath(path, p.paths.report))

    splits = splits or {}
    source = next(iter(splits.values())).meta.get("source", "?") if splits else "?"
    parts = [
        "# synthaug report",
        "",
        (f"Source `{source}`, {p.prepare.train_per_class or 'all'} real training images per "
         f"class; every accuracy is on the held-out real test split. {len(cells)} cells "
         f"({_n(p.study.variants, 'variant')} x {_n(p.study.models, 'model')} x "
         f"{_n(p.study.seeds, 'seed')})."),
        "",
        *_data_section(p, splits, rel),
        "## Results",
        "",
        ("Mean over seeds with a t-based 95% confidence interval; *vs real* is the paired "
         "difference to the `real` variant on the same seeds (paired t-test, significant at "
         "p < 0.05)."),
        "",
        _table(rows),
        "",
        "![test accuracy](figures/accuracy.png)",
        "",
        "![learning curves](figures/learning_curves.png)",
        "",
        (f"Best cell: {best[0]} / {best[1]} / seed {best[2]} "
         f"({_fmt(cells[best]['accuracy'])}% test accuracy)."),
        "",
        ("![confusion matrix of the best cell](figures/best_confusion.png)"
         if "best_confusion.png" in drawn else
         f"(No confusion matrix: `{p.paths.evaluate_metrics / p.run_name(*best) / 'confusion.json'}`"
         " is missing.)"),
        "",
        *(_sweeps_section(p, sweeps, drawn, rel) if sweeps else []),
        *_samples_section(p, panels, unsampled, drawn),
        *_quality_section(p, rel),
    ]
    if missing:
        parts += ["## Missing cells", "", "Not evaluated yet: " + ", ".join(missing), ""]
    return "\n".join(parts)
