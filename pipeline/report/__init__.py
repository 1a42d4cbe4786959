"""What people read: the pages built as functions over the stages' JSON (`study_page` with
`study`, `inputs`, `results`, `sweeps`, `when`, `timings` for report.md; `quality_page` for
quality.md and its summary in the report). The plots they embed come from pipeline/figures/."""
