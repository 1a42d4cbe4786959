"""The cross-validated comparison (the crossval stage's record): per model, each variant's
paired difference to real-only over the units (repeat x fold) on the same test images, with
the corrected repeated k-fold t-test (pipeline.stats.paired.corrected_test), its MDE and what
would decide an undecided row; the report's section, its answer sentence and results.json's
entries."""
from __future__ import annotations

import math

import numpy as np

from synthaug.pipeline.report.study import mde_text, pct, plural, power_entry, undecided_text

BASELINE = "real"


def read_record(root) -> dict | None:
    """`root`/results.json (paths.crossval), or None when the crossval stage has not run."""
    import json
    from pathlib import Path

    from synthaug.pipeline.core.errors import SynthaugError

    path = Path(root) / "results.json"
    if not path.is_file():
        return None
    try:
        return json.loads(path.read_text())
    except ValueError as e:
        raise SynthaugError(f"{path}: not readable JSON ({e}); rerun `synthaug crossval`") from None


def rho(record: dict) -> float:
    """Test images / training-side images of a unit: 1 / (folds - 1)."""
    return 1.0 / (record["folds"] - 1)


def summarise(record: dict) -> list[dict]:
    """One row per (variant, model) in the study's order, shaped as the holdout rows
    (pipeline.report.results.summarise: `seeds` are the unit indices, so the forest plot draws
    both), plus `images`: (tested, wins, losses) per image and repeat against real-only."""
    from synthaug.pipeline.stats.paired import corrected_test, mean_ci

    by, truth = {}, {}
    for u in record["units"]:
        truth[u["repeat"] * record["folds"] + u["fold"]] = np.asarray(u["labels"])
    for r in record["rows"]:
        by.setdefault((r["variant"], r["model"]), {})[r["repeat"] * record["folds"] + r["fold"]] = r
    out = []
    for variant in record["variants"]:
        for model in record["models"]:
            mine = by.get((variant, model))
            if not mine:
                continue
            units = sorted(mine)
            acc = [mine[u]["accuracy"] for u in units]
            m = mean_ci(acc, within=(0.0, 1.0))
            row = {"variant": variant, "model": model, "seeds": units, "values": acc,
                   "mean": m.mean, "low": m.low, "high": m.high, "std": m.std,
                   "macro_f1": float(np.mean([mine[u]["macro_f1"] for u in units]))}
            base = by.get((BASELINE, model), {})
            if variant != BASELINE and all(u in base for u in units):
                t = corrected_test(acc, [base[u]["accuracy"] for u in units], rho(record))
                row["vs_real"] = {"mean_diff": t.mean_diff, "low": t.low, "high": t.high,
                                  "p_value": t.p_value, "significant": t.significant, "n": t.n,
                                  **power_entry(t)}
                row["images"] = _per_image([mine[u] for u in units], [base[u] for u in units],
                                           [truth[u] for u in units])
                if t.sd_diff == 0:  # every unit the same difference: no spread to test with
                    row["vs_real"].update(agreement_bound(row["images"]))
            out.append(row)
    return out


def agreement_bound(images: dict, level: float = 0.95) -> dict:
    """For a comparison whose units all differ by the same amount (often 0: the two models
    predict alike), the t-test has no spread to go on and its MDE would read 0. The MDE is
    then the one-sided `level` upper bound (Clopper-Pearson) on the share of test images on
    which the two models differ, at the images tested: no difference larger than that is
    ruled out. Decided only when that bound is at most SMALL_EFFECT."""
    from scipy import stats

    from synthaug.pipeline.report.study import SMALL_EFFECT

    differ, tested = images["wins"] + images["losses"], images["tested"]
    bound = 1.0 if differ >= tested else float(stats.beta.ppf(level, differ + 1, tested - differ))
    return {"mde": bound, "decided": bound <= SMALL_EFFECT, "seeds_needed": None}


def _per_image(rows: list[dict], base: list[dict], truth: list[np.ndarray]) -> dict:
    """Per test image and repeat, paired with real-only's prediction of the same image: how
    many the variant gets right where real-only does not (wins), and the reverse."""
    wins = losses = tested = 0
    for r, b, y in zip(rows, base, truth, strict=True):
        ok_r, ok_b = np.asarray(r["pred"]) == y, np.asarray(b["pred"]) == y
        wins += int(np.sum(ok_r & ~ok_b))
        losses += int(np.sum(~ok_r & ok_b))
        tested += len(y)
    return {"tested": tested, "wins": wins, "losses": losses}


def verdict(vs: dict) -> str:
    if vs["significant"]:
        return "better" if vs["mean_diff"] > 0 else "worse"
    if vs.get("decided"):
        return f"no difference as large as its {mde_text(vs.get('mde'))}"
    return undecided_text(vs.get("mde"))


def decide_text(vs: dict, folds: int, repeats: int, labelled: int) -> str:
    """What would decide an undecided row: more repeats (units_needed / folds), or, when no
    number of repeats can (the corrected variance keeps a floor), more labelled images: the
    factor that brings the MDE down to the observed difference if the units' spread shrinks
    as 1/sqrt(test images), as binomial test noise does (an assumption, said so)."""
    needed, d, mde = vs.get("seeds_needed"), abs(vs["mean_diff"]), vs.get("mde")
    if needed is not None:
        more = max(repeats + 1, math.ceil(needed / folds))
        return f"about {more} repeats of {folds} folds (`-S study.repeats={more}`) would"
    if not mde or d == 0:
        return "no number of repeats would; only more labelled images would"
    factor = (mde / d) ** 2
    return (f"no number of repeats would (the corrected variance keeps a floor); about "
            f"{factor:.0f}x the labelled images (about {math.ceil(factor * labelled)}) would, "
            "if the folds' spread shrinks as binomial test noise does, as 1/sqrt(test images)")


def table(rows: list[dict], record: dict) -> str:
    head = ["| variant | model | accuracy (mean over units) | vs real (95% CI) | p | MDE | "
            "images won / lost | verdict |", "|---|---|---|---|---|---|---|---|"]
    lines = []
    for r in rows:
        vs = r.get("vs_real")
        if vs is None:
            lines.append(f"| {r['variant']} | {r['model']} | {pct(r['mean'])}% | - | - | - | - "
                         "| baseline |")
            continue
        im = r["images"]
        p = "-" if math.isnan(vs["p_value"]) else f"{vs['p_value']:.3f}"
        lines.append(f"| {r['variant']} | {r['model']} | {pct(r['mean'])}% | "
                     f"{100 * vs['mean_diff']:+.1f} ({100 * vs['low']:+.1f} to "
                     f"{100 * vs['high']:+.1f}) | {p} | "
                     f"{'-' if vs['mde'] is None else format(100 * vs['mde'], '.1f')} | "
                     f"{im['wins']} / {im['losses']} of {im['tested']} | {verdict(vs)} |")
    return "\n".join(head + lines)


def section(record: dict | None, rows: list[dict], drawn: set) -> list[str]:
    """The report's "Protocol" section: the rule's choice, and under k-fold the comparison."""
    if record is None:
        return ["## Protocol", "", "The crossval stage has not run (no record); run "
                "`synthaug crossval` (or `dvc repro`).", ""]
    if record["protocol"] != "kfold":
        return ["## Protocol", "", f"Holdout: every accuracy is on the prepared test split "
                f"(the rule: {record['why']}).", ""]
    units = record["folds"] * record["repeats"]
    parts = ["## Protocol: cross-validated comparison", "",
             (f"The rule: {record['why']}. Every one of the "
              f"{record['labelled']} labelled images was tested once per repeat: "
              f"{record['folds']} stratified folds x {plural(range(record['repeats']), 'repeat')}"
              f" = {units} units. Each unit's generators, classic copies and classifiers "
              "were trained on its own k-per-class split (model selection on its own val "
              "split), then tested once on its fold, with its own seed. *vs real* pairs each "
              "unit with real-only's on the same test images; its 95% CI and p are the "
              "corrected repeated k-fold t-test (Nadeau and Bengio 2003: variance x (1/units "
              f"+ 1/(folds - 1))), the MDE the same test's at 80% power (where every unit "
              "differs by the same amount the test has no spread: the MDE is then the 95% "
              "upper bound on the share of test images the two models disagree on). *Images "
              "won / lost*: test images (per repeat) the variant gets right where real-only "
              "does not, and the reverse."), "", table(rows, record), ""]
    if "crossval.png" in drawn:
        parts += ["![cross-validated difference to real-only](figures/crossval.png)", ""]
    undecided = [r for r in rows if "vs_real" in r and not r["vs_real"]["decided"]]
    if undecided:
        r = max(undecided, key=lambda r: abs(r["vs_real"]["mean_diff"]))
        parts += [f"What would decide the undecided rows: for the largest, `{r['variant']}` "
                  f"({r['model']}, {100 * r['vs_real']['mean_diff']:+.1f} points), "
                  + decide_text(r["vs_real"], record["folds"], record["repeats"],
                                record["labelled"]) + ".", ""]
    if record.get("skipped"):
        parts += ["Skipped: " + "; ".join(f"`{s['variant']}` ({s['reason']})"
                                          for s in record["skipped"]) + ".", ""]
    return parts


def answer(record: dict | None, rows: list[dict]) -> str | None:
    """The answer paragraph's cross-validated sentence per model (k-fold only)."""
    if not record or record["protocol"] != "kfold":
        return None
    out = []
    for model in record["models"]:
        mine = [r for r in rows if r["model"] == model and "vs_real" in r]
        if not mine:
            continue
        better = [r["variant"] for r in mine if r["vs_real"]["significant"]
                  and r["vs_real"]["mean_diff"] > 0]
        worse = [r["variant"] for r in mine if r["vs_real"]["significant"]
                 and r["vs_real"]["mean_diff"] < 0]
        open_ = [r for r in mine if not r["vs_real"]["decided"]]
        bits = []
        if better:
            bits.append("better than real-only: " + ", ".join(f"`{v}`" for v in better))
        if worse:
            bits.append("worse: " + ", ".join(f"`{v}`" for v in worse))
        if open_:
            mdes = [100 * r["vs_real"]["mde"] for r in open_ if r["vs_real"]["mde"] is not None]
            span = (f" (MDE {min(mdes):.1f}-{max(mdes):.1f} points)" if mdes else "")
            bits.append(f"not decided by this data: {len(open_)} of {len(mine)}{span}")
        settled = [r for r in mine if r["vs_real"]["decided"] and not r["vs_real"]["significant"]]
        if settled:
            bits.append("no difference of a point or more: "
                        + ", ".join(f"`{r['variant']}`" for r in settled))
        out.append(f"**{model}, cross-validated over all {record['labelled']} labelled images "
                   f"({record['folds']} folds x {record['repeats']}):** " + "; ".join(bits) + ".")
    return "\n\n".join(out) or None


def results(rows: list[dict], record: dict | None) -> dict:
    """results.json's entries: the protocol, and under k-fold "crossval/<variant>/<model>"."""
    if record is None:
        return {}
    out = {"protocol": {"protocol": record["protocol"], "why": record["why"],
                        "folds": record["folds"], "repeats": record["repeats"],
                        "labelled": record["labelled"]}}
    for r in rows:
        e = {"accuracy_mean": r["mean"], "units": len(r["seeds"])}
        if "vs_real" in r:
            vs = r["vs_real"]
            e.update(gain_vs_real=vs["mean_diff"], gain_ci_low=vs["low"],
                     gain_ci_high=vs["high"],
                     p_vs_real=None if math.isnan(vs["p_value"]) else vs["p_value"],
                     mde_vs_real=vs["mde"], decided_vs_real=vs["decided"],
                     units_needed_vs_real=vs["seeds_needed"], images_vs_real=r["images"])
        out[f"crossval/{r['variant']}/{r['model']}"] = e
    return out

