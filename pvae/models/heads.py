"""The likelihood head every pvae model shares: set-up, and checks of custom networks' outputs."""

from __future__ import annotations

import math

import torch

from pvae import likelihoods as lk
from pvae.models.checks import as_shape, per_point, returned


class LikelihoodHead:
    """Mixin of :class:`pvae.models.base.PVAEModel`: the likelihood of x, and the checks
    that a custom encoder's or decoder's output fits it (each at its first call).

    Expects ``self.z_dim`` (for encoder outputs) and ``self._default_decoder``.
    """

    def _setup_likelihood(self, x_dim, likelihood, likelihood_kwargs) -> None:
        self.x_shape = as_shape(x_dim)
        self.likelihood = lk.resolve(likelihood, **(likelihood_kwargs or {})).setup(self.x_shape)

    def _encoder_input(self, x: torch.Tensor) -> torch.Tensor:
        """How default encoders see x. Reads the likelihood without PyroModule's
        registration, so its parameters belong to the model, not the guide."""
        return self._modules["likelihood"].encoder_input(x)

    def _likelihood_params(self, out):
        """Decoder output -> likelihood parameters (default decoders output a flat tensor).

        A custom decoder's output is checked once, at its first call, against
        what the likelihood needs (:meth:`_check_decoder_output`).
        """
        if self._default_decoder:
            return self.likelihood.unflatten(out)
        if not self.__dict__.get("_decoder_checked"):
            self._check_decoder_output(out)
            self.__dict__["_decoder_checked"] = True
        return out

    def _expected_params(self) -> list[tuple[int, ...]]:
        """Per-point shapes of the tensors the likelihood takes from a decoder."""
        lik = self._modules["likelihood"]
        flat = torch.zeros(1, lik.num_params * math.prod(self.x_shape))
        params = lik.unflatten(flat)
        return [tuple(p.shape[1:]) for p in (params if isinstance(params, tuple) else (params,))]

    def _check_decoder_output(self, out) -> None:
        """Raise ``ValueError`` unless ``out`` is what the likelihood needs, naming both."""
        expected = self._expected_params()
        lik = self._modules["likelihood"]
        options = ", ".join(f"{k}={v!r}" for k, v in lik.hparams().items())
        what = f"{lik.name or type(lik).__name__!r} likelihood"
        what += f" ({options})" if options else ""
        need = (f"one tensor of shape {per_point(expected[0])}" if len(expected) == 1 else
                f"a tuple of {len(expected)} tensors of shapes "
                + ", ".join(per_point(e) for e in expected))
        parts = out if isinstance(out, (tuple, list)) else (out,)
        ok = len(parts) == len(expected) and all(
            isinstance(p, torch.Tensor) and p.dim() > len(e)
            and tuple(p.shape[p.dim() - len(e):]) == e for p, e in zip(parts, expected))
        if ok:
            lead = {tuple(p.shape[: p.dim() - len(e)]) for p, e in zip(parts, expected)}
            ok = len(lead) == 1
        if not ok:
            raise ValueError(
                f"the decoder returned {returned(out)}, but the {what} for data of shape "
                f"{self.x_shape} needs {need}, N rows for N latent codes; fix the decoder's "
                "output layer (pvae.likelihoods says what each likelihood takes)"
            )

    def _checked_encoder_output(self, out, n_lead: tuple[int, ...]):
        """A custom encoder's ``(z_loc, z_scale)``, checked once against the latent size."""
        if self.__dict__.get("_encoder_checked"):
            return out
        z_dim = self.z_dim
        want = (*n_lead, z_dim)
        ok = (isinstance(out, (tuple, list)) and len(out) == 2
              and all(isinstance(t, torch.Tensor) and tuple(t.shape) == want for t in out))
        if not ok:
            raise ValueError(
                f"the encoder returned {returned(out)}, but the model needs a tuple "
                f"(z_loc, z_scale) of two tensors of shape {want} (one row per data point, "
                f"z_dim={z_dim}); fix the encoder's output layer"
            )
        self.__dict__["_encoder_checked"] = True
        return out
