"""`synthaug report`: the study's answer on one page, from every evaluated cell."""
from __future__ import annotations

import json
import math
from pathlib import Path

from stages.common import ParamsOpt, SetOpt, params_from, say, user_errors

BASELINE = "real"


def _n(items: list, word: str) -> str:
    return f"{len(items)} {word}{'' if len(items) == 1 else 's'}"


def _fmt(x: float) -> str:
    return f"{100 * x:.1f}"


@user_errors
def command(params: ParamsOpt = Path("params.yaml"), set_: SetOpt = None) -> None:
    """Summarise the study: test accuracy per variant and model (mean and 95% CI over
    `study.seeds`), a paired t-test of each variant against `real` on the same seeds, a bar
    chart, learning curves, and the best cell's confusion matrix.

    Reads `paths.evaluate_metrics` and `paths.train_metrics` for every cell of the study;
    writes `paths.report`: report.md, results.json (for `dvc metrics show`) and figures/.
    """
    p = params_from(params, set_)
    from pipeline.errors import SynthaugError
    from pipeline.figures import accuracy_bars, curves_by_variant
    from pipeline.stats import mean_ci, paired_test
    from pipeline.storage import atomic_output

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
    # its three outputs, each atomically: paths.report also holds other stages' outputs
    # (the quality report), which replacing the whole folder would delete
    out = p.paths.report
    with atomic_output(out / "figures") as figs, \
            atomic_output(out / "results.json", is_dir=False) as results_file, \
            atomic_output(out / "report.md", is_dir=False) as report_file:
        accuracy_bars(rows, figs / "accuracy.png", BASELINE)
        curves_by_variant({f"{r['variant']} / {r['model']}": [cells[(r["variant"], r["model"], s)]
                                                             ["history"] for s in r["seeds"]]
                           for r in rows if all(cells[(r["variant"], r["model"], s)]["history"]
                                                for s in r["seeds"])},
                          figs / "learning_curves.png",
                          title="validation accuracy (mean over seeds; band: min-max)")
        confusion = p.paths.evaluate_metrics / p.run_name(*best) / "confusion.png"
        if confusion.is_file():
            (figs / "best_confusion.png").write_bytes(confusion.read_bytes())
        results = {f"{r['variant']}/{r['model']}": {
            "accuracy_mean": r["mean"], "accuracy_ci_low": r["low"], "accuracy_ci_high": r["high"],
            "macro_f1_mean": r["macro_f1"], "seeds": len(r["seeds"]),
            **({"gain_vs_real": r["vs_real"]["mean_diff"], "p_vs_real": r["vs_real"]["p_value"]}
               if "vs_real" in r else {})} for r in rows}
        results_file.write_text(json.dumps(results, indent=2) + "\n")
        report_file.write_text(_markdown(p, rows, best, cells, missing))
    say(_table(rows))
    say(f"-> {p.paths.report / 'report.md'}")


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


def _markdown(p, rows, best, cells, missing) -> str:
    from pipeline.storage import is_dataset, read_dataset

    made = []
    for variant in p.study.variants:
        folder = p.paths.variants / variant
        if is_dataset(folder):
            meta = read_dataset(folder).meta
            made.append(f"| {variant} | {meta['num_images']} | "
                        + ", ".join(f"{k}: {sum(v)}" for k, v in meta["made_of"].items())
                        + f" | {meta.get('online_augment') or '-'} |")

    def rel(path: Path) -> Path:  # report.md sits in paths.report; links are relative to it
        return path if path.is_absolute() else Path("..") / path

    train_meta = p.paths.prepared / "train" / "meta.json"
    source = json.loads(train_meta.read_text()).get("source", "?") if train_meta.is_file() else "?"
    parts = [
        "# synthaug report",
        "",
        (f"Source `{source}`, {p.prepare.train_per_class or 'all'} real training images per "
         f"class; every accuracy is on the held-out real test split. {len(cells)} cells "
         f"({_n(p.study.variants, 'variant')} x {_n(p.study.models, 'model')} x "
         f"{_n(p.study.seeds, 'seed')})."),
        "",
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
        "![confusion matrix of the best cell](figures/best_confusion.png)",
        "",
        "## Training sets",
        "",
        "| variant | images | made of | online augmentation |",
        "|---|---|---|---|",
        *made,
        "",
        f"![real training images]({rel(p.paths.prepared / 'preview.png')})",
        "",
        f"![classic augmentation]({rel(p.paths.augmented / 'preview.png')})",
        "",
    ]
    if missing:
        parts += ["## Missing cells", "", "Not evaluated yet: " + ", ".join(missing), ""]
    return "\n".join(parts)
