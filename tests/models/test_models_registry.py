"""Models built and loaded by name (``pvae.models.registry``)."""

import pytest
import torch

import pvae
from pvae.checkpoint import CheckpointError


def test_models_are_built_by_name_with_their_options_checked():
    assert pvae.models.names() == ["cvae", "hvae", "seqvae", "ssvae", "vae"]
    m = pvae.models.get("ssvae", x_dim=64, num_classes=10, z_dim=3)
    assert type(m) is pvae.SemiSupervisedVAE and m.z_dim == 3
    assert pvae.models.get(type(m).config_name, **m.hparams).hparams == m.hparams
    with pytest.raises(ValueError, match="unknown model 'gan'; valid names are: cvae, hvae"):
        pvae.models.get("gan", x_dim=64)
    with pytest.raises(ValueError, match="model 'vae' has no option 'z_dims'; its options are: "
                                         "x_dim, z_dim"):
        pvae.models.get("vae", x_dim=64, z_dims=(3, 2))


class MyGaussian(pvae.likelihoods.Gaussian):
    name = "my_gaussian"  # not registered


class ShadowGaussian(pvae.likelihoods.Gaussian):
    pass  # keeps the name "gaussian", but is not the registered class


@pytest.mark.parametrize("lik_cls", [MyGaussian, ShadowGaussian])
def test_a_user_defined_likelihood_says_to_pass_the_model(digits, tmp_path, lik_cls):
    vae = pvae.VAE(64, 3, hidden_dims=(16,), likelihood=lik_cls(scale=0.5))
    vae.save(tmp_path / "m.pt")
    with pytest.raises(CheckpointError, match=rf"likelihood not in pvae's registry "
                                              rf"\({lik_cls.__name__}\).*model=\.\.\."):
        pvae.load(tmp_path / "m.pt")
    again = pvae.VAE(64, 3, hidden_dims=(16,), likelihood=lik_cls(scale=0.5))
    loaded = pvae.load(tmp_path / "m.pt", model=again)
    x = digits.test.x[:4]
    assert torch.equal(loaded.reconstruct(x), vae.eval().reconstruct(x))
