"""Ground floor: `errors` (SynthaugError, one-line user errors), `settings` (the Section base
of every params section, Device, pydantic error formatting), `device` (auto device choice),
`distributed` (torchrun ranks), `pool` (the one worker pool: forked one-thread processes),
`outputs` (every stage's atomic output commit: locks, markers, full-disk errors),
`checkpoint` (config.json + weights.safetensors folders), `batches` (resident or
memory-mapped data cut into batches, shuffled streams, mixed precision: the plumbing of every
training loop), `timing` (what a stage cost). Imports nothing else from synthaug."""
