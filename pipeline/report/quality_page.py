"""The quality page (quality.md) and its summary in the study report, as functions over the
quality stage's record: quality.json's content, set name -> {"images", the METRICS it has,
"near_copy_fraction", "failing_classes" and, where the stage bootstrapped them, "ci" (metric ->
its 95% interval [lo, hi]), "reference_images" and "min_reference"}, in the order the sets
were scored. The reference rows are the sets named in REFERENCES; every other set is
synthetic."""
from __future__ import annotations

import math
import os
from pathlib import Path

from synthaug.pipeline.quality.config import REFERENCES

# column -> (header, better: +1 higher / -1 lower, format)
METRICS = {
    "fid_domain": ("FID-domain", -1, "{:.2f}"),
    "kid_domain": ("KID-domain", -1, "{:.4f}"),
    "fid_lite0": ("FID-lite0", -1, "{:.1f}"),
    "precision": ("precision", 1, "{:.2f}"),
    "recall": ("recall", 1, "{:.2f}"),
    "density": ("density", 1, "{:.2f}"),
    "coverage": ("coverage", 1, "{:.2f}"),
    "cas": ("CAS %", 1, "{:.1%}"),
    "cas_ratio": ("CAS / real", 1, "{:.2f}"),
    "judge_accuracy": ("judge agrees", 1, "{:.1%}"),
}
# the quality ranking; judge agreement is a label check (AC-GAN-style generators beat real data
# on it by design), reported but not ranked
RANKED = [k for k in METRICS if k != "judge_accuracy"]
# fidelity metrics: a generator that draws prototypical images may rightly score above real-val
# on them (Naeem et al. 2020); the check asks only that noise comes last
FIDELITY = ("precision", "density")
# measured against the real reference in the judge's features: bootstrapped, and unreliable
# below pipeline.quality.distribution.min_reference images
DISTRIBUTION = ("fid_domain", "kid_domain", "precision", "recall", "density", "coverage")


def _value(v):
    """A metric as JSON can hold it: NaN becomes None (null)."""
    return None if v is None or (isinstance(v, float) and math.isnan(v)) else v


def record(rows: list[dict]) -> dict[str, dict]:
    """The quality stage's record (quality.json) from its `assess` rows: per set the image
    count, every metric it has (a NaN one as null: computed, but undefined), the near-copy
    fraction and the failing classes."""
    out = {}
    for r in rows:
        entry = {"images": r["images"]}
        entry.update({k: _value(r.get(k)) for k in (*METRICS, "near_copy_fraction")
                      if r.get(k) is not None})
        entry["failing_classes"] = [str(c) for c in r.get("failing_classes") or []]
        if r.get("ci"):
            entry["ci"] = {k: [_value(v) for v in lohi] for k, lohi in r["ci"].items()}
        for k in ("reference_images", "min_reference"):
            if r.get(k) is not None:
                entry[k] = r[k]
        out[r["name"]] = entry
    return out


def _cell(k: str, m: dict) -> str:
    """A metric as the table shows it: `-` where the set lacks it, `nan` where it is null (a
    NaN: computed, but undefined)."""
    if k not in m:
        return "-"
    fmt = METRICS[k][2]
    text = fmt.format(float("nan") if m[k] is None else m[k])
    lohi = (m.get("ci") or {}).get(k)
    if lohi and None not in lohi:
        text += f" [{fmt.format(lohi[0])}, {fmt.format(lohi[1])}]"
    return text


def table(sets: dict[str, dict]) -> str:
    """The quality table: one row per set (references in italics), one column per metric that
    some set has; arrows say which way is better."""
    from synthaug.pipeline.data.compose import markdown_table

    cols = [k for k in METRICS if any(k in m for m in sets.values())]
    head = ["set", "images", *(METRICS[k][0] + (" ↓" if METRICS[k][1] < 0 else " ↑") for k in cols),
            "near-copies", "failing classes"]
    body = []
    for name, m in sets.items():
        copies = m.get("near_copy_fraction")
        body.append([f"*{name}*" if name in REFERENCES else name, str(m.get("images", "?")),
                     *(_cell(k, m) for k in cols),
                     "-" if copies is None else f"{copies:.1%}",
                     ", ".join(map(str, m.get("failing_classes") or [])) or "-"])
    return markdown_table(head, body)


def ranks(sets: dict[str, dict]) -> dict[str, list[str]]:
    """metric -> set names from best to worst (RANKED metrics that some set has; ties keep the
    record's order)."""
    out = {}
    for k in RANKED:
        have = [n for n, m in sets.items() if m.get(k) is not None and not math.isnan(m[k])]  # null: NaN
        if have:
            out[k] = sorted(have, key=lambda n: -METRICS[k][1] * sets[n][k])
    return out


def _better(k: str, a: float, b: float) -> bool:
    return METRICS[k][1] * (a - b) > 0


def _clear(sets: dict[str, dict], k: str, a: str, b: str) -> bool:
    """Whether set `a` is better than `b` on `k` beyond their 95% intervals (the intervals do
    not overlap); by the point values where either has no interval."""
    ia, ib = (sets[a].get("ci") or {}).get(k), (sets[b].get("ci") or {}).get(k)
    if not ia or not ib or None in ia or None in ib:
        return _better(k, sets[a][k], sets[b][k])
    return ia[0] > ib[1] if METRICS[k][1] > 0 else ia[1] < ib[0]


def unreliable(sets: dict[str, dict]) -> tuple[int, int] | None:
    """(reference images, the minimum) when the reference is smaller than the minimum under
    which the distribution metrics are unreliable (pipeline.quality.distribution.min_reference)."""
    for m in sets.values():
        n, least = m.get("reference_images"), m.get("min_reference")
        if n is not None and least is not None:
            return (n, least) if n < least else None
    return None


def ranking_check(sets: dict[str, dict]) -> dict[str, str]:
    """metric -> "yes" when the ranking holds: noise last, and on the distance and diversity
    metrics real-val first ("yes (tied)" with ties); on the fidelity metrics sets above
    real-val are named, not failed; "no" where a set breaks the ranking beyond the 95%
    intervals (or by its value, where there are none); "within the intervals: ..." where it
    breaks it by less (the intervals overlap: the data cannot tell). On a reference smaller
    than `min_reference` the distribution metrics' verdicts say so. Metrics without both
    references are left out."""
    out, small = {}, unreliable(sets)
    for k, order in ranks(sets).items():
        value = {n: sets[n][k] for n in order}
        if "real-val" not in value or "noise" not in value:
            continue
        best, worst = value[order[0]], value[order[-1]]
        ties = (sum(v == best for v in value.values()) > 1) or (sum(v == worst for v in value.values()) > 1)
        above = [n for n in order if n != "real-val" and _better(k, value[n], value["real-val"])]
        below = [n for n in order if n != "noise" and _better(k, value["noise"], value[n])]
        if not above and not below:
            verdict = "yes (tied)" if ties else "yes"
        elif k in FIDELITY and not below:
            verdict = f"yes; above real-val: {', '.join(above)} (prototypical images)"
        else:
            if k in FIDELITY:
                above = []
            clear = ([n for n in above if _clear(sets, k, n, "real-val")]
                     + [n for n in below if _clear(sets, k, "noise", n)])
            broken = ([f"above real-val: {', '.join(above)}"] if above else []) + \
                ([f"below noise: {', '.join(below)}"] if below else [])
            verdict = "no" if clear else f"within the intervals: {'; '.join(broken)}"
        if small and k in DISTRIBUTION:
            verdict += f"; unreliable (reference of {small[0]} < {small[1]} images)"
        out[k] = verdict
    return out


def best_cas(sets: dict[str, dict]) -> str | None:
    """The synthetic set with the highest CAS (the first of equals), None without CAS."""
    have = [n for n, m in sets.items() if n not in REFERENCES and m.get("cas") is not None]
    return max(have, key=lambda n: sets[n]["cas"], default=None)


def summary(sets: dict[str, dict], heading: str = "##") -> list[str]:
    """Markdown lines: the table, the best CAS and the ranking check (under a `heading`-level
    title: `##` on the quality page, `###` in the study report)."""
    order, verdict = ranks(sets), ranking_check(sets)
    checks = [f"| {METRICS[k][0]} | {order[k][0]} | {order[k][-1]} | "
              f"{verdict[k] if verdict[k] != 'no' else '**no**'} |" for k in verdict]
    parts = [table(sets), ""]
    if any(m.get("ci") for m in sets.values()):
        parts += [("In brackets: 95% bootstrap intervals (resamples of the reference and the "
                   "set, the features computed once; shifted by the bootstrap's bias estimate)."),
                  ""]
    if small := unreliable(sets):
        parts += [(f"**Unreliable distance metrics:** the real reference holds {small[0]} "
                   f"images, fewer than {small[1]} (twice the feature dimension, at least 200). "
                   "FID/KID-domain and precision/recall/density/coverage are shown with their "
                   "intervals but rank sets of this data only loosely; add labelled images "
                   "before reading a generator's ranking off them."), ""]
    best = best_cas(sets)
    if best is not None:
        m = sets[best]
        ratio = "?" if m.get("cas_ratio") is None else f"{m['cas_ratio']:.0%}"
        parts += [(f"Best CAS: **{best}**, {m['cas']:.1%} = {ratio} of the real-trained "
                   "classifier's test accuracy."), ""]
    return parts + [f"{heading} Ranking check", "",
                    ("Noise must come last on every metric, and real-val first on the distance "
                     "and diversity ones (FID, KID, recall, coverage, CAS). Precision and density "
                     "measure fidelity only: a generator that draws typical, prototypical images "
                     "may rightly score above real-val on them, which is named here, not failed. "
                     "A set that breaks the ranking only within the 95% intervals (they overlap) "
                     "is named, not failed: the data cannot tell those sets apart."),
                    "", "| metric | best | worst | holds |", "|---|---|---|---|", *checks]


def page(sets: dict[str, dict], model: str, k: int, copy_threshold: float, synthetic: Path,
         folder: Path, reference: str = "the train split") -> str:
    """quality.md: what the metrics are, the summary, the scatter figure and per synthetic set
    its sample grid (under `synthetic`, linked relative to `folder`, where quality.md sits)
    and closest pairs. `model`, `k`, `copy_threshold`: the quality section's settings;
    `reference`: what the distribution metrics compare with."""
    if not synthetic.is_absolute():
        synthetic = Path(os.path.relpath(synthetic, folder))
    parts = [
        "# Synthetic data quality",
        "",
        (f"Every synthetic set against real images no generator saw ({reference}: FID, KID, "
         "precision, recall, density, coverage) and the train split (near-copies); "
         "`real-val` (the real validation "
         "split) and `noise` are the reference rows. FID-domain and KID-domain are measured in "
         f"the penultimate-layer features of the judge (`{model}` trained on the real "
         "train split): they rank sets of this data set, and are not Inception FID. "
         "Precision/recall: k-NN manifolds (Kynkäänniemi et al. 2019), density/coverage "
         f"(Naeem et al. 2020), k = {k}. CAS: a classifier trained on the set alone, "
         "tested on the real test split; CAS / real divides by the judge's test accuracy. "
         "Near-copies: images closer to a training image than "
         f"{copy_threshold} x that image's distance to its own nearest neighbour."),
        "",
        *summary(sets),
        "",
        "![FID-domain vs CAS](figures/fid_vs_cas.png)", "", "## Sets", "",
    ]
    for name in sets:
        if name not in REFERENCES:
            parts += [f"### {name}", "", f"![{name} samples]({synthetic / name / 'grid.png'})",
                      "", f"![closest pairs](figures/closest_{name}.png)", ""]
    return "\n".join(parts)
