"""The report's sweeps: test accuracy against the number of real images per class and against
the synthetic ratio, per model, from the sweep stage's results and the study's own cells."""
from __future__ import annotations

from synthaug.pipeline.report.study import BASELINE, Cell, Study, num, pct, plural

SWEEPS = ("real_per_class", "ratio")


def merge(results: dict[str, dict | None], cells: dict[Cell, dict], ratio_variant: str,
          k: int | None, ratio: float | None, models: list[str]) -> dict:
    """sweep name -> {"points": {model: {value: {seed: (accuracy, macro_f1)}}}, "study":
    values the study's own cells supplied, "absent": models without results}.

    results: model -> the sweep stage's results.json content (None: not run); the study's
    cells fill in the points they cover (`real_per_class` at `k` real images per class;
    `ratio` 0 = the real cells, and `ratio_variant`'s own `ratio`). Models in a fixed order:
    `models`, then any other the results name."""
    out = {s: {"points": {}, "study": set(), "absent": []} for s in SWEEPS}

    def add(sweep, model, value, seed, acc, f1, fill=False):
        by_seed = out[sweep]["points"].setdefault(model, {}).setdefault(float(value), {})
        if fill and seed in by_seed:
            return
        by_seed[seed] = (acc, f1)
        if fill:
            out[sweep]["study"].add(float(value))

    for model, data in results.items():
        if data is None:
            for s in SWEEPS:
                out[s]["absent"].append(model)
            continue
        for row in data.get("rows", []):
            if row.get("sweep") in out:
                add(row["sweep"], row.get("model", data.get("model", model)), row["value"],
                    row.get("seed", 0), row["accuracy"], row.get("macro_f1"))
    for (variant, model, seed), c in cells.items():
        if variant == BASELINE:
            if k:
                add("real_per_class", model, k, seed, c["accuracy"], c.get("macro_f1"), True)
            add("ratio", model, 0.0, seed, c["accuracy"], c.get("macro_f1"), True)
        if variant == ratio_variant and ratio is not None:
            add("ratio", model, ratio, seed, c["accuracy"], c.get("macro_f1"), True)
    models = list(dict.fromkeys(models))
    for s in SWEEPS:
        pts = out[s]["points"]
        out[s]["points"] = {m: dict(sorted(pts[m].items())) for m in
                            [*[m for m in models if m in pts], *[m for m in pts if m not in models]]}
    return out


def summary(by_seed: dict):
    """mean_ci of a point's accuracies over its seeds."""
    from synthaug.pipeline.stats.paired import mean_ci

    return mean_ci([v[0] for v in by_seed.values()], within=(0.0, 1.0))


def results(sweeps: dict) -> dict:
    """Flat results.json entries: "sweep/<sweep>/<value>/<model>" -> accuracy summary."""
    from synthaug.pipeline.stats.paired import mean_ci

    out = {}
    for name, sweep in sweeps.items():
        for model, pts in sweep["points"].items():
            for value, by_seed in pts.items():
                s = summary(by_seed)
                f1 = [v[1] for v in by_seed.values()]
                out[f"sweep/{name}/{num(value)}/{model}"] = {
                    "accuracy_mean": s.mean, "accuracy_ci_low": s.low, "accuracy_ci_high": s.high,
                    **({"macro_f1_mean": mean_ci(f1).mean} if None not in f1 else {}),
                    "seeds": s.n}
    return out


def plot_points(sweep: dict) -> dict[str, dict[float, list[float]]]:
    """model -> {value: [accuracy per seed]}: the sweep figure's points."""
    return {m: {x: [v[0] for v in by_seed.values()] for x, by_seed in pts.items()}
            for m, pts in sweep["points"].items()}


def axes(s: Study, name: str) -> dict:
    """The sweep figure's labels, title and x scale."""
    if name == "real_per_class":
        k = s.train_per_class
        return {"xlabel": "real training images per class (log scale)",
                "title": "test accuracy vs real training images per class",
                "marks": {float(k): "study"} if k else None}
    return {"xlabel": "synthetic images per real training image (0: real only)",
            "title": (f"test accuracy vs synthetic ratio: {s.sweep.ratio_variant} "
                      f"({', '.join(s.ratio_parts)})"),
            "xscale": "symlog"}


def table(sweep: dict, label=num, header: str = "value") -> str:
    """Rows: the swept values; columns: models; cells: mean test accuracy % (95% CI over
    seeds), the best model of a row in bold."""
    models = list(sweep["points"])
    values = sorted({v for pts in sweep["points"].values() for v in pts})
    lines = ["| " + " | ".join([header, *models]) + " |", "|---" * (len(models) + 1) + "|"]
    for v in values:
        stats = {m: summary(sweep["points"][m][v]) for m in models if v in sweep["points"][m]}
        top = max(s.mean for s in stats.values())
        row = []
        for m in models:
            s = stats.get(m)
            if s is None:
                row.append("-")
                continue
            mean = f"**{pct(s.mean)}**" if len(stats) > 1 and s.mean == top else pct(s.mean)
            row.append(f"{mean} ({pct(s.low)}-{pct(s.high)})" if s.n > 1 else f"{mean} (1 seed)")
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
    ranked = sorted(((m, summary(p[value])) for m, p in pts.items() if value in p),
                    key=lambda ms: -ms[1].mean)
    head = f"At {num(value)} real images per class"
    if len(ranked) == 1:
        m, s = ranked[0]
        return f"{head} only {m} has results: {pct(s.mean)}% ({plural([0] * s.n, 'seed')})."
    (a, sa), (b, sb) = ranked[:2]
    seeds = (plural([0] * sa.n, "seed") if sa.n == sb.n else f"{sa.n} and {sb.n} seeds")
    rest = "".join(f", then {m} {pct(s.mean)}%" for m, s in ranked[2:])
    return (f"{head}: {a} {pct(sa.mean)}% vs {b} {pct(sb.mean)}% "
            f"({100 * (sa.mean - sb.mean):+.1f} pp over {seeds}{_paired(pts[a][value], pts[b][value])})"
            f"{rest}.")


def _paired(a: dict, b: dict) -> str:
    """The paired test of two models' runs on the seeds they share ({seed: (accuracy, f1)}):
    `; p 0.012, significant` or `; p 0.2, not decided by this data (MDE 2.0 points)`."""
    from synthaug.pipeline.report.study import SMALL_EFFECT, undecided_text
    from synthaug.pipeline.stats.paired import paired_test

    common = sorted(set(a) & set(b))
    if len(common) < 2:
        return ""
    t = paired_test([a[s][0] for s in common], [b[s][0] for s in common])
    if t.significant:
        return f"; paired p {t.p_value:.3f}, significant"
    if t.decided(SMALL_EFFECT):
        return f"; paired p {t.p_value:.3f}, within its MDE of {100 * t.mde:.1f} points"
    return f"; paired p {t.p_value:.3f}, {undecided_text(None if t.mde != t.mde else t.mde)}"


def _labels(s: Study) -> dict:
    """sweep -> (heading, the value column's header, a value's label)."""
    study, ratio, variant = s.sweeps, s.ratio, s.sweep.ratio_variant

    def ratio_label(v: float) -> str:
        if v == 0 and 0.0 in study["ratio"]["study"]:
            return num(v) + " (*study*: real)"
        if ratio is not None and v == ratio and v in study["ratio"]["study"]:
            return num(v) + f" (*study*: {variant})"
        return num(v)

    return {"real_per_class": ("Real images per class", "real images / class",
                               lambda v: num(v) + (" (*study*)" if v in study["real_per_class"]["study"]
                                                   else "")),
            "ratio": (f"Synthetic ratio ({variant})", "synthetic / real", ratio_label)}


def section(s: Study, drawn: set) -> list[str]:
    """The report's Sweeps section: per sweep a table, the winner line and the figure."""
    parts = ["## Sweeps", "",
             ("Test accuracy on the real test split against the amount of data, per model. "
              "Tables: mean over seeds with a t-based 95% confidence interval, the best model "
              "of a row in bold; figures: the mean, the seeds' range shaded. The study's own "
              "cells supply the points marked *study*."), ""]
    absent = s.sweeps["real_per_class"]["absent"]  # one results file per model holds both sweeps
    if absent:
        parts += [f"No sweep results for {', '.join(absent)} yet (missing "
                  + ", ".join(f"`{s.layout.sweep / m / 'results.json'}`" for m in absent)
                  + "; run `synthaug sweep`).", ""]
    skipped = _skipped(s)
    if skipped:
        parts += ["Skipped points (the train pool cannot give them): " + "; ".join(skipped)
                  + ".", ""]
    labels = _labels(s)
    for name, sweep in s.sweeps.items():
        heading, what, label = labels[name]
        parts += [f"### {heading}", ""]
        if not sweep["points"]:
            parts += ["Nothing to show.", ""]
            continue
        if name == "ratio":
            parts += [(f"`{s.sweep.ratio_variant}` re-composed with this many synthetic images "
                       "(from " + ", ".join(s.ratio_parts) + ") per real training image; 0 is "
                       "real only."), ""]
        parts += ["Test accuracy %:", "", table(sweep, label, what), ""]
        if name == "real_per_class":
            line = winner_line(sweep)
            if line:
                parts += [line, ""]
        if f"sweep_{name}.png" in drawn:
            parts += [f"![{heading.lower()}](figures/sweep_{name}.png)", ""]
        else:
            parts += ["(No figure: every model has a single point so far.)", ""]
    return parts


def _skipped(s: Study) -> list[str]:
    """One phrase per sweep point the sweep skipped (results.json's "skipped"), with why."""
    return [f"{r['model']}: {r['sweep']} {r['value']}"
            + (f" {r['variant']}" if r.get("variant") else "") + f" ({r['reason']})"
            for r in s.skipped]
