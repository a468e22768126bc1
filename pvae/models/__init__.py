"""pvae model families: one file each."""

from pvae.models.base import PVAEModel
from pvae.models.vae import VAE

__all__ = ["PVAEModel", "VAE"]
