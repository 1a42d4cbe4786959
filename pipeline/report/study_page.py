"""report.md: the study's answer on one page, section by section, from a `Study`."""
from __future__ import annotations

from synthaug.pipeline.report import classic as classic_choice
from synthaug.pipeline.report import crossval, quality_page, results, sweeps, timings, when
from synthaug.pipeline.report.study import SPLITS, Study, pct, plural


def data_section(s: Study) -> list[str]:
    """The source, image size, classes, split sizes, real images per class and the composed
    training sets."""
    import numpy as np

    parts = ["## Data", ""]
    if not s.splits:
        parts += [(f"The prepared splits are missing (`{s.layout.prepared}`); run "
                   "`synthaug prepare`."), ""]
    else:
        first = s.splits["train"] if "train" in s.splits else next(iter(s.splits.values()))
        c, h, w = first.shape
        names = first.class_names
        shown = ", ".join(names[:20]) + (f", ... ({len(names) - 20} more)" if len(names) > 20 else "")
        parts += [f"- Source: `{first.meta.get('source', '?')}`",
                  (f"- Images: {h} x {w}, {c} channel{'s' if c > 1 else ''} "
                   f"({'RGB' if c == 3 else 'grayscale' if c == 1 else '?'})"),
                  f"- Classes ({len(names)}): {shown}",
                  "- Images per split: " + ", ".join(f"{sp} {len(s.splits[sp])}" for sp in SPLITS
                                                     if sp in s.splits)]
        if "train" in s.splits:
            counts = np.bincount(s.splits["train"].labels, minlength=len(names))
            if counts.min() == counts.max():
                per = f"{counts.min()} per class"
            else:
                per = (f"{counts.min()} to {counts.max()} per class (mean {counts.mean():.1f}"
                       + ("; " + ", ".join(f"{n}: {k}" for n, k in zip(names, counts))
                          if len(names) <= 20 else "") + ")")
            limit = s.train_per_class
            why = (s.splits["train"].meta.get("train_per_class") or {}).get("why")  # k and why
            parts.append(f"- Real training images: {per}" + (f" ({why})" if why else
                         f" (`prepare.train_per_class` = {limit})" if limit else ""))
        parts.append("")
        preview = s.layout.prepared / "preview.png"
        if preview.is_file():
            parts += [f"![real training images]({s.layout.rel(preview)})", ""]
    made = [f"| {variant} | {meta['num_images']} | "
            + ", ".join(f"{k}: {sum(v)}" for k, v in meta.get("made_of", {}).items())
            + f" | {meta.get('online_augment') or '-'} |"
            for variant, meta in s.training_sets.items()]
    parts += ["### Training sets", ""]
    if made:
        parts += ["| variant | images | made of | online augmentation |", "|---|---|---|---|",
                  *made, ""]
    else:
        parts += [f"No composed training sets under `{s.layout.variants}` yet.", ""]
    classic = s.layout.augmented / "preview.png"
    if classic.is_file():
        parts += [f"![classic augmentation]({s.layout.rel(classic)})", ""]
    if (choice := classic_choice.read_choice(s.layout.augmented)) is not None:  # auto
        parts += classic_choice.lines(choice)
    return parts


def results_section(s: Study, rows: list[dict], drawn: set) -> list[str]:
    """The results table, the accuracy and learning-curve figures and the best cell."""
    best = s.best()
    return [
        "## Results",
        "",
        ("Mean over seeds with a t-based 95% confidence interval; *vs real* is the paired "
         "difference to the `real` variant on the same seeds (paired t-test, significant at "
         "p < 0.05). *MDE* is the minimum detectable effect of that test at this design "
         "(80% power, alpha 0.05, from the seeds' spread of the paired differences: "
         "(t(0.975, n-1) + t(0.80, n-1)) x SD / sqrt(n)); *not decided*: not significant with "
         "an MDE over 1 point, so the data cannot tell a difference of that size from none. "
         "*Worth* is the exchange rate: the real images per class that real-only "
         "training needs to match the row, read off the real-only curve of the "
         "`real_per_class` sweep (monotone fit, linear in log k; 95% bootstrap interval over "
         "seeds; `<k` / `>k`: off the measured curve), with its difference to the study's k; "
         "where the accuracy difference is not significant the rate is *not decided* and "
         "claims nothing. The figure: each variant's paired difference to `real` per model, "
         "its 95% CI, the seeds as dots, and the MDE band around 0 shaded."),
        "",
        results.table(rows),
        "",
        "![paired difference to real-only, with the MDE band](figures/accuracy.png)",
        "",
        "![learning curves](figures/learning_curves.png)",
        "",
        (f"Best cell: {best[0]} / {best[1]} / seed {best[2]} "
         f"({pct(s.cells[best]['accuracy'])}% test accuracy)."),
        "",
        ("![confusion matrix of the best cell](figures/best_confusion.png)"
         if "best_confusion.png" in drawn else
         f"(No confusion matrix: `{s.layout.evaluate_metrics / s.run(best) / 'confusion.json'}`"
         " is missing.)"),
        "",
    ]


def samples_section(s: Study, drawn: set) -> list[str]:
    """The sample figure, and which data sets it lacks."""
    parts = ["## Sample images", ""]
    if "samples.png" in drawn:
        shown = [pnl["title"] for pnl in s.panels]
        parts += [(f"{plural(shown, 'data set')} side by side ({', '.join(shown)}): one row per "
                   "class, six random images each."), "",
                  "![real, synthetic and augmented samples](figures/samples.png)", ""]
    else:
        parts += ["No data set to show yet.", ""]
    if s.unsampled:
        parts += [f"Not sampled yet (no packed set under `{s.layout.synthetic}`): "
                  + ", ".join(s.unsampled) + ".", ""]
    if not any(pnl["title"] == "classic augmentation" for pnl in s.panels):
        parts += [f"No classic augmentation copies (`{s.layout.augmented}`) yet.", ""]
    return parts


def quality_section(s: Study) -> list[str]:
    """The quality table, best CAS and ranking check from quality.json (the per-set sections
    stay on the quality page), with links to that page and its scatter figure."""
    parts = ["## Synthetic data quality", ""]
    q = s.layout.quality / "quality.json"
    if s.quality is None:
        return parts + [f"The quality stage has not run (no `{q}`); run `synthaug quality`.", ""]
    page = s.layout.quality / "quality.md"
    parts += [*quality_page.summary(s.quality, heading="###"), "",
              f"Full quality report: [{page.name}]({s.layout.rel(page)})", ""]
    scatter = s.layout.quality / "figures" / "fid_vs_cas.png"
    if scatter.is_file():
        parts += [f"![FID-domain vs CAS]({s.layout.rel(scatter)})", ""]
    return parts


def markdown(s: Study, rows: list[dict], drawn: set) -> str:
    """The whole page. rows: pipeline.report.results.summarise(s); drawn: the optional
    figures drawn (pipeline.report.results.draw)."""
    source = next(iter(s.splits.values())).meta.get("source", "?") if s.splits else "?"
    cv = crossval.answer(s.crossval, s.crossval_rows)  # k-fold: the answer's first lines
    parts = [
        "# synthaug report",
        "",
        (f"Source `{source}`, {s.train_per_class or 'all'} real training images per "
         f"class; every accuracy is on held-out real images. {len(s.cells)} cells "
         f"({plural(s.study.variants, 'variant')} x {plural(s.study.models, 'model')} x "
         f"{plural(s.study.seeds, 'seed')}) on the prepared test split"
         + (f" ({len(s.splits.get('test', []))} images: too few to decide, so the cross-validated "
            "comparison below is the answer and the rows after it one split's view)."
            if cv else ".")),
        "",
        *([cv, ""] if cv else []),
        *([(f"*One split's view* (the prepared test split, "
             f"{len(s.splits.get('test', []))} images; the cross-validated answer is above):"
             "\n\n" if cv else "") + answer, ""] if (answer := when.answer(s, rows)) else []),
        *crossval.section(s.crossval, s.crossval_rows, drawn),
        *data_section(s),
        *results_section(s, rows, drawn),
        *when.section(s, drawn),
        *(sweeps.section(s, drawn) if s.sweeps else []),
        *samples_section(s, drawn),
        *quality_section(s),
        *timings.section(timings.read(s.layout.timings), s.layout.timings),
    ]
    if s.missing:
        parts += ["## Missing cells", "", "Not evaluated yet: " + ", ".join(s.missing), ""]
    return "\n".join(parts)
