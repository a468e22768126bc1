"""scikit-learn estimators around a pvae VAE: an embedding and an outlier detector.

:class:`VAETransformer` embeds a table in the VAE's latent space (posterior
means) and scores rows by their ELBO or importance-sampled log-likelihood;
:class:`VAEOutlierDetector` follows scikit-learn's outlier-detector conventions
(``IsolationForest``, ``LocalOutlierFactor(novelty=True)``): higher scores are
more normal, ``decision_function = score_samples - offset_``, ``predict`` gives
+1 (inlier) or -1 (outlier). Both work in ``Pipeline``, ``GridSearchCV``,
``clone`` and pickle, and pass scikit-learn's estimator checks.

Scores are deterministic per row: each row's estimate uses the same
``num_samples`` standard-normal draws (common random numbers, fixed for every
call), z_k = E_q[z | x] + sd_q[z | x] * eps_k, so a row's score does not depend on
the other rows in the call, their order, or earlier calls.

Input validation is scikit-learn's own (``validate_data``, ``check_array``), so
errors read like scikit-learn's; data outside the likelihood's support (say,
non-binary data with ``likelihood="bernoulli"``) are refused by pvae before any
training. Training is seeded by ``random_state`` and leaves the global random
states of ``random``, numpy and torch as they were.
"""

from __future__ import annotations

import contextlib
import copy
import math
import random
from numbers import Integral, Real
from typing import Iterator, Literal, Sequence

import numpy as np
import pyro.distributions as dist
import torch
from sklearn.base import BaseEstimator, ClassNamePrefixFeaturesOutMixin, OutlierMixin, \
    TransformerMixin
from sklearn.utils import check_random_state
from sklearn.utils.validation import check_array, check_is_fitted, validate_data

from pvae.evaluate import CHUNK_ELEMENTS
from pvae.models import VAE
from pvae.train import fit as pvae_fit

ScoreMethod = Literal["elbo", "log_likelihood"]
SCORE_METHODS = ("elbo", "log_likelihood")
#: Seed of the standard-normal draws every score shares (common random numbers).
SCORE_SEED = 0

#: scikit-learn estimator checks each estimator is known to fail, check name -> reason.
#: None today; :func:`expected_failed_checks` hands them to ``check_estimator`` or
#: ``parametrize_with_checks(..., expected_failed_checks=...)``.
EXPECTED_FAILED_CHECKS: dict[str, dict[str, str]] = {
    "VAETransformer": {},
    "VAEOutlierDetector": {},
}


def expected_failed_checks(estimator) -> dict[str, str]:
    """The checks ``estimator`` is expected to fail, each with its reason (a copy)."""
    return dict(EXPECTED_FAILED_CHECKS.get(type(estimator).__name__, {}))


@contextlib.contextmanager
def _seeded(seed: int) -> Iterator[None]:
    """Seed torch with ``seed`` inside; restore the global states of ``random``, numpy
    and torch afterwards (``pvae.fit(seed=...)`` seeds all three through Pyro)."""
    py_state, np_state = random.getstate(), np.random.get_state()
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        try:
            yield
        finally:
            random.setstate(py_state)
            np.random.set_state(np_state)


def _positive_int(value, name: str) -> None:
    if not isinstance(value, Integral) or isinstance(value, bool) or value < 1:
        raise ValueError(f"{name} must be a positive int, got {value!r}")


def float64(model: VAE) -> VAE:
    """A float64 copy of ``model`` in eval mode, for per-row results that do not depend on
    the other rows of a call (float32 matrix products round differently with the number of
    rows: about 1e-7 relative, which scikit-learn's subset checks detect)."""
    return copy.deepcopy(model).double().eval()


def _encode(model64: VAE, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """(z_loc, z_scale) of q(z | x) from :func:`float64`'s copy, for validated data ``x``
    (``VAE.encode`` would cast them to float32)."""
    return model64.encoder(model64._encoder_input(x.to(model64.device, torch.float64)))


def _common_draw_log_weights(model: VAE, x: torch.Tensor, num_samples: int,
                             seed: int = SCORE_SEED) -> torch.Tensor:
    """log p(x, z_k) - log q(z_k | x) per row, shape ``(num_samples, N)``, float64, nats.

    ``z_k = loc(x) + scale(x) * eps_k`` with the same ``eps_k`` (drawn from
    ``seed``) for every row: each row's weights depend on that row alone, as
    scikit-learn's checks on subsets and row order require. That is why this
    evaluates the estimator's own VAE (standard normal prior, Gaussian guide, no
    flows: the only model the estimators build) directly instead of through
    :mod:`pvae.weights`, whose guide draws fresh noise per row;
    ``tests/test_sklearn.py`` checks its means against :func:`pvae.evaluate.elbo`
    and :func:`pvae.evaluate.log_likelihood`.
    ``model`` is a :class:`pvae.VAE` with the default networks and no flows;
    ``x`` has shape ``(N, x_dim)`` and was checked against the model.
    """
    model64 = float64(model)
    gen = torch.Generator().manual_seed(seed)
    eps = torch.randn(num_samples, 1, model.z_dim, generator=gen, dtype=torch.float64)
    eps = eps.to(model64.device)
    rows = max(1, CHUNK_ELEMENTS // (num_samples * max(x[0].numel(), 1)))  # bounded memory
    out = []
    with torch.no_grad():
        for start in range(0, x.shape[0], rows):
            xs = x[start:start + rows].to(model64.device, torch.float64)
            loc, scale = _encode(model64, xs)
            z = loc + scale * eps                                 # (K, n, z_dim)
            log_px = model64.decode(z).log_prob(xs)               # (K, n)
            log_pz = dist.Normal(0.0, 1.0).log_prob(z).sum(-1)
            log_qz = dist.Normal(loc, scale).log_prob(z).sum(-1)
            out.append(log_px + log_pz - log_qz)
    return torch.cat(out, 1)


class _VAEEstimator(BaseEstimator):
    """What both estimators share: parameters, fit, validation, per-row scores."""

    def __init__(self, z_dim: int = 2, *, likelihood: str = "gaussian",
                 hidden_dims: Sequence[int] = (64,), epochs: int = 50, batch_size: int = 128,
                 lr: float = 1e-3, elbo: str = "trace", score_method: ScoreMethod = "elbo",
                 num_samples: int = 100, random_state=None) -> None:
        self.z_dim = z_dim
        self.likelihood = likelihood
        self.hidden_dims = hidden_dims
        self.epochs = epochs
        self.batch_size = batch_size
        self.lr = lr
        self.elbo = elbo
        self.score_method = score_method
        self.num_samples = num_samples
        self.random_state = random_state

    def _check_params(self) -> None:
        """``ValueError`` for options pvae itself does not check (it checks the rest)."""
        if self.score_method not in SCORE_METHODS:
            raise ValueError(f"score_method must be one of {', '.join(SCORE_METHODS)}, "
                             f"got {self.score_method!r}")
        _positive_int(self.num_samples, "num_samples")

    def _fit(self, X) -> torch.Tensor:
        """Validate, build and train ``model_``; return the training data as a tensor."""
        self._check_params()
        X = validate_data(self, X, dtype=[np.float32, np.float64])
        x = torch.tensor(X, dtype=torch.float32)
        seed = int(check_random_state(self.random_state).randint(np.iinfo(np.int32).max))
        with _seeded(seed):
            model = VAE(X.shape[1], self.z_dim, hidden_dims=self.hidden_dims,
                        likelihood=self.likelihood)
            history = pvae_fit(model, x, elbo=self.elbo, epochs=self.epochs,
                               batch_size=self.batch_size, lr=self.lr, seed=seed, progress=False)
        self.model_ = model
        self.history_ = [dict(row) for row in history]
        return x

    def _data(self, X) -> torch.Tensor:
        """Fitted check and scikit-learn's validation of new data, as float32 rows."""
        check_is_fitted(self)
        X = validate_data(self, X, dtype=[np.float32, np.float64], reset=False)
        return torch.tensor(X, dtype=torch.float32)

    def _scores(self, x: torch.Tensor) -> np.ndarray:
        self.model_.check_data(x)  # the likelihood's support, as fit checks it
        lw = _common_draw_log_weights(self.model_, x, self.num_samples)
        if self.score_method == "elbo":
            s = lw.mean(0)
        else:
            s = torch.logsumexp(lw, 0) - math.log(self.num_samples)
        return s.cpu().numpy()

    def score_samples(self, X) -> np.ndarray:
        """Per-row score in nats: the ELBO (``score_method="elbo"``) or the
        importance-sampled log p(x) (``"log_likelihood"``), each over ``num_samples``
        draws of q(z | x) shared by every row. Higher is more typical.

        Parameters
        ----------
        X : array-like of shape (n_samples, n_features_in_)

        Returns
        -------
        ndarray of shape (n_samples,), float64

        Raises
        ------
        sklearn.exceptions.NotFittedError
            Before ``fit``.
        ValueError
            For data scikit-learn's ``validate_data`` refuses (NaN, wrong number
            of features, ...) or outside the likelihood's support.
        """
        return self._scores(self._data(X))


class VAETransformer(ClassNamePrefixFeaturesOutMixin, TransformerMixin, _VAEEstimator):
    """A VAE as a scikit-learn transformer: rows to posterior means of z.

    Generative story (:class:`pvae.VAE`), for each row ``n``::

        z_n ~ Normal(0, I)                     # shape (z_dim,)
        x_n ~ likelihood(decoder(z_n))         # shape (n_features_in_,)

    and q(z | x) = Normal(encoder(x)), trained by ``pvae.fit``.

    Parameters
    ----------
    z_dim : int, default 2
        Latent dimensions: the width of :meth:`transform`'s output.
    likelihood : str, default "gaussian"
        A name from :func:`pvae.likelihoods.names`; "gaussian" (learned
        per-feature scale) suits standardised tables.
    hidden_dims : tuple of int, default (64,)
        Hidden layers of the encoder MLP (the decoder mirrors them).
    epochs, batch_size, lr : int, int, float
        Passes over the data, minibatch size, Adam's learning rate.
    elbo : str, default "trace"
        The training objective, a name ``pvae.fit`` takes ("trace", "meanfield", "iwae:K", ...).
    score_method : {"elbo", "log_likelihood"}, default "elbo"
        What :meth:`score_samples` estimates per row.
    num_samples : int, default 100
        Draws of q(z | x) per row in :meth:`score_samples` (the same draws for every row).
    random_state : int, RandomState or None
        Seeds the initial weights and training; an int gives the same model every fit
        (on the same machine and thread count); None draws a seed from numpy's global
        stream, as scikit-learn's estimators do.

    Attributes
    ----------
    model_ : pvae.VAE
        The trained model.
    history_ : list of dict
        ``pvae.fit``'s per-epoch rows (``train_elbo`` etc., nats per row).
    n_features_in_ : int
    feature_names_in_ : ndarray of str, when fitted on a DataFrame with string column names.

    Raises
    ------
    ValueError
        In ``fit``, before any training: a bad option (naming it), data that
        scikit-learn's ``validate_data`` refuses, or data outside the likelihood's support.
    """

    def fit(self, X, y=None) -> "VAETransformer":
        """Train on the rows of ``X`` (shape ``(n_samples, n_features)``); ``y`` is ignored."""
        self._fit(X)
        return self

    @property
    def _n_features_out(self) -> int:
        return self.model_.z_dim

    def transform(self, X) -> np.ndarray:
        """Posterior means E_q[z | x], shape ``(n_samples, z_dim)``, float64 (computed in
        float64, so each row's result does not depend on the other rows)."""
        x = self._data(X)
        self.model_.check_data(x, support=False)
        with torch.no_grad():
            return _encode(float64(self.model_), x)[0].cpu().numpy()

    def inverse_transform(self, X) -> np.ndarray:
        """Decoder means E[x | z] for latent codes ``X`` of shape ``(n_samples, z_dim)``;
        returns shape ``(n_samples, n_features_in_)``, float64.

        Raises ``ValueError`` for codes of another width, NaN, or non-2-D input.
        """
        check_is_fitted(self)
        Z = check_array(X, dtype=[np.float32, np.float64])
        if Z.shape[1] != self.model_.z_dim:
            raise ValueError(f"X has {Z.shape[1]} columns, but {type(self).__name__} decodes "
                             f"latent codes of z_dim={self.model_.z_dim} columns")
        model64 = float64(self.model_)
        z = torch.tensor(Z, dtype=torch.float64, device=model64.device)
        return model64.decode_mean(z).cpu().numpy()

    def score(self, X, y=None) -> float:
        """Mean of :meth:`score_samples` over the rows of ``X`` (nats per row; higher is better),
        the criterion ``GridSearchCV`` uses by default."""
        return float(np.mean(self.score_samples(X)))

    def sample(self, n_samples: int = 1, random_state=None) -> np.ndarray:
        """Draws of x from the model, z ~ N(0, I) then x ~ p(x | z): shape
        ``(n_samples, n_features_in_)``, float64. ``random_state`` seeds them
        (global random states are left as they were). ``ValueError`` unless
        ``n_samples`` is a positive int."""
        check_is_fitted(self)
        _positive_int(n_samples, "n_samples")
        seed = int(check_random_state(random_state).randint(np.iinfo(np.int32).max))
        model = self.model_
        with _seeded(seed), torch.no_grad():
            z = torch.randn(n_samples, model.z_dim, device=model.device)
            x = model.decode(z).sample()
        return x.double().cpu().numpy()


class VAEOutlierDetector(OutlierMixin, _VAEEstimator):
    """Outlier detection by a VAE's per-row score (novelty detection: fit on normal data).

    Takes :class:`VAETransformer`'s parameters and ``contamination``. Rows whose
    :meth:`score_samples` (ELBO or log p(x), nats) falls below ``offset_`` are
    outliers; ``offset_`` is the ``contamination`` quantile of the training rows'
    scores, so that fraction of the training rows is flagged.

    Parameters
    ----------
    contamination : float in (0, 0.5], default 0.1
        The expected fraction of outliers in the training data.
    z_dim, likelihood, hidden_dims, epochs, batch_size, lr, elbo, score_method,
    num_samples, random_state
        As for :class:`VAETransformer`.

    Attributes
    ----------
    offset_ : float
        ``decision_function = score_samples - offset_``.
    model_, history_, n_features_in_, feature_names_in_
        As for :class:`VAETransformer`.

    Raises
    ------
    ValueError
        As for :class:`VAETransformer`, and for a ``contamination`` outside (0, 0.5].
    """

    def __init__(self, z_dim: int = 2, *, contamination: float = 0.1,
                 likelihood: str = "gaussian", hidden_dims: Sequence[int] = (64,),
                 epochs: int = 50, batch_size: int = 128, lr: float = 1e-3, elbo: str = "trace",
                 score_method: ScoreMethod = "elbo", num_samples: int = 100,
                 random_state=None) -> None:
        super().__init__(z_dim, likelihood=likelihood, hidden_dims=hidden_dims, epochs=epochs,
                         batch_size=batch_size, lr=lr, elbo=elbo, score_method=score_method,
                         num_samples=num_samples, random_state=random_state)
        self.contamination = contamination

    def _check_params(self) -> None:
        super()._check_params()
        c = self.contamination
        if not isinstance(c, Real) or isinstance(c, bool) or not 0 < c <= 0.5:
            raise ValueError(f"contamination must be a number in (0, 0.5], got {c!r}")

    def fit(self, X, y=None) -> "VAEOutlierDetector":
        """Train on ``X`` (mostly normal rows) and set ``offset_``; ``y`` is ignored."""
        x = self._fit(X)
        self.offset_ = float(np.percentile(self._scores(x), 100.0 * self.contamination))
        return self

    def decision_function(self, X) -> np.ndarray:
        """``score_samples(X) - offset_``, shape ``(n_samples,)``: negative for outliers."""
        return self.score_samples(X) - self.offset_

    def predict(self, X) -> np.ndarray:
        """+1 for inliers, -1 for outliers (``decision_function < 0``), shape ``(n_samples,)``."""
        return np.where(self.decision_function(X) < 0, -1, 1)
