"""When does synthetic data help: test accuracy against real images per class for real-only
and the sweep's `when_variants` (each re-composed on that k's own split, its generators trained
on that split alone), paired tests against real-only at each k, the report's figure and
table, and the generated paragraph that opens the report ("the answer first")."""
from __future__ import annotations

import math

from synthaug.pipeline.report.study import (BASELINE, Cell, Study, mde_text, pct, power_entry,
                                            seeds_text, undecided_text)

CONTROL = "more-real"
# labelled few, unlabelled many: the lines that also see the rest of the train pool without
# its labels (sweep.when_variants' defaults); SEMI is the competent control a generator-on-pool
# arm has to beat (FixMatch), CLASSIC the bar that control has to clear
SEMI, CLASSIC = "fixmatch", "real+classic"
OPEN_SET = (SEMI, "self-training", "real+vae-unlabelled", "real+vae-pretrained")


def lines(results: dict, cells: dict[Cell, dict], k_study: int | None, model: str,
          variants: list[str]) -> dict[str, dict[int, dict[int, float]]]:
    """line (real, then each variant) -> {k: {seed: accuracy}}: the sweep's real_per_class and
    when rows of `model`, and the study's own cells at k_study."""
    out: dict[str, dict[int, dict[int, float]]] = {v: {} for v in [BASELINE, *variants]}
    for row in (results.get(model) or {}).get("rows", []):
        line = BASELINE if row.get("sweep") == "real_per_class" else (
            row.get("variant") if row.get("sweep") == "when" else None)
        if line in out:
            out[line].setdefault(int(row["value"]), {})[row.get("seed", 0)] = row["accuracy"]
    if k_study:
        for (variant, m, seed), c in cells.items():
            if m == model and variant in out:
                out[variant].setdefault(int(k_study), {}).setdefault(seed, c["accuracy"])
    return {name: dict(sorted(pts.items())) for name, pts in out.items() if pts}


def measured(by_line: dict, k_study: int | None) -> bool:
    """Whether any variant line has a point besides the study's own k (a when row)."""
    return any(set(pts) - {k_study} for name, pts in by_line.items() if name != BASELINE)


def compare(by_line: dict) -> dict[str, dict[int, dict]]:
    """line -> {k: mean, low, high, n, values (per seed) and, against real-only on the seeds both have at that k,
    gain, gain_low, gain_high, p, significant (a significant gain) and the test's power:
    sd_diff, mde, seeds_needed, decided (pipeline.report.study.power_entry)}."""
    from synthaug.pipeline.stats.paired import mean_ci, paired_test

    real, out = by_line.get(BASELINE, {}), {}
    for name, pts in by_line.items():
        for k, by_seed in pts.items():
            m = mean_ci(list(by_seed.values()), within=(0.0, 1.0))
            entry = {"mean": m.mean, "low": m.low, "high": m.high, "n": m.n,
                     "values": list(by_seed.values())}
            shared = sorted(set(by_seed) & set(real.get(k, {}))) if name != BASELINE else []
            if len(shared) >= 2:
                t = paired_test([by_seed[sd] for sd in shared], [real[k][sd] for sd in shared])
                entry.update(gain=t.mean_diff, gain_low=t.low, gain_high=t.high, p=t.p_value,
                             significant=t.significant and t.mean_diff > 0, **power_entry(t))
            out.setdefault(name, {})[k] = entry
    return _against_semi(by_line, out)


def _against_semi(by_line: dict, out: dict) -> dict:
    """Every line's `vs_fixmatch` (and the control's `vs_classic`) at each k: the paired
    difference on the shared seeds (diff, low, high, p, n, significant)."""
    from synthaug.pipeline.stats.paired import paired_test

    def vs(a: dict, b: dict) -> dict | None:
        shared = sorted(set(a) & set(b))
        if len(shared) < 2:
            return None
        t = paired_test([a[sd] for sd in shared], [b[sd] for sd in shared])
        return {"diff": t.mean_diff, "low": t.low, "high": t.high, "p": t.p_value, "n": t.n,
                "significant": t.significant}

    for name, pts in out.items():
        for k, entry in pts.items() if name != BASELINE else ():
            ref = by_line.get(CLASSIC if name == SEMI else SEMI, {}).get(k)
            if ref and (d := vs(by_line[name][k], ref)) is not None:
                entry["vs_classic" if name == SEMI else "vs_fixmatch"] = d
    return out


def _gain(e: dict) -> str:
    if "gain" not in e:
        return ""
    p = "-" if math.isnan(e["p"]) else f"{e['p']:.3f}"
    mde = "" if e.get("mde") is None else f"; MDE {100 * e['mde']:.1f}"
    undecided = "" if e.get("decided", True) else ", not decided"
    return (f" ({100 * e['gain']:+.1f}, {100 * e['gain_low']:+.1f} to "
            f"{100 * e['gain_high']:+.1f}; p {p}{', **significant**' if e['significant'] else ''}"
            f"{mde}{undecided})")


def _diff(d: dict) -> str:
    p = "-" if math.isnan(d["p"]) else "< 0.001" if d["p"] < 0.001 else f"{d['p']:.3f}"
    return (f"{100 * d['diff']:+.1f}, {100 * d['low']:+.1f} to {100 * d['high']:+.1f}; p {p}"
            f"{', **significant**' if d['significant'] else ''}")


def _vs(e: dict) -> str:
    """The open-set comparison of a table cell: against fixmatch (or, for it, real+classic)."""
    for key, ref in (("vs_fixmatch", SEMI), ("vs_classic", CLASSIC)):
        if d := e.get(key):
            return f"; vs `{ref}` {_diff(d)}"
    return ""


def table(cmp: dict) -> str:
    """Rows: k; columns: lines; cells: mean test accuracy % (gain vs real-only in points, its
    95% CI and the paired p; then against `fixmatch`, or for it against `real+classic`)."""
    names, ks = list(cmp), sorted({k for pts in cmp.values() for k in pts})
    out = ["| real / class | " + " | ".join(names) + " |", "|---" * (len(names) + 1) + "|"]
    for k in ks:
        cells = [f"{pct(cmp[n][k]['mean'])} ({cmp[n][k]['n']} seeds){_gain(cmp[n][k])}"
                 f"{_vs(cmp[n][k])}"
                 if k in cmp[n] else "-" for n in names]
        out.append(f"| {k} | " + " | ".join(cells) + " |")
    return "\n".join(out)


def results(when: dict[str, dict]) -> dict:
    """results.json entries "when/<line>/<k>/<model>"."""
    return {f"when/{name}/{k}/{model}": {kk: e[kk] for kk in e if kk not in ("significant", "values")}
            for model, cmp in when.items() for name, pts in cmp.items() for k, e in pts.items()}


def section(s: Study, drawn: set) -> list[str]:
    if not s.when:
        return []
    parts = ["## When does it help", "",
             ("Test accuracy against real training images per class. Each line's variant is "
              "re-composed on that k's own split (nested draws from the train pool); its "
              "generators are trained on that split alone, and `more-real` (the positive "
              "control) draws held-back real images. In brackets: the paired difference to "
              "real-only at the same k and seeds, in points, its 95% CI, p and the minimum "
              "detectable effect (MDE, points: 80% power, alpha 0.05, from the seeds' spread "
              "of the differences); *not decided*: not significant with an MDE over 1 point. "
              f"Labelled few, unlabelled many (dashed in the figure): {', '.join(f'`{n}`' for n in OPEN_SET)} "
              "also see the rest of the train pool without its labels; `vs fixmatch`: the "
              "paired difference to the FixMatch control (Sohn et al. 2020), which itself is "
              "compared with `real+classic`."), ""]
    for model, cmp in s.when.items():
        parts += [f"### {model}", "", table(cmp), ""]
        if f"when_{model}.png" in drawn:
            parts += [f"![when: {model}](figures/when_{model}.png)", ""]
    return parts


def _best(entries: list[tuple[str, dict]]) -> tuple[str, dict] | None:
    with_gain = [(n, e) for n, e in entries if "gain" in e]
    return max(with_gain, key=lambda ne: ne[1]["gain"]) if with_gain else None


ONE_SEED = ("one seed gives no interval, test or minimum detectable effect, so this data decides "
            "nothing; set study.seeds to three or more (e.g. -S 'study.seeds=[0,1,2]')")


def answer(s: Study, rows: list[dict]) -> str:
    """The report's first paragraph: which kind, how much and when, from the numbers."""
    from synthaug.pipeline.data.config import MORE_REAL

    k = s.train_per_class or "all"
    out = []
    for model in s.study.models:
        mine = [r for r in rows if r["model"] == model and "vs_real" in r]
        synth = [(r["variant"], {"gain": r["vs_real"]["mean_diff"], **r}) for r in mine
                 if r["variant"] != MORE_REAL and r["variant"] != "real+classic"]
        best = _best(synth)
        if best is None:
            continue
        name, r = best
        vs, worth = r["vs_real"], r.get("worth", {}).get("text")
        nums = (f"{100 * vs['mean_diff']:+.1f} points (95% CI {100 * vs['low']:+.1f} to "
                f"{100 * vs['high']:+.1f}, p {vs['p_value']:.3f}")
        if vs["n"] < 2:  # no spread, so no interval, test or power
            out.append(f"**{model}, {k} real images per class:** the best synthetic variant, "
                       f"`{name}`, against real-only: {100 * vs['mean_diff']:+.1f} points on "
                       f"one seed: {ONE_SEED}.")
            continue
        if vs["significant"]:
            head = (f"{'beats' if vs['mean_diff'] > 0 else 'loses to'} real-only: {nums}, "
                    f"{mde_text(vs.get('mde'))})")
        elif vs.get("decided"):
            head = (f"does not differ from real-only by as much as its MDE: {nums}, "
                    f"{mde_text(vs.get('mde'))})")
        else:
            head = (f"against real-only: {nums}), {undecided_text(vs.get('mde'))}; "
                    + seeds_text(vs.get("seeds_needed"), vs["n"]))
        line = (f"**{model}, {k} real images per class:** the best synthetic variant, "
                f"`{name}`, {head}" + (f"; {worth}" if worth else "") + ".")
        control = next((r for r in mine if r["variant"] == MORE_REAL), None)
        if control:
            c = control["vs_real"]
            if c["significant"] and c["mean_diff"] > 0:
                room = "a gain the harness detects: the room a better generator could take"
            elif c["significant"]:
                room = ("a loss the harness detects: more real images should not cost accuracy, "
                        "so this model's recipe is unstable here")
            elif c.get("decided"):
                room = ("no gain as large as its MDE: at this k even perfect synthetic images had "
                        "little room")
            else:
                room = (f"{undecided_text(c.get('mde'))}, so the room left for synthetic images is "
                        f"unknown; {seeds_text(c.get('seeds_needed'), c['n'])}")
            mde = "" if room.startswith("not decided") else f", {mde_text(c.get('mde'))}"
            line += (f" The positive control (as many more real images) gives "
                     f"{100 * c['mean_diff']:+.1f} points ({100 * c['low']:+.1f} to "
                     f"{100 * c['high']:+.1f}, p {c['p_value']:.3f}{mde}): {room}.")
        out.append(line)
    for model, cmp in (s.when or {}).items():
        ks = sorted({kk for n, pts in cmp.items() if n != BASELINE for kk in pts})
        bits = []
        for kk in ks:
            got = [f"`{n}`{_gain(pts[kk])}" for n, pts in cmp.items()
                   if n != BASELINE and "gain" in pts.get(kk, {})]
            if got:
                bits.append(f"at {kk} per class " + ", ".join(got))
        if bits:
            out.append(f"**When ({model}), against real-only at the same k:** "
                       + "; ".join(bits) + ".")
        if beyond := open_set(cmp):
            out.append(f"**Beyond the unlabelled images ({model}):** {beyond}")
    return "\n\n".join(out)


def open_set(cmp: dict) -> str:
    """Which arm, if any, adds beyond the unlabelled images themselves: at each k with the
    FixMatch control, whether it clears real+classic (else it is no competent control), and
    every other arm against it ("" without the control)."""
    bits = []
    for k, e in sorted((cmp.get(SEMI) or {}).items()):
        head = f"at {k} per class `{SEMI}`"
        if d := e.get("vs_classic"):
            works = d["significant"] and d["diff"] > 0
            head += (f" {'beats' if works else 'does not beat'} `{CLASSIC}` ({_diff(d)})"
                     + ("" if works else ", so it is not yet a competent control and a gain "
                        "over it is weak evidence"))
        arms = [(n, pts[k]["vs_fixmatch"]) for n, pts in cmp.items()
                if n not in (BASELINE, SEMI, CLASSIC, CONTROL) and "vs_fixmatch" in pts.get(k, {})]
        if arms:
            better = [f"`{n}`" for n, d in arms if d["significant"] and d["diff"] > 0]
            head += ("; against it " + ", ".join(f"`{n}` ({_diff(d)})" for n, d in arms) + ": "
                     + (f"{', '.join(better)} adds beyond the unlabelled images themselves"
                        if better else "no arm adds beyond the unlabelled images themselves"))
        bits.append(head)
    return "; ".join(bits) + "." if bits else ""
