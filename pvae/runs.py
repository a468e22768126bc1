"""Run folders: what ``pvae train``, ``evaluate``, ``plot``, ``sample`` and ``compare`` do.

The command line (:mod:`pvae.cli`) parses arguments and prints; the work and
the run folder's files live here.
"""

from __future__ import annotations

from typing import Optional

from pvae.config import Config, ConfigError


def build_model(cfg: Config, x_shape: tuple[int, ...], num_classes: Optional[int] = None):
    """The model a config describes, for data points of shape ``x_shape``."""
    import pvae

    m = cfg.model
    common = dict(x_dim=x_shape, hidden_dims=m.hidden_dims, likelihood=m.likelihood,
                  likelihood_kwargs=m.likelihood_kwargs, beta=m.beta, activation=m.activation,
                  guide_flows=m.guide_flows)
    classes = m.num_classes or num_classes
    if m.type == "cvae" and m.y_dim:  # a vector condition
        return pvae.CVAE(z_dim=m.z_dim, y_dim=m.y_dim, learned_prior=m.learned_prior, **common)
    if m.type in ("cvae", "ssvae") and not classes:
        raise ConfigError(f"model.type {m.type} needs labels: set model.num_classes, "
                          "or use a data set with labels")
    if m.type == "vae":
        return pvae.VAE(z_dim=m.z_dim, arch=m.arch, **common)
    if m.type == "cvae":
        return pvae.CVAE(z_dim=m.z_dim, num_classes=classes, learned_prior=m.learned_prior,
                         **common)
    if m.type == "ssvae":
        return pvae.SemiSupervisedVAE(num_classes=classes, z_dim=m.z_dim,
                                      aux_weight=m.aux_weight, batching=m.batching,
                                      balance_weight=m.balance_weight, **common)
    return pvae.HierarchicalVAE(z_dims=m.z_dims, guide=m.guide, **common)
