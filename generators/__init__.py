"""Label-conditioned image generators (GAN, VAE, diffusion) and latent-space samplers.

- `config`: the `train_generator` and `sample` sections (one config per family, the sets);
- `common`: the one generator interface, save/load (config.json + weights.safetensors);
- `training`: the one step-budgeted training loop; `resume`: its checkpoints;
- `gan`, `vae`, `diffusion`: the three families; `samplers`: latent-space sampling, over
  `latents` (slerp, truncation, latent walks);
- `pretrained`: a pretrained diffusers pipeline's sets (nothing to train; its section is
  `pretrained_config`).

Generators build on pipeline/ (never the reverse) and never read params.yaml.
"""
