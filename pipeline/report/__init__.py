"""What people look at: the figures (`result_figures`: training and results; `data_figures`: the
data sets and their quality) and the pages built as functions over the stages' JSON
(`study_page` with `study`, `inputs`, `results`, `sweeps` for report.md; `quality_page` for
quality.md and its summary in the report)."""
