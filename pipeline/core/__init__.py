"""Ground floor: `errors` (SynthaugError, one-line user errors), `settings` (the Section base
of every params section, Device, pydantic error formatting), `device` (auto device choice),
`distributed` (torchrun ranks), `checkpoint` (config.json + weights.safetensors folders).
Imports nothing else from synthaug."""
