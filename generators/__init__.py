"""Label-conditioned image generators (GAN, VAE, diffusion) and latent-space samplers.

They save and load through pipeline.checkpoint (config.json + weights.safetensors), like the
classifiers. `generators.common` holds the one interface; `generators.training` the one loop.
"""
# pipeline.config imports generators.config halfway through (after Section and Device, which
# generators.config needs): loading it first makes `import generators.config` work on its own
import pipeline.config  # noqa: F401
