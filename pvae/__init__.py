"""pvae: variational autoencoders as Pyro programs.

>>> import pvae
>>> data = pvae.data.load("digits", flatten=True)
>>> vae = pvae.VAE(x_dim=64, z_dim=8, likelihood="continuous_bernoulli")
>>> history = pvae.fit(vae, data.train, epochs=5)      # doctest: +SKIP
"""

from pvae import data, evaluate, latent, likelihoods, plots
from pvae.models import load
from pvae.compare import compare
from pvae.models import CVAE, VAE, HierarchicalVAE, SemiSupervisedVAE
from pvae.train import fit

__version__ = "0.1.0"
__all__ = [
    "VAE", "CVAE", "SemiSupervisedVAE", "HierarchicalVAE", "fit", "load", "compare",
    "likelihoods", "evaluate", "data", "latent", "plots",
]
