"""The IAF guide's constants (gate bias, output scale, detached context, base KL) travel
with the model through ``pvae.save`` / ``pvae.load`` (``pvae.flows.SETTINGS``)."""

import pytest
import torch

import pvae
from pvae.checkpoint import CheckpointError
from pvae.flows import GATE_BIAS, OUTPUT_SCALE, SETTINGS, GaussianPosterior

CUSTOM = {"gate_bias": 1.5, "output_scale": 0.7, "detach_context": False, "base_kl": False}


def _custom_vae():
    torch.manual_seed(0)
    m = pvae.VAE(64, 3, hidden_dims=(16,), guide_flows=2)
    m.posterior = GaussianPosterior(3, 2, 16, **CUSTOM)
    with torch.no_grad():  # off the zero initialisation, so the constants change log q
        for f in m.posterior.flows:
            f.arn.layers[-1].weight.normal_(0, 0.3)
            f.arn.layers[-1].bias.normal_(0, 0.3)
    return m


def test_non_default_settings_survive_save_and_load(tmp_path, xy):
    x, _ = xy
    m = _custom_vae()
    m.save(str(tmp_path / "m.pt"))
    back = pvae.load(str(tmp_path / "m.pt"))
    for name, value in CUSTOM.items():
        assert getattr(back.posterior, name) == value, name
        assert type(getattr(back.posterior, name)) is type(value), name
    loc, scale, h = m.encoder.with_hidden(x[:6])
    z = torch.randn(6, 3)
    assert torch.allclose(m.posterior(loc, scale, h).log_prob(z),
                          back.posterior(loc, scale, h).log_prob(z), atol=1e-5)
    # the defaults would score the same z differently: the test can tell the two apart
    fresh = pvae.VAE(64, 3, hidden_dims=(16,), guide_flows=2)
    fresh.load_state_dict({k: v for k, v in m.state_dict().items()
                           if not k.endswith("flow_settings")})
    assert fresh.posterior.gate_bias == GATE_BIAS
    assert fresh.posterior.output_scale == OUTPUT_SCALE
    assert not torch.allclose(m.posterior(loc, scale, h).log_prob(z),
                              fresh.posterior(loc, scale, h).log_prob(z), atol=1e-3)


def test_a_file_without_settings_loads_with_the_constructors_values(tmp_path):
    """Checkpoints written before the settings were saved (no ``flow_settings``) still load."""
    m = pvae.VAE(64, 3, hidden_dims=(16,), guide_flows=2)
    record = pvae.checkpoint.model_record(m)
    record["state_dict"] = {k: v for k, v in record["state_dict"].items()
                            if not k.endswith("flow_settings")}
    torch.save(record, tmp_path / "old.pt")
    back = pvae.load(str(tmp_path / "old.pt"))
    assert back.posterior.gate_bias == GATE_BIAS and back.posterior.output_scale == OUTPUT_SCALE


def test_mean_field_checkpoints_are_unchanged():
    """Without flows there are no settings to save: the Gaussian guide's keys stay as they were."""
    assert not any(k.endswith("flow_settings") for k in pvae.VAE(64, 3).state_dict())
    keys = [k for k in pvae.VAE(64, 3, guide_flows=1).state_dict() if k.endswith("settings")]
    assert keys == ["posterior.flow_settings"]
    assert len(SETTINGS) == 4


def test_malformed_settings_are_refused_clearly(tmp_path):
    m = pvae.VAE(64, 3, hidden_dims=(16,), guide_flows=2)
    record = pvae.checkpoint.model_record(m)
    record["state_dict"]["posterior.flow_settings"] = torch.zeros(2, dtype=torch.float64)
    torch.save(record, tmp_path / "bad.pt")
    with pytest.raises(CheckpointError, match="flow_settings: expected 4 values"):
        pvae.load(str(tmp_path / "bad.pt"))


def test_every_flow_model_saves_its_settings(tmp_path):
    """The hierarchy's per-layer posteriors each keep their own settings."""
    m = pvae.HierarchicalVAE(64, (4, 2), hidden_dims=(16,), guide_flows=1)
    posts = [p for p in m.modules() if isinstance(p, GaussianPosterior)]
    assert len(posts) == 2
    posts[1].output_scale = 0.25
    m.save(str(tmp_path / "h.pt"))
    back = [p for p in pvae.load(str(tmp_path / "h.pt")).modules()
            if isinstance(p, GaussianPosterior)]
    assert [p.output_scale for p in back] == [OUTPUT_SCALE, 0.25]
