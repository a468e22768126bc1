"""Likelihoods: turn decoder output into a Pyro distribution of x.

One class per data type, chosen by name (``likelihood="poisson"``) or by
instance (``likelihood=Gaussian(scale=0.5)``):

========================================  ===================================================
name                                      data
========================================  ===================================================
``bernoulli``                             binary values, exactly 0 or 1
``continuous_bernoulli``                  intensities in [0, 1] (Loaiza-Ganem & Cunningham 2019)
``gaussian``                              real values; scale fixed, learned per feature, or
                                          predicted by the decoder
``laplace``                               real values with heavy tails; scale as for gaussian
``beta``                                  values strictly inside (0, 1)
``categorical``                           discrete levels 0 .. num_levels-1 (e.g. 256 grey levels)
``poisson``                               counts 0, 1, 2, ...
``negative_binomial``                     over-dispersed counts
``zero_inflated_negative_binomial``       over-dispersed counts with excess zeros
========================================  ===================================================

A likelihood knows how many numbers per feature the decoder must produce
(:attr:`Likelihood.num_params`), turns the decoder's output into a
distribution whose event shape is the data shape, and checks data against its
support before training starts (:meth:`Likelihood.check_support`).

Every log-density is computed from the decoder's unconstrained outputs in a
form that stays right in float32 over the range trained decoders reach
(logits in [-100, 100], scales 1e-3 to 1e4, concentrations 1e-3 to 1e4, count
means 1e-6 to 1e4, inverse dispersions 1e-4 to 1e8): ``tests/test_likelihoods.py``
checks each against a float64 reference and checks that it sums or integrates to 1.

A custom decoder returns the likelihood's parameters directly: one tensor of
the data's shape for single-parameter likelihoods (logits, a mean, a log rate),
a tuple of such tensors otherwise, and for ``categorical`` one tensor of shape
``(*x_shape, num_levels)``.
"""

from pvae.likelihoods.base import (  # noqa: F401
    Likelihood, Params, get, is_registered, names, register, resolve)
from pvae.likelihoods.continuous import Beta, Bernoulli, ContinuousBernoulli, Gaussian, Laplace
from pvae.likelihoods.counts import (
    Categorical, NegativeBinomialLikelihood, Poisson, ZeroInflatedNegativeBinomialLikelihood)

__all__ = [
    "Likelihood", "get", "names", "register", "resolve", "is_registered", "Bernoulli",
    "ContinuousBernoulli", "Gaussian", "Laplace", "Beta", "Categorical", "Poisson", "NegativeBinomialLikelihood",
    "ZeroInflatedNegativeBinomialLikelihood",
]
