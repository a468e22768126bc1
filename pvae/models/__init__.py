"""pvae model families, one file each, and the registry that builds them by name.

>>> import pvae.models
>>> pvae.models.names()
['cvae', 'hvae', 'seqvae', 'ssvae', 'vae']
>>> vae = pvae.models.get("vae", x_dim=64, z_dim=8)
"""

from pvae.models.base import Classifier, ModelGuidePair, PVAEModel
from pvae.models.cvae import CVAE
from pvae.models.hvae import HierarchicalVAE
from pvae.models.seqvae import SequenceVAE
from pvae.models.registry import config_kwargs, from_config, get, load, names, register
from pvae.models.ssvae import SemiSupervisedVAE
from pvae.models.vae import VAE

__all__ = ["PVAEModel", "Classifier", "ModelGuidePair", "VAE", "CVAE", "SemiSupervisedVAE",
           "HierarchicalVAE", "SequenceVAE", "register", "get", "names", "from_config", "config_kwargs", "load"]
