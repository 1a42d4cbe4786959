"""How good a synthetic set is and what the study measured: `quality` (one set's scores, put
together from `features`, `distribution` (FID/KID, precision/recall/density/coverage),
`memorisation` and `usefulness` (CAS, judge agreement, the gate)), `stats` (paired tests,
intervals), `sweep` (accuracy against the amount of data), `config` (the `quality`, `sweep`
and `study` sections)."""
