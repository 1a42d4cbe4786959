"""The experiments that train classifiers beyond the study's cells: `sweep` (accuracy against
the amount of real and synthetic data, and the "when" points with their own generators) run
by `sweep_run`; `checks` (what the params and the data allow, before any work); `config` (the
`sweep` and `study` sections)."""
