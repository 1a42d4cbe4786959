"""How good a synthetic set is and what the study measured: `quality` (FID/KID, precision/
recall/density/coverage, CAS, memorisation), `stats` (paired tests, intervals), `sweep`
(accuracy against the amount of data), `config` (the `quality`, `sweep` and `study` sections)."""
