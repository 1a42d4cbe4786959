"""Classic augmentation: `classic` (albumentations presets and steps), `expand` (offline copies
and the online per-epoch loader), `batch` (per-image random ops on whole batches, on the
training device), `config` (the `augment` section and the augmentation specs)."""
