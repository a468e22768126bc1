"""The error ``fit`` raises when training turns non-finite: where, why, and what was kept."""

from __future__ import annotations

from pathlib import Path
from typing import Optional

import torch

from pvae import estimates
from pvae.likelihoods import Likelihood


def _bad_sites(model, batch) -> list[str]:
    try:
        p = estimates.site_log_probs(model, batch, 1)
    except Exception as e:  # noqa: BLE001 - diagnosing a failure already in progress
        return [f"(tracing failed: {e})"]
    bad = []
    for part, sites in p.items():
        for name, lp in sites.items():
            if not torch.isfinite(lp).all():
                bad.append(f"{part} site {name!r}")
    return bad


def _unscaled_data_hint(model, batch) -> str:
    """A suggestion to standardise real-valued data whose features are far from unit scale."""
    likelihood = getattr(model, "likelihood", None)
    if likelihood is None or getattr(likelihood, "discrete", False):
        return ""
    if type(likelihood)._support_problem is not Likelihood._support_problem:
        return ""  # a restricted support (counts, [0, 1], ...): its scale is the data's own
    x = batch[0].detach().float()
    x = x.reshape(x.shape[0], -1)[torch.isfinite(x.reshape(x.shape[0], -1)).all(1)]
    if x.shape[0] == 0:
        return ""
    mean = x.mean(0).abs().max().item()
    std = x.std(0).max().item() if x.shape[0] > 1 else 0.0
    if max(mean, std) <= 10:
        return ""
    return (f" The data are not standardised (feature means up to {mean:.3g} in size, standard "
            f"deviations up to {std:.3g}): for a {likelihood.name} likelihood, standardise each "
            "feature with the training data's mean and standard deviation, "
            "x = (x - mean) / std.")


def numerical_failure(model, batch, epoch: int, step: int, what: str,
                      checkpoint: Optional[Path] = None) -> FloatingPointError:
    """The ``FloatingPointError`` for a failure at ``step`` of ``epoch`` (both 0-based).

    Names the sites whose log density is non-finite on ``batch``, suggests fixes
    (standardising unscaled real-valued data among them) and says whether the
    ``checkpoint`` file was kept.
    """
    sites = _bad_sites(model, batch)
    where = ", ".join(sites) if sites else "no single site (the gradient or the optimiser step)"
    if checkpoint is not None and checkpoint.exists():
        kept = (f" The last good checkpoint, {str(checkpoint)!r}, was kept: resume=True "
                "continues from it.")
    elif checkpoint is not None:
        kept = " No checkpoint had been written yet."
    else:
        kept = " Nothing was saved (pass checkpoint_dir to keep checkpoints)."
    return FloatingPointError(
        f"{what} at epoch {epoch + 1}, step {step + 1}; non-finite log density at: {where}. "
        "Try a lower learning rate (lr), gradient clipping (clip_norm=10), KL warm-up, or a "
        "likelihood with a larger/fixed scale." + _unscaled_data_hint(model, batch) + kept
    )
