"""Statistics of the study's numbers: `paired` (means with t intervals over seeds, paired tests
against real-only) and `exchange` (what a variant is worth in real images per class, from the
real-data sweep)."""
