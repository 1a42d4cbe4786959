"""synthaug's library, one folder per domain, each with its params section(s) in `config.py`:

- `core/`: ground floor shared by all: errors, the `Section` base, device choice, distributed
  runs, checkpoint files (config.json + safetensors), batches and mixed precision;
- `data/`: image sources, prepare (dedupe, split), packed storage, atomic outputs, compose
  (variants);
- `augment/`: classic albumentations copies (`classic`, `expand`) and batched on-device
  augmentation (`batch`);
- `classifiers/`: architectures and layers, transfer learning, the training loop, metrics;
- `evaluation/`: synthetic-set quality (FID/KID/PRDC/CAS), statistics, sweeps;
- `report/`: figures and the study/quality pages, as functions over data.

Nothing here reads params.yaml or argv; the stages/ glue does that and passes typed configs,
devices and seeds in. Imports run downward only: stages -> generators -> pipeline, and inside
pipeline/ nothing imports report/ or evaluation/ from below.
"""
