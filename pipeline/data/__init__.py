"""Real data and training sets: `sources` (built-in, folder and torchvision image sources),
`prepare` (decode, dedupe, stratified splits), `storage` (packed uint8 splits, atomic outputs),
`compose` (the study's variants from real, classic and synthetic parts), `config` (the
`prepare` and `compose` sections)."""
