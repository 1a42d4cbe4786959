"""`synthaug report`: the study's answer on one page, from every evaluated cell."""
from __future__ import annotations

import json
from pathlib import Path
from typing import Annotated

import typer

from synthaug.stages.common import ParamsOpt, SetOpt, params_from, say, user_errors


@user_errors
def command(params: ParamsOpt = Path("params.yaml"), set_: SetOpt = None,
            summary: Annotated[Path, typer.Option(
                "--summary", help="folder of the headline numbers (the dvc metrics)",
                metavar="DIR")] = Path("metrics/summary"),
            ) -> None:
    """Summarise the study: the data, test accuracy per variant and model (mean and 95% CI over
    `study.seeds`), a paired t-test of each variant against `real` on the same seeds, a bar
    chart, learning curves, the best cell's confusion matrix, the sweeps (accuracy against the
    number of real images per class and against the synthetic ratio, per model), sample
    images of every data set and the synthetic data quality table.

    Reads `paths.evaluate_metrics` and `paths.train_metrics` for every cell of the study, and
    `paths.prepared`, `paths.synthetic`, `paths.augmented`, `paths.sweep` and `paths.quality`
    (quality.json) where present; writes `paths.report`: report.md, results.json (every
    number) and figures/, and `--summary`: the headline numbers, one small JSON file per
    variant and model (study/) and per synthetic set (quality/), `dvc metrics show`'s rows.

    **Examples**

    ```
    synthaug report
    synthaug report -S paths.report=reports/v2
    ```
    """
    p = params_from(params, set_)
    from synthaug.pipeline.core.outputs import atomic_output
    from synthaug.pipeline.report import results, study_page

    s = _study(p)
    rows, run = results.summarise(s), p.paths.evaluate_metrics / s.run(s.best())
    confusion = json.loads((run / "confusion.json").read_text()) \
        if (run / "confusion.json").is_file() else None
    # its outputs, each atomically: paths.report also holds other stages' outputs (the
    # quality report), which replacing the whole folder would delete
    out = p.paths.report
    with atomic_output(out / "figures") as figs, \
            atomic_output(out / "results.json", is_dir=False) as results_file, \
            atomic_output(out / "report.md", is_dir=False) as report_file, \
            atomic_output(out / "plots") as plots, \
            atomic_output(summary) as headline:
        for name, text in results.plot_data(s.cells).items():  # per-cell plot data (files)
            (plots / name).write_text(text)
        if (run / "predictions.csv").is_file():
            (plots / "best_confusion.csv").write_bytes((run / "predictions.csv").read_bytes())
        drawn = results.draw(s, rows, confusion, figs)
        results_file.write_text(json.dumps(results.results_json(rows, s.sweeps, s.when, s.crossval,
                                                                s.crossval_rows), indent=2) + "\n")
        for part in ("study", "quality"):  # both dvc metrics folders, even without a quality record
            (headline / part).mkdir()
        for rel, numbers in results.summary(rows, s.quality).items():
            (headline / rel).parent.mkdir(parents=True, exist_ok=True)
            (headline / rel).write_text(json.dumps(numbers) + "\n")
        report_file.write_text(study_page.markdown(s, rows, drawn))
    say(results.table(rows))
    say(f"-> {out / 'report.md'}")


def _study(p):
    """What the stages left, as a pipeline.report.study.Study; a SynthaugError without cells."""
    from synthaug.pipeline.core.errors import SynthaugError
    from synthaug.pipeline.data.prepare import prepare_record
    from synthaug.pipeline.report import crossval, inputs, sweeps, when
    from synthaug.pipeline.report.study import Layout, Study

    layout = Layout.of(p.paths)
    runs = {(v, m, sd): p.run_name(v, m, sd) for v in p.study.variants for m in p.study.models
            for sd in p.study.seeds}
    cells, missing = inputs.cells(layout, runs)
    if not cells:
        raise SynthaugError(f"{p.paths.evaluate_metrics}: no evaluated cells of the study; run "
                            "`dvc repro` first")
    splits = inputs.splits(layout.prepared)
    k = prepare_record(layout.prepared)["train_per_class"]  # what prepare made, not params.yaml
    subtitles = {name: inputs.set_subtitle(c.generator, c.sampler, c.settings())
                 for name, c in p.sample.sets.items()}
    spec = p.augment.pipeline if isinstance(p.augment.pipeline, str) else "custom"
    panels, unsampled = inputs.panels(layout, splits, subtitles, spec)
    variant = p.compose.variants[p.sweep.ratio_variant]
    swept = inputs.sweep_results(layout.sweep, p.sweep.models)
    merged = sweeps.merge(swept, cells,
                          p.sweep.ratio_variant, k, variant.ratio,
                          [*p.sweep.models, *p.study.models])
    cv = crossval.read_record(p.paths.crossval)
    return Study(study=p.study, cells=cells, layout=layout, sweep=p.sweep,
                 crossval=cv, crossval_rows=crossval.summarise(cv) if cv and cv["rows"] else [],
                 train_per_class=k, ratio=variant.ratio,
                 ratio_parts=list(variant.synthetic_parts()), runs=runs, missing=missing,
                 splits=splits, panels=panels, unsampled=unsampled,
                 training_sets=inputs.training_sets(layout.variants, p.study.variants),
                 sweeps=merged, quality=inputs.quality(layout.quality),
                 skipped=[{"model": m, **r} for m, res in swept.items()
                          for r in (res or {}).get("skipped", [])],
                 when={m: when.compare(w) for m in p.sweep.when_models if when.measured(w := when.lines(
                     swept, cells, k, m, p.sweep.when_variants),
                     k)})
