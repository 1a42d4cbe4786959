"""`synthaug quality`: which synthetic sets are worth training on, and which merely copy."""
from __future__ import annotations

import json
import math
from pathlib import Path
from typing import Annotated

import typer

from stages.common import ParamsOpt, SetOpt, params_from, say, user_errors

REFERENCES = ("real-val", "noise")
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


@user_errors
def command(params: ParamsOpt = Path("params.yaml"), set_: SetOpt = None,
            progress: Annotated[bool, typer.Option(help="progress bars (on a terminal)")] = True) -> None:
    """Score every synthetic set under `sample.sets` against the real train split.

    Reference rows: `real-val` (the real validation split: what a perfect generator scores)
    and `noise` (uniform noise: the floor). Per set: FID-domain and KID-domain (Frechet and
    kernel distances in the judge's penultimate-layer features; not comparable with Inception
    FID), FID-lite0 (EfficientNet-Lite0 ImageNet features, when its weights are there),
    precision / recall (k-NN manifolds) and density / coverage, CAS (a classifier trained on
    the set alone, tested on the real test split) and CAS / real (over the judge's own test
    accuracy), judge agreement, memorisation (the share of near-copies of training images) and
    the classes that fail.

    Writes paths.quality/quality.md (the table, ranks and figures), quality.json (for
    `dvc metrics show`) and figures/ (FID-domain vs CAS, and each set's closest pairs to
    training images). Needs `synthaug judge` and `synthaug sample` first.
    """
    p = params_from(params, set_)
    from pipeline.core.errors import SynthaugError
    from pipeline.data.storage import is_dataset

    if not (p.paths.judge / "config.json").is_file():
        raise SynthaugError(f"{p.paths.judge}: no judge; run `synthaug judge` (or `dvc repro`) first")
    missing = [n for n in p.sample.sets if not is_dataset(p.paths.synthetic / n)]
    if missing:
        raise SynthaugError(f"{p.paths.synthetic / missing[0]}: set {missing[0]!r} not sampled; run "
                            f"`synthaug sample {' '.join(missing)}` (or `dvc repro`) first")
    from tqdm.auto import tqdm

    from pipeline.classifiers.classifier import load_classifier
    from pipeline.classifiers.config import TrainConfig
    from pipeline.core.device import pick_device
    from pipeline.report.figures import closest_pairs, quality_scatter
    from pipeline.evaluation.quality import QualityContext, assess, noise_set, recipe
    from pipeline.data.storage import atomic_output, read_dataset

    q = p.quality
    device = pick_device(q.device)
    train, val, test = (read_dataset(p.paths.prepared / s, mmap=False) for s in ("train", "val", "test"))
    judge, _ = load_classifier(p.paths.judge, device)
    ctx = QualityContext.build(train, val, test, judge, q, recipe(TrainConfig(), q), p.models, device)
    per_class = max(1, len(val) // len(val.class_names))
    noise_images, noise_labels = noise_set(per_class, train.shape, len(train.class_names), q.seed)
    entries = [("real-val", val.images, val.labels)]
    for name in p.sample.sets:
        ds = read_dataset(p.paths.synthetic / name, mmap=False)
        entries.append((name, ds.images, ds.labels))
    entries.append(("noise", noise_images, noise_labels))
    rows = []
    with atomic_output(p.paths.quality) as tmp:
        figs = tmp / "figures"
        figs.mkdir()
        for name, images, labels in tqdm(entries, desc="quality", unit="set",
                                          disable=None if progress else True):
            # the val split is scored with model selection on train (not on itself)
            row = assess(name, images, labels, ctx,
                         (train.images, train.labels) if name == "real-val" else None)
            row["kind"] = "reference" if name in REFERENCES else "synthetic"
            rows.append(row)
            say(f"quality {name}: " + "  ".join(
                f"{METRICS[k][0]} {METRICS[k][2].format(row[k])}" for k in METRICS
                if row.get(k) is not None))
            if name != "noise":
                closest_pairs(images, train.images, row["nearest_distance"], row["nearest_index"],
                              figs / f"closest_{name}.png",
                              title=f"{name}: the images closest to a training image (bottom)")
        quality_scatter(rows, figs / "fid_vs_cas.png")
        metrics = {r["name"]: {k: _num(r.get(k)) for k in (*METRICS, "near_copy_fraction")
                               if r.get(k) is not None} for r in rows}
        (tmp / "quality.json").write_text(json.dumps(metrics, indent=2) + "\n")
        (tmp / "quality.md").write_text(_markdown(p, rows))
    say(table(rows))
    say(f"-> {p.paths.quality / 'quality.md'}")


def _num(v):
    return None if v is None or (isinstance(v, float) and math.isnan(v)) else v


def table(rows: list[dict]) -> str:
    from pipeline.data.compose import markdown_table

    cols = [k for k in METRICS if any(r.get(k) is not None for r in rows)]
    head = ["set", "images", *(METRICS[k][0] + (" ↓" if METRICS[k][1] < 0 else " ↑") for k in cols),
            "near-copies", "failing classes"]
    body = []
    for r in rows:
        name = f"*{r['name']}*" if r["kind"] == "reference" else r["name"]
        body.append([name, str(r["images"]),
                     *(METRICS[k][2].format(r[k]) if r.get(k) is not None else "-" for k in cols),
                     f"{r['near_copy_fraction']:.1%}",
                     ", ".join(map(str, r.get("failing_classes") or [])) or "-"])
    return markdown_table(head, body)


def ranks(rows: list[dict]) -> dict[str, list[dict]]:
    """metric -> rows from best to worst (RANKED metrics that some row has)."""
    out = {}
    for k in RANKED:
        have = [r for r in rows if r.get(k) is not None and not math.isnan(r[k])]
        if have:
            out[k] = sorted(have, key=lambda r: -METRICS[k][1] * r[k])
    return out


def ranking_check(rows: list[dict]) -> dict[str, str]:
    """metric -> "yes" when the ranking holds: noise last, and on the distance and diversity
    metrics real-val first ("yes (tied)" with ties); on the fidelity metrics sets above
    real-val are named, not failed; else "no"."""
    out = {}
    for k, order in ranks(rows).items():
        value = {r["name"]: r[k] for r in order}
        if "real-val" not in value or "noise" not in value:
            continue
        best, worst = order[0][k], order[-1][k]
        first, last = value["real-val"] == best, value["noise"] == worst
        ties = (sum(v == best for v in value.values()) > 1) or (sum(v == worst for v in value.values()) > 1)
        if k in FIDELITY and last and not first:
            above = [r["name"] for r in order if -METRICS[k][1] * (r[k] - value["real-val"]) < 0]
            out[k] = f"yes; above real-val: {', '.join(above)} (prototypical images)"
            continue
        out[k] = ("yes (tied)" if ties else "yes") if first and last else "no"
    return out


def _markdown(p, rows: list[dict]) -> str:
    order, verdict = ranks(rows), ranking_check(rows)
    checks = [f"| {METRICS[k][0]} | {order[k][0]['name']} | {order[k][-1]['name']} | "
              f"{verdict[k] if verdict[k] != 'no' else '**no**'} |" for k in verdict]
    best = max((r for r in rows if r["kind"] == "synthetic" and r.get("cas") is not None),
               key=lambda r: r["cas"], default=None)

    def rel(path: Path) -> Path:  # quality.md sits in paths.quality
        return path if path.is_absolute() else Path("../..") / path

    parts = [
        "# Synthetic data quality",
        "",
        ("Every synthetic set against the real train split; `real-val` (the real validation "
         "split) and `noise` are the reference rows. FID-domain and KID-domain are measured in "
         f"the penultimate-layer features of the judge (`{p.quality.model}` trained on the real "
         "train split): they rank sets of this data set, and are not Inception FID. "
         "Precision/recall: k-NN manifolds (Kynkäänniemi et al. 2019), density/coverage "
         f"(Naeem et al. 2020), k = {p.quality.k}. CAS: a classifier trained on the set alone, "
         "tested on the real test split; CAS / real divides by the judge's test accuracy. "
         "Near-copies: images closer to a training image than "
         f"{p.quality.copy_threshold} x that image's distance to its own nearest neighbour."),
        "",
        table(rows),
        "",
    ]
    if best is not None:
        parts += [(f"Best CAS: **{best['name']}**, {best['cas']:.1%} = {best['cas_ratio']:.0%} of "
                   "the real-trained classifier's test accuracy."), ""]
    parts += ["## Ranking check", "",
              ("Noise must come last on every metric, and real-val first on the distance and "
               "diversity ones (FID, KID, recall, coverage, CAS). Precision and density measure "
               "fidelity only: a generator that draws typical, prototypical images may rightly "
               "score above real-val on them, which is named here, not failed."), "",
              "| metric | best | worst | holds |", "|---|---|---|---|", *checks, "",
              "![FID-domain vs CAS](figures/fid_vs_cas.png)", "", "## Sets", ""]
    for r in rows:
        if r["kind"] == "synthetic":
            parts += [f"### {r['name']}", "",
                      f"![{r['name']} samples]({rel(p.paths.synthetic / r['name'] / 'grid.png')})",
                      "", f"![closest pairs](figures/closest_{r['name']}.png)", ""]
    return "\n".join(parts)
