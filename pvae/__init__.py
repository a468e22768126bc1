"""pvae: variational autoencoders as Pyro programs.

>>> import pvae
>>> data = pvae.data.load("digits", flatten=True)
>>> vae = pvae.VAE(x_dim=64, z_dim=8, likelihood="continuous_bernoulli")
>>> history = pvae.fit(vae, data.train, epochs=5)      # doctest: +SKIP

Layers, bottom to top; a module imports only from its own layer or below:

0. utilities: ``data``, ``batching``, ``checkpoint`` (file I/O only), ``distributed``
1. ``distributions``, ``nets`` (and ``nets_recurrent``), ``likelihoods``, ``flows``, ``priors``
2. ``models``
3. ``elbos`` (with ``fast_elbo``, ``iwae``), ``weights`` and ``estimates``
4. ``train``, and ``config`` (typed configs, checked by the rules of the layers below)
5. ``scores`` (pure), ``evaluate``, ``gradients``, ``latent``
6. ``compare``, ``plots``, ``figures`` (the plot kinds of a run), ``sklearn``
   (scikit-learn estimators; imported on its own: ``from pvae.sklearn import ...``)
7. ``runs`` (run folders) and ``results`` (what the commands make of a run)
8. ``cli`` (parses arguments and prints)

Importing pvae changes no global state: no matplotlib backend is selected (the
figures are drawn without ``pyplot``), and Pyro's param store and torch's
default dtype and random state are left as they are.
"""

from pvae import data, evaluate, latent, likelihoods, plots
from pvae.models import load
from pvae.compare import compare
from pvae.models import CVAE, VAE, HierarchicalVAE, SemiSupervisedVAE, SequenceVAE
from pvae.train import fit

__version__ = "0.1.0"
__all__ = [
    "VAE", "CVAE", "SemiSupervisedVAE", "HierarchicalVAE", "SequenceVAE", "fit", "load", "compare",
    "likelihoods", "evaluate", "data", "latent", "plots",
]
