"""synthaug's library (`synthaug.pipeline`), one folder per domain, each with its params
section(s) in `config.py`. The floors, lowest first; a module imports only from its own floor
or below (tests/test_structure.py checks it):

0. `core/`: errors, the `Section` base, device choice, distributed runs, the worker pool,
   atomic outputs, checkpoint files, batches and mixed precision;
1. `data/` (image sources, prepare, packed storage, compose), `augment/` (albumentations
   copies, batched on-device augmentation), `figures/` (plotting helpers);
2. `classifiers/`: architectures and layers, transfer learning, the training loop, metrics;
3. `quality/` (synthetic-set quality: FID/KID/PRDC/CAS, memorisation), `stats/` (intervals,
   paired tests, exchange rates);
4. `experiments/`: the sweeps and "when" points, the pre-checks of params against the data;
5. `report/`: the study and quality pages, as functions over the stages' JSON.

Nothing here reads params.yaml or argv; the stages/ glue does that and passes typed configs,
devices and seeds in. Across the three code folders imports run one way: stages ->
generators -> pipeline.
"""
