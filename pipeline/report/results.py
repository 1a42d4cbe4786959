"""The study's numbers: per (variant, model) the mean test accuracy with its 95% CI over seeds
and the paired test against `real`, as rows, a table, results.json, the summary (the dvc
metrics), per-cell plot data and the report's figures."""
from __future__ import annotations

import json
import math
from pathlib import Path

from synthaug.pipeline.report import sweeps as sweeps_
from synthaug.pipeline.report.study import BASELINE, Cell, Study, power_entry, pct

SAMPLE_SEED = 0  # which images the sample figure shows


def summarise(s: Study) -> list[dict]:
    """One row per (variant, model) with results, in the study's order: variant, model, seeds,
    values (accuracy per seed), mean, low, high, std, macro_f1 and, for variants other than
    `real` with the baseline on the same seeds, vs_real (the paired test's result with its
    power: sd_diff, mde, seeds_needed, decided; pipeline.report.study.power_entry)."""
    from synthaug.pipeline.stats.paired import mean_ci, paired_test

    rows = []
    for variant in s.study.variants:
        for model in s.study.models:
            seeds = [sd for sd in s.study.seeds if (variant, model, sd) in s.cells]
            if not seeds:
                continue
            acc = [s.cells[(variant, model, sd)]["accuracy"] for sd in seeds]
            f1 = [s.cells[(variant, model, sd)]["macro_f1"] for sd in seeds]
            m = mean_ci(acc, within=(0.0, 1.0))
            row = {"variant": variant, "model": model, "seeds": seeds, "values": acc,
                   "mean": m.mean, "low": m.low, "high": m.high, "std": m.std,
                   "macro_f1": mean_ci(f1).mean}
            base = [s.cells.get((BASELINE, model, sd), {}).get("accuracy") for sd in seeds]
            if variant != BASELINE and all(b is not None for b in base):
                t = paired_test(acc, base)
                row["vs_real"] = {"mean_diff": t.mean_diff, "low": t.low, "high": t.high,
                                  "p_value": t.p_value, "significant": t.significant, "n": t.n,
                                  **power_entry(t)}
            rows.append(row)
    return worth(rows, s)


def worth(rows: list[dict], s: Study) -> list[dict]:
    """Each row's exchange rate (pipeline.stats.exchange), read off its model's real-only
    curve (the real_per_class sweep plus the study's own k), as row["worth"]: a Rate dict plus
    "decided" and "text". Rows of models without two or more k on that curve get none.
    A rate claims no more than the accuracies: where the row's paired difference to `real` is
    not significant, the rate is not decided (its text says so, and gives no finding)."""
    from synthaug.pipeline.stats.exchange import exchange_rate

    curves = ((s.sweeps or {}).get("real_per_class") or {}).get("points", {})
    for row in rows:
        pts = curves.get(row["model"], {})
        if len(pts) < 2:
            continue
        seeds = row["seeds"]
        paired = all(set(seeds) <= set(by_seed) for by_seed in pts.values())
        curve = {int(k): [by_seed[sd][0] for sd in (seeds if paired else by_seed)]
                 for k, by_seed in pts.items()}
        rate = exchange_rate(curve, row["values"], paired=paired)
        vs = row.get("vs_real")
        decided = vs is None or vs["significant"]  # the real row: its own place on the curve
        row["worth"] = {**rate.as_dict(), "k_used": s.train_per_class, "decided": decided,
                        "mde": vs.get("mde") if vs else None,
                        "text": rate.text(s.train_per_class, decided)}
    return rows


def _worth_cell(r: dict) -> str:
    w = r.get("worth")
    if w is None:
        return "-"
    if w["where"] != "within":
        return f"<{w['k_min']}" if w["where"] == "below" else f">{w['k_max']}"
    lo = f"<{w['k_min']}" if w["low"] is None else f"{w['low']:.0f}"
    hi = f">{w['k_max']}" if w["high"] is None else f"{w['high']:.0f}"
    diff = f"; {w['k'] - w['k_used']:+.0f}" if w.get("k_used") else ""
    if not w.get("decided", True):
        return f"not decided ({w['k']:.0f}; {lo}-{hi})"
    return f"{w['k']:.0f} ({lo}-{hi}{diff})"


def table(rows: list[dict]) -> str:
    """The results table: accuracy (95% CI), macro-F1, the paired difference to `real`, its
    minimum detectable effect (`not decided` where it is not significant and the MDE is over
    pipeline.report.study.SMALL_EFFECT) and the exchange rate."""
    lines = ["| variant | model | seeds | test accuracy % (95% CI) | macro-F1 % | vs real (pp, 95% CI) | p "
             "| MDE pp | worth real/class (95% CI) |", "|---|---|---|---|---|---|---|---|---|"]
    for r in rows:
        vs = r.get("vs_real")
        gain = (f"{100 * vs['mean_diff']:+.1f} ({100 * vs['low']:+.1f} to {100 * vs['high']:+.1f})"
                f"{' **significant**' if vs['significant'] else ''}" if vs else "baseline"
                if r["variant"] == BASELINE else "-")
        p = f"{vs['p_value']:.3f}" if vs and not math.isnan(vs["p_value"]) else "-"
        mde = ("-" if not vs or vs.get("mde") is None else f"{100 * vs['mde']:.1f}"
               + ("" if vs.get("decided", True) else " not decided"))
        lines.append(f"| {r['variant']} | {r['model']} | {len(r['seeds'])} | {pct(r['mean'])} "
                     f"({pct(r['low'])}-{pct(r['high'])}) | {pct(r['macro_f1'])} | {gain} | {p} "
                     f"| {mde} | {_worth_cell(r)} |")
    return "\n".join(lines)


def results_json(rows: list[dict], sweeps: dict, when: dict | None = None,
                 crossval: dict | None = None, crossval_rows: list[dict] | None = None) -> dict:
    """results.json (for `dvc metrics show`): "<variant>/<model>", the sweeps' points, the
    when points, the protocol and, under k-fold, "crossval/<variant>/<model>"."""
    out = {f"{r['variant']}/{r['model']}": {
        "accuracy_mean": r["mean"], "accuracy_ci_low": r["low"], "accuracy_ci_high": r["high"],
        "macro_f1_mean": r["macro_f1"], "seeds": len(r["seeds"]),
        **({"gain_vs_real": r["vs_real"]["mean_diff"], "p_vs_real": r["vs_real"]["p_value"],
            "gain_ci_low": r["vs_real"]["low"], "gain_ci_high": r["vs_real"]["high"],
            **{f"{k}_vs_real": r["vs_real"][k] for k in ("sd_diff", "mde", "seeds_needed",
                                                          "decided")}}
           if "vs_real" in r else {}),
        **({"worth_real_per_class": {k: v for k, v in r["worth"].items() if k != "text"}}
           if "worth" in r else {})} for r in rows}
    out.update(sweeps_.results(sweeps))
    if when:
        from synthaug.pipeline.report.when import results as when_results

        out.update(when_results(when))
    from synthaug.pipeline.report.crossval import results as crossval_results

    out.update(crossval_results(crossval_rows or [], crossval))
    return out


# the summary's keys (`dvc metrics show` columns; short, so its rows stay narrow): a quality
# record's column -> its key
SUMMARY_QUALITY = {"fid_domain": "fid", "precision": "prec", "recall": "rec", "coverage": "cov",
                   "cas": "cas"}


def _finite(v):
    """A number as JSON can hold it: NaN (an undefined CI or p) becomes None (null)."""
    return None if v is None or (isinstance(v, float) and math.isnan(v)) else v


def summary(rows: list[dict], quality: dict | None) -> dict[str, dict]:
    """The study's headline numbers for `dvc metrics show` / `dvc exp show`, as relative file
    path -> content: study/<variant>/<model>.json per summarised row (acc, lo, hi: mean test
    accuracy and its 95% CI over seeds; gain, p: the paired test against `real`, where there
    is one) and quality/<set>.json per synthetic set of `quality` (quality.json's content; the
    reference rows left out): fid, prec, rec, cov, cas where the record has them. One small
    file each, so each is one row of a few short columns."""
    from synthaug.pipeline.quality.config import REFERENCES

    out = {}
    for r in rows:
        entry = {"acc": r["mean"], "lo": r["low"], "hi": r["high"]}
        if "vs_real" in r:
            entry.update(gain=r["vs_real"]["mean_diff"], p=r["vs_real"]["p_value"])
        out[f"study/{r['variant']}/{r['model']}.json"] = {k: _finite(v) for k, v in entry.items()}
    for name, m in (quality or {}).items():
        if name not in REFERENCES:
            out[f"quality/{name}.json"] = {short: _finite(m[k]) for k, short in
                                           SUMMARY_QUALITY.items() if k in m}
    return out


def plot_data(cells: dict[Cell, dict]) -> dict[str, str]:
    """Per-cell plot data files (reports/plots/; not dvc plots): file name -> text.
    accuracy.json: one bar per cell; learning_curves.json: validation accuracy per epoch per
    cell."""
    accuracy = [{"cell": f"{v} / {m} / seed {sd}", "variant": v, "model": m, "seed": sd,
                 "accuracy": cells[(v, m, sd)]["accuracy"]} for (v, m, sd) in sorted(cells)]
    curves = [{"cell": f"{v} / {m} / seed {sd}", "epoch": row["epoch"],
               "val_accuracy": row["val_accuracy"]}
              for (v, m, sd) in sorted(cells) for row in cells[(v, m, sd)]["history"]]
    return {"accuracy.json": json.dumps(accuracy, indent=1) + "\n",
            "learning_curves.json": json.dumps(curves) + "\n"}


# the report's figures that dvc.yaml's top-level plots name: each exists after every report
# (a placeholder that says why where there is nothing to draw), whatever the params
REGISTERED = ("accuracy.png", "learning_curves.png", "best_confusion.png", "samples.png",
              "sweep_real_per_class.png", "sweep_ratio.png", "when_cnn.png", "crossval.png")


def draw(s: Study, rows: list[dict], confusion: dict | None, figs: Path) -> set[str]:
    """The report's figures into `figs`: accuracy.png (a forest plot per model of each
    variant's paired difference to `real`, with its MDE band) and learning curves always; the best
    cell's confusion matrix (`confusion`: confusion.json's content), the sample panels and
    each sweep with more than one point per model where there are. Returns the names of the
    optional figures drawn."""
    from synthaug.pipeline.figures.data import sample_panels
    from synthaug.pipeline.figures.results import (confusion_matrix_png, curves_by_variant,
                                                difference_forest, sweep_plot)

    drawn, best = set(), s.best()
    difference_forest(rows, figs / "accuracy.png", BASELINE)
    runs = {f"{r['variant']} / {r['model']}": [s.cells[(r["variant"], r["model"], sd)]["history"]
                                               for sd in r["seeds"]] for r in rows}
    curves_by_variant({name: h for name, h in runs.items() if all(h)},
                      figs / "learning_curves.png",
                      title="validation accuracy (mean over seeds; band: min-max)")
    if confusion is not None:
        confusion_matrix_png(confusion["matrix"], confusion["class_names"],
                             figs / "best_confusion.png",
                             title=f"best cell: {best[1]} / {best[0]} / seed {best[2]}\n"
                                   f"{pct(s.cells[best]['accuracy'])}% test accuracy")
        drawn.add("best_confusion.png")
    if s.panels:
        names = s.splits["train"].class_names if "train" in s.splits else s.panels[0]["class_names"]
        sample_panels(s.panels, names, figs / "samples.png", per_class=6, seed=SAMPLE_SEED,
                      title=f"random training images, {min(10, len(names))} of "
                            f"{len(names)} classes (seed {SAMPLE_SEED})" if len(names) > 10 else "")
        drawn.add("samples.png")
    for name, sweep in (s.sweeps or {}).items():
        points = sweeps_.plot_points(sweep)
        if any(len(pts) > 1 for pts in points.values()):
            sweep_plot(points, figs / f"sweep_{name}.png", **sweeps_.axes(s, name))
            drawn.add(f"sweep_{name}.png")
    from synthaug.pipeline.report.when import OPEN_SET

    for model, cmp in (s.when or {}).items():
        sweep_plot({name: {float(k): e["values"] for k, e in pts.items()} for name, pts in
                    cmp.items()}, figs / f"when_{model}.png",
                   xlabel="real training images per class (log scale)",
                   title=f"when does it help ({model}): each line's generators trained per k",
                   marks={float(s.train_per_class): "study"} if s.train_per_class else None,
                   dashed=set(OPEN_SET))  # lines that also see the unlabelled pool
        drawn.add(f"when_{model}.png")
    if s.crossval_rows:
        difference_forest(s.crossval_rows, figs / "crossval.png", BASELINE,
                          title="cross-validated paired difference to real over units "
                                "(repeat x fold): corrected 95% CI and MDE", each="unit")
        drawn.add("crossval.png")
    from synthaug.pipeline.figures.results import not_drawn

    why = {"best_confusion.png": "no cell has a confusion matrix",
           "samples.png": "no split or set to show",
           "sweep_real_per_class.png": "the sweep has no model with more than one point",
           "sweep_ratio.png": "the sweep has no model with more than one point",
           "when_cnn.png": "no 'when' points for cnn (sweep.when_models, sweep.when_per_class)",
           "crossval.png": "the study is tested on a single holdout split (report: Protocol)"}
    for name in REGISTERED:
        if not (figs / name).exists():
            not_drawn(figs / name, name.removesuffix(".png").replace("_", " "), why[name])
    return drawn
