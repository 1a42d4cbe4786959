"""What the study report is made of: where the stages' outputs live (`Layout`) and what they
left there (`Study`), plus the few text helpers every section uses. The report stage fills a
`Study` (pipeline.report.inputs), the other modules here turn it into figures, results.json
and report.md."""
from __future__ import annotations

import os
from dataclasses import dataclass, field, fields
from pathlib import Path

from synthaug.pipeline.experiments.config import StudyConfig, SweepConfig

BASELINE = "real"
SPLITS = ("train", "val", "test")
Cell = tuple[str, str, int]  # (variant, model, seed)


@dataclass(frozen=True)
class Layout:
    """The folders the report reads, as the user named them (the page quotes them), and
    `report`, the folder report.md sits in (its links are relative to it)."""
    report: Path = Path("reports")
    prepared: Path = Path("data/prepared")
    augmented: Path = Path("data/augmented")
    variants: Path = Path("data/variants")
    synthetic: Path = Path("data/synthetic")
    sweep: Path = Path("metrics/sweep")
    quality: Path = Path("reports/quality")
    evaluate_metrics: Path = Path("metrics/evaluate")
    train_metrics: Path = Path("metrics/train")
    models: Path = Path("models/classifiers")  # only each cell's config.json: its run id
    timings: Path = Path("metrics/timings")

    @classmethod
    def of(cls, paths) -> Layout:
        """From any object with these attributes (the root params' `paths`)."""
        return cls(**{f.name: Path(getattr(paths, f.name)) for f in fields(cls)})

    def rel(self, path: Path) -> Path:
        """`path` as a link from report.md (absolute paths stay as they are)."""
        return path if path.is_absolute() else Path(os.path.relpath(path, self.report))


@dataclass
class Study:
    """The study's settings and what the stages left.

    cells: (variant, model, seed) -> metrics.json's content plus "history" (history.json's,
    [] without one); runs: every cell of the matrix -> its run sub-path; missing: the runs
    without metrics. splits: prepared split -> packed data set; panels: the sample figure's
    data sets (dicts: title, subtitle, images, labels, class_names); unsampled: sample sets
    without a packed set; training_sets: variant -> its composed set's meta; sweeps: see
    pipeline.report.sweeps.merge; quality: quality.json's content, None without one; when:
    model -> pipeline.report.when.compare of its lines. crossval: the crossval stage's record
    (None before it ran), crossval_rows: its comparison (k-fold only).
    ratio / ratio_parts: the ratio and synthetic parts of `sweep.ratio_variant`."""
    study: StudyConfig
    cells: dict[Cell, dict]
    layout: Layout = field(default_factory=Layout)
    sweep: SweepConfig = field(default_factory=SweepConfig)
    train_per_class: int | None = None
    ratio: float | None = None
    ratio_parts: list[str] = field(default_factory=list)
    runs: dict[Cell, Path] = field(default_factory=dict)
    missing: list[str] = field(default_factory=list)
    splits: dict = field(default_factory=dict)
    panels: list[dict] = field(default_factory=list)
    unsampled: list[str] = field(default_factory=list)
    training_sets: dict[str, dict] = field(default_factory=dict)
    sweeps: dict | None = None
    quality: dict | None = None
    when: dict | None = None  # model -> pipeline.report.when.compare(...) of its lines
    skipped: list[dict] = field(default_factory=list)  # sweep points skipped: model + record
    crossval: dict | None = None  # the crossval stage's record (protocol, units, rows)
    crossval_rows: list[dict] = field(default_factory=list)  # pipeline.report.crossval.summarise

    def run(self, cell: Cell) -> Path:
        """A cell's run sub-path (variant/model/seedN unless `runs` says otherwise)."""
        return self.runs.get(cell) or Path(cell[0]) / cell[1] / f"seed{cell[2]}"

    def best(self) -> Cell:
        """The cell with the highest test accuracy (the first of equals)."""
        return max(self.cells, key=lambda k: self.cells[k]["accuracy"])


def plural(items, word: str) -> str:
    """`3 seeds`, `1 model`."""
    return f"{len(items)} {word}{'' if len(items) == 1 else 's'}"


def pct(x: float) -> str:
    """An accuracy as a percentage with one decimal: 0.9412 -> 94.1."""
    return f"{100 * x:.1f}"


def num(v: float) -> str:
    """A swept value as text: 10, 0.25, 2."""
    return f"{v:g}"


# ---------------------------------------------------------------------- power wording
# A non-significant comparison counts as decided ("no difference of this size") only when its
# minimum detectable effect (pipeline.stats.paired.mde: 80% power, alpha 0.05) is at most one
# point of accuracy: about what doubling the real data adds at 50 images per class on the
# digits. A larger MDE leaves the comparison "not decided by this data".
SMALL_EFFECT = 0.01


def power_entry(t) -> dict:
    """A pipeline.stats.paired.Paired's power as JSON keys: sd_diff, mde, seeds_needed and
    decided (significant, or an MDE of at most SMALL_EFFECT)."""
    import math

    return {"sd_diff": None if math.isnan(t.sd_diff) else t.sd_diff,
            "mde": None if math.isnan(t.mde) else t.mde, "seeds_needed": t.seeds_needed,
            "decided": t.decided(SMALL_EFFECT)}


def mde_text(mde: float | None) -> str:
    """`MDE 2.0 points` (`MDE -` where it is undefined: one seed)."""
    return "MDE -" if mde is None else f"MDE {100 * mde:.1f} points"


def seeds_text(needed: int | None, n: int) -> str:
    """How many seeds would find an effect of the observed size at 80% power
    (pipeline.stats.paired.seeds_needed)."""
    from synthaug.pipeline.stats.paired import MAX_SEEDS

    if needed is None:
        return (f"a difference this small would need more than {MAX_SEEDS} seeds to be found "
                "with 80% power")
    more = f"{needed - n} more seeds ({needed} in all)" if needed > n else f"{needed} seeds"
    return f"{more} would find a difference of this size with 80% power"


def undecided_text(mde: float | None) -> str:
    """The wording of a comparison the data does not decide."""
    return f"not decided by this data ({mde_text(mde)})"
