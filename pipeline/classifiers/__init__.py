"""CNN classifiers: `architectures` (the built-in layer lists, the layer schema), `layers`
(building a network from a layer list, summaries) over `modules` (the torch layers and their
shape arithmetic), `transfer` and `efficientnet` (ImageNet backbones), `classifier` (the model
with its normalisation, save/load), `training` (the one fit loop), `metrics` (accuracy, F1,
confusion), `config` (the `train` and `evaluate` sections and the per-model recipe)."""
