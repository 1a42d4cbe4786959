"""Ground floor: `errors` (SynthaugError, one-line user errors), `settings` (the Section base
of every params section, Device, pydantic error formatting), `device` (auto device choice),
`distributed` (torchrun ranks), `checkpoint` (config.json + weights.safetensors folders),
`batches` (resident or memory-mapped data cut into batches, shuffled streams, mixed precision:
the plumbing of every training loop). Imports nothing else from synthaug."""
