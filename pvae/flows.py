"""Flexible posteriors: inverse autoregressive flows on the guide's Gaussian.

``GaussianPosterior(z_dim, num_flows, context_dim)`` turns an encoder's
``(loc, scale)`` and hidden features ``h`` into q(z | x): a diagonal Normal
when ``num_flows == 0`` (mean-field), or that Normal pushed through
``num_flows`` inverse autoregressive flows (IAF, Kingma et al. 2016), with the
order of the latent coordinates reversed between flows.

Each flow is the paper's numerically stable gated update (their Algorithm 1)::

    [m, s] = AutoregressiveNN(z, h)          # MADE (Germain et al. 2015); h enters every
    sigma  = sigmoid(s + gate_bias)           #   hidden unit of the first layer
    z'     = sigma * z + (1 - sigma) * m
    log |det dz'/dz| = sum_i log sigma_i

where ``m_i`` and ``s_i`` depend only on ``z_{<i}`` (and on ``h``), so the
Jacobian is triangular with diagonal ``sigma``. ``h`` is the encoder's last
hidden layer (the paper's context), given by the model; without one (a custom
encoder that returns only ``(loc, scale)``), the flows are conditioned on
``(loc, log scale)`` instead.

Initialisation, near the identity: the autoregressive network's last layer has
zero weights and zero bias, so at initialisation ``m = 0`` and
``sigma = sigmoid(gate_bias)`` for every input, and each flow moves z by exactly
``(1 - sigmoid(gate_bias)) * |z|`` per coordinate: with the default
``gate_bias = 4`` at most 1.8 % of ``|z|`` (0.09 for ``|z| <= 5``) per flow.
The log-determinant starts at ``z_dim * log sigmoid(gate_bias)`` (-0.018 nats
per coordinate). Kingma et al. (section 4 and appendix) initialise ``s`` "close
to +1 or +2"; pvae's larger bias starts nearer the identity, and Adam moves a
bias at the same rate whatever the gate's slope.

Training dynamics (measured, ``benchmarks/VARIANTS.md``): two more choices made the
flows help rather than hurt. The flows read ``h`` detached (``detach_context``): their
gradients trained into the encoder's shared hidden layer slowed the encoder's own
learning; and the networks' outputs are scaled by 0.1 (``output_scale``): Adam moves
each weight at about the learning rate whatever its gradient's size, so fresh flows
otherwise start moving z faster than the encoder and decoder can follow. On binarised
MNIST after 5 epochs each change alone gained 2.2-2.6 nats of test log-likelihood over
the flows without them (`benchmarks/VARIANTS.md`).
Against the Gaussian guide trained with its KL in closed form (``meanfield``), 20 epochs
of 784-256-256-64 on binarised MNIST: every 2-flow recipe measured (outputs x 0.1 or x 1,
flows thawed after a quarter or half of the epochs, networks of 256 or 512) gained about
+0.5 nats of log-likelihood and +0.6 to +0.7 of ELBO at seed 0 and less at seed 1; none
reached +1 nat of ELBO, and 4 flows trained a worse model (``benchmarks/VARIANTS.md``).

Why they gain so little there (measured, ``benchmarks/VARIANTS.md``, "Why the flows do not
pay at 20 epochs"): not slow gates (trained flows move z by a tenth to a half of the base
scale each, with gates down to 0.1-0.5) nor a lack of expressiveness (fitted to a correlated
Gaussian or a banana they beat the best diagonal Gaussian by far), but the model: on a
trained 20-epoch Gaussian-guide VAE, a diagonal Gaussian fitted to each image separately
comes within 0.4 nats of log p(x) where the encoder's guide is 5.5 nats below it. The gap
is amortisation, which a richer family does not close; on that frozen decoder the flows
closed 0.1 nats more than the encoder alone in 8 epochs.

The KL term (:class:`IAFDistribution`): the mean-field Gaussian guide is usually trained
with its KL in closed form (``meanfield``), which a flow guide cannot have; the Monte
Carlo KL (``trace``) cost the Gaussian guide itself 2.2 nats of test log-likelihood after
3 epochs on binarised MNIST. The flow guide's distribution therefore offers the ``trace``
ELBO a zero-valued control variate that puts the base Gaussian's KL in closed form and
leaves only the flows' correction to Monte Carlo (:meth:`IAFDistribution.kl_control_variate`);
the loss's value and the gradient's mean are unchanged, and with the flows at the
identity the gradient is the ``meanfield`` one exactly (``tests/test_flows.py``).
:func:`train_flows` freezes and thaws the flows (a flow warm-up: the VAE trains with its
flows at the identity first, as measured in ``benchmarks/VARIANTS.md``).

Checkpoints: the flows' parameters are ``flows.{i}.arn.*``, and their constants
(:data:`SETTINGS`: gate bias, output scale, detached context, base KL) are saved beside
them as ``flow_settings``, so a model saved with non-default values loads with them; a
file without them (pvae before they were saved) loads with the constructor's values. A
checkpoint written by an earlier pvae, whose flows were Pyro's
``conditional_affine_autoregressive`` on ``(loc, log scale)`` (parameters
``flows.{i}.nn.*``), cannot be loaded into this posterior: ``pvae.load`` raises
``CheckpointError`` saying so (retrain the model).
"""

from __future__ import annotations

import math
from typing import Optional, Sequence

import pyro.distributions as dist
import torch
from pyro.nn import ConditionalAutoRegressiveNN
from torch import nn
from torch.distributions import constraints

#: Default gate bias: sigmoid(4) = 0.982, so a fresh flow moves z by <= 1.8 % of |z|.
GATE_BIAS = 4.0
#: Default factor on the autoregressive networks' outputs (see GaussianPosterior).
OUTPUT_SCALE = 0.1
#: The flows' constants that the state dict carries (``{prefix}flow_settings``), so that
#: ``pvae.load`` rebuilds a flow guide with the values it was trained with.
SETTINGS = ("gate_bias", "output_scale", "detach_context", "base_kl")


class GatedIAF(torch.distributions.Transform):
    """One gated IAF step ``z' = sigma * z + (1 - sigma) * m`` conditioned on a context.

    Parameters
    ----------
    arn
        A :class:`pyro.nn.ConditionalAutoRegressiveNN` with ``param_dims=[1, 1]``
        giving ``(m, s)``, each of shape ``(..., z_dim)``.
    context
        The context ``h``, shape ``(..., context_dim)``, broadcast against z.
    gate_bias
        Added to ``s`` before the sigmoid.
    output_scale
        ``m`` and ``s`` are the network's outputs times this factor.

    The forward map (sampling) is one network pass; the inverse, needed only to
    score a z this transform did not produce, takes ``z_dim`` passes. The last
    forward call is cached, so a TransformedDistribution scores its own samples
    without inverting.
    """

    domain = constraints.real_vector
    codomain = constraints.real_vector
    bijective = True

    def __init__(self, arn: nn.Module, context: torch.Tensor, gate_bias: float,
                 output_scale: float = 1.0) -> None:
        super().__init__(cache_size=1)
        self.arn, self.context, self.gate_bias = arn, context, gate_bias
        self.output_scale = output_scale
        self._cached_log_gate: Optional[torch.Tensor] = None

    def _params(self, z: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        m, s = self.arn(z, self.context)
        a = self.output_scale
        return (m, s + self.gate_bias) if a == 1.0 else (a * m, a * s + self.gate_bias)

    def _call(self, z: torch.Tensor) -> torch.Tensor:
        m, logit = self._params(z)
        gate = torch.sigmoid(logit)
        self._cached_log_gate = nn.functional.logsigmoid(logit)
        return gate * z + (1 - gate) * m

    def _inverse(self, y: torch.Tensor) -> torch.Tensor:
        z = torch.zeros_like(y)
        for i in self.arn.permutation.tolist():  # coordinate i needs only those before it
            m, logit = self._params(z)
            gate = torch.sigmoid(logit[..., i])
            z = z.clone()
            z[..., i] = (y[..., i] - (1 - gate) * m[..., i]) / gate
        self._cached_log_gate = nn.functional.logsigmoid(self._params(z)[1])
        return z

    def log_abs_det_jacobian(self, z: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        """``sum_i log sigma_i``, shape ``z.shape[:-1]`` (nats)."""
        cached = self._cached_x_y
        if cached[0] is z and cached[1] is y and self._cached_log_gate is not None:
            return self._cached_log_gate.sum(-1)
        return nn.functional.logsigmoid(self._params(z)[1]).sum(-1)


class IAFDistribution(dist.TransformedDistribution):
    """q(z | x): a diagonal Normal pushed through gated IAFs, with a lower-variance KL.

    ``log_prob`` is the exact density (change of variables). :meth:`kl_control_variate`
    gives the ELBO (``elbo="trace"``, :class:`pvae.fast_elbo.FastTrace_ELBO`) a term of
    value zero whose gradient turns the Monte Carlo KL ``log q(z_T) - log p(z_T)`` into

        KL(q_0 || p) + [log p(z_0) - log p(z_T) - sum_t log |det dz_t / dz_{t-1}|]

    the base Gaussian's KL in closed form plus a Monte Carlo correction for the flows:
    the same expectation (the subtracted term ``log q_0(z_0) - log p(z_0) - KL(q_0 || p)``
    has mean zero for every parameter value), so the gradient stays unbiased, and while
    the flows are near the identity the correction is near zero, so the estimator is
    near the mean-field ELBO's analytic KL (pvae's ``meanfield``) rather than the plain
    Monte Carlo KL. Measured on binarised MNIST, ``benchmarks/VARIANTS.md``.
    """

    def kl_control_variate(self, value: torch.Tensor,
                           prior: torch.distributions.Distribution) -> Optional[torch.Tensor]:
        """A zero-valued tensor of shape ``value.shape[:-1]`` whose gradient is that of
        ``KL(q_0 || p) - (log q_0(z_0) - log p(z_0))`` at the base draw ``z_0`` behind
        ``value``; ``None`` when ``KL(q_0 || prior)`` has no closed form (a mixture or
        VampPrior p(z)) or the shapes do not match: the plain Monte Carlo KL is then used."""
        try:
            kl0 = torch.distributions.kl_divergence(self.base_dist, prior)
        except NotImplementedError:
            return None
        z0 = value
        for t in reversed(self.transforms):  # the cached base draw when value was sampled here
            z0 = t.inv(z0)
        d = kl0 - (self.base_dist.log_prob(z0) - prior.log_prob(z0))
        if d.shape != value.shape[:-1]:
            return None
        return d - d.detach()


def _near_identity(arn: ConditionalAutoRegressiveNN) -> None:
    """Zero the last layer, so that ``m = 0`` and ``s = 0`` for every input at first."""
    last = arn.layers[-1]
    with torch.no_grad():
        last.weight.zero_()
        last.bias.zero_()


class GaussianPosterior(nn.Module):
    """q(z | x): a diagonal Normal from ``(loc, scale)``, optionally followed by IAFs.

    Parameters
    ----------
    z_dim
        Latent size.
    num_flows
        Number of gated IAF steps (0: the diagonal Gaussian, mean-field).
    context_dim
        Width of the encoder's features ``h`` that the flows are conditioned on
        (Kingma et al. 2016); ``None``: the flows take ``(loc, log scale)``
        (width ``2 * z_dim``) instead, for encoders without features.
    hidden_dims
        Hidden sizes of each autoregressive network; default two layers of
        ``max(4 * z_dim, 32)``. Each must be at least ``z_dim``.
    gate_bias
        Added to the gate's logit (default :data:`GATE_BIAS`); see the module
        docstring for the displacement at initialisation it implies.
    identity_init
        Zero the networks' last layers (default), so that each flow starts as
        ``z' = sigmoid(gate_bias) * z``; ``False`` keeps PyTorch's default
        initialisation (pvae before the fix; for ablations).
    output_scale
        The networks' outputs ``(m, s)`` are multiplied by this (default
        :data:`OUTPUT_SCALE`): Adam moves every weight at about the learning rate
        whatever its gradient's size, so this slows how fast the flows can move z
        relative to the encoder, by this factor.
    detach_context
        Condition on ``h`` without training the encoder through the flows
        (default): the flows read the encoder's features, the encoder learns them
        for ``(loc, scale)`` alone.
    base_kl
        Return an :class:`IAFDistribution` (default), whose control variate gives the
        ``trace`` ELBO the base Gaussian's KL in closed form; ``False``: a plain
        ``TransformedDistribution`` (the Monte Carlo KL throughout; for ablations).

    Raises
    ------
    ValueError
        For a negative or non-int ``num_flows``, a non-positive ``context_dim``,
        or ``hidden_dims`` smaller than ``z_dim``.
    """

    def __init__(self, z_dim: int, num_flows: int = 0, context_dim: Optional[int] = None,
                 hidden_dims: Sequence[int] | None = None, *, gate_bias: float = GATE_BIAS,
                 identity_init: bool = True, output_scale: float = OUTPUT_SCALE,
                 detach_context: bool = True, base_kl: bool = True):
        super().__init__()
        if not (isinstance(num_flows, int) and not isinstance(num_flows, bool)
                and num_flows >= 0):
            raise ValueError(f"guide_flows must be a non-negative int, got {num_flows!r}")
        if context_dim is not None and not (isinstance(context_dim, int) and context_dim >= 1):
            raise ValueError(f"context_dim must be a positive int or None, got {context_dim!r}")
        hidden = [int(h) for h in (hidden_dims or [max(4 * z_dim, 32)] * 2)]
        if num_flows and min(hidden) < z_dim:
            raise ValueError(f"the flows' hidden_dims {hidden} must each be >= z_dim={z_dim} "
                             "(MADE needs a hidden unit per latent coordinate)")
        self.z_dim, self.num_flows, self.gate_bias = z_dim, num_flows, float(gate_bias)
        self.context_dim, self.output_scale = context_dim, float(output_scale)
        self.detach_context, self.base_kl = bool(detach_context), bool(base_kl)
        order = torch.arange(z_dim)
        self.flows = nn.ModuleList()
        for i in range(num_flows):
            # the order of the coordinates reverses from one flow to the next
            arn = ConditionalAutoRegressiveNN(z_dim, context_dim or 2 * z_dim, hidden,
                                              param_dims=[1, 1],
                                              permutation=order if i % 2 == 0 else order.flip(0))
            if identity_init:
                _near_identity(arn)
            self.flows.append(_Flow(arn))

    @property
    def mean_field(self) -> bool:
        return self.num_flows == 0

    def forward(self, loc: torch.Tensor, scale: torch.Tensor,
                context: Optional[torch.Tensor] = None) -> dist.Distribution:
        """q(z | x) for base ``Normal(loc, scale)`` (each ``(..., z_dim)``) and features
        ``context`` (``(..., context_dim)``; ignored without flows).

        Raises ``ValueError`` when flows need a context of ``context_dim`` features and
        none (or another width) is given.
        """
        base = dist.Normal(loc, scale).to_event(1)
        if not self.num_flows:
            return base
        if self.context_dim is None:
            context = torch.cat([loc, scale.log()], -1)
        elif context is None or context.shape[-1] != self.context_dim:
            got = "none" if context is None else f"width {context.shape[-1]}"
            raise ValueError(f"the IAF posterior takes the encoder's features h of width "
                             f"{self.context_dim}, got {got}; pass posterior(loc, scale, h)")
        if self.detach_context:
            context = context.detach()
        cls = IAFDistribution if self.base_kl else dist.TransformedDistribution
        return cls(base, [
            GatedIAF(f.arn, context, self.gate_bias, self.output_scale) for f in self.flows])

    def _save_to_state_dict(self, destination, prefix, keep_vars):
        """With flows, the state also holds :data:`SETTINGS` (``{prefix}flow_settings``, a
        float64 tensor in that order), so a model saved with other values than the
        constructor's defaults loads with its own (``pvae.save`` / ``pvae.load``)."""
        super()._save_to_state_dict(destination, prefix, keep_vars)
        if self.num_flows:
            destination[prefix + "flow_settings"] = torch.tensor(
                [float(getattr(self, name)) for name in SETTINGS], dtype=torch.float64)

    def _load_from_state_dict(self, state_dict, prefix, local_metadata, strict, missing_keys,
                              unexpected_keys, error_msgs):
        if any(k.startswith(prefix + "flows.") and ".nn." in k for k in state_dict):
            # raised, not listed among the missing keys, so that it is what the user reads
            raise RuntimeError(
                f"the saved IAF posterior ({prefix}flows.*.nn.*) comes from a pvae whose flows "
                "were conditioned on (loc, log scale) only; this pvae's flows take the "
                "encoder's features h (Kingma et al. 2016) and have other parameters, so the "
                "saved flows cannot be loaded: retrain the model (guide_flows as before)")
        key = prefix + "flow_settings"
        settings = state_dict.get(key)
        super()._load_from_state_dict(state_dict, prefix, local_metadata, strict, missing_keys,
                                      unexpected_keys, error_msgs)
        if settings is None or not self.num_flows:
            return  # a file from before the settings were saved: the constructor's values
        if key in unexpected_keys:
            unexpected_keys.remove(key)
        if tuple(settings.shape) != (len(SETTINGS),):
            error_msgs.append(f"{key}: expected {len(SETTINGS)} values ({', '.join(SETTINGS)}), "
                              f"got shape {tuple(settings.shape)}")
            return
        for name, value in zip(SETTINGS, settings.tolist()):
            setattr(self, name, bool(value) if name in ("detach_context", "base_kl")
                    else float(value))


class _Flow(nn.Module):
    """Holds one flow's autoregressive network (``flows.{i}.arn``)."""

    def __init__(self, arn: nn.Module) -> None:
        super().__init__()
        self.arn = arn


def displacement_bound(gate_bias: float = GATE_BIAS) -> float:
    """``1 - sigmoid(gate_bias)``: the most a freshly initialised flow moves z, per unit of
    ``|z|`` (each coordinate moves by exactly this times its magnitude)."""
    return 1.0 - 1.0 / (1.0 + math.exp(-gate_bias))


def train_flows(model: nn.Module, trainable: bool = True) -> int:
    """Switch the training of every IAF network in ``model`` on or off (``requires_grad`` of
    the parameters of each :class:`GaussianPosterior`'s flows), and return how many flows
    that touched. ``pvae.fit``'s optimiser skips parameters without gradients, so flows
    switched off stay as they are (near the identity at initialisation) while the encoder
    and decoder train, and start training when switched on again, e.g. from a ``callback``::

        train_flows(m, False)
        pvae.fit(m, x, epochs=30, callback=lambda row: row["epoch"] == 15 and train_flows(m))

    Raises ``ValueError`` when ``model`` has no flows (the call would do nothing).
    """
    flows = [f for post in model.modules() if isinstance(post, GaussianPosterior)
             for f in post.flows]
    if not flows:
        raise ValueError(f"{type(model).__name__} has no guide flows to train or freeze "
                         "(build it with guide_flows=N)")
    for f in flows:
        f.requires_grad_(bool(trainable))
    return len(flows)
