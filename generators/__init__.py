"""Label-conditioned image generators (GAN, VAE, diffusion) and latent-space samplers.

They save and load through pipeline.checkpoint (config.json + weights.safetensors), like the
classifiers.
"""
