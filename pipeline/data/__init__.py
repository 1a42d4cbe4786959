"""Real data and training sets: `sources` (built-in, folder and torchvision image sources) over
`images` (one image file -> the configured uint8 array), `prepare` (decode, dedupe, stratified
splits), `storage` (packed uint8 data sets), `compose` (the
study's variants from real, classic and synthetic parts), `config` (the `prepare` and
`compose` sections)."""
