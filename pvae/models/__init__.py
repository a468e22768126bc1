"""pvae model families: one file each."""

from pvae.models.base import PVAEModel
from pvae.models.cvae import CVAE
from pvae.models.hvae import HierarchicalVAE
from pvae.models.ssvae import SemiSupervisedVAE
from pvae.models.vae import VAE

__all__ = ["PVAEModel", "VAE", "CVAE", "SemiSupervisedVAE", "HierarchicalVAE"]
