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


def test_a_file_saved_before_an_option_existed_loads_with_that_options_default(tmp_path):
    """Options added later (a learned prior, a sequence decoder's variants) are missing
    from older files: they load with the constructor's default, the earlier behaviour."""
    import torch

    import pvae

    for model, added in [(pvae.VAE(16, 2, hidden_dims=(8,)), ("prior", "prior_components")),
                         (pvae.SequenceVAE(x_dim=1, z_dim=2, hidden_dim=4),
                          ("z_every_step", "decoder_history", "excluded_ids"))]:
        path = tmp_path / f"{type(model).__name__}.pt"
        model.save(str(path))
        rec = torch.load(path, weights_only=False)
        for key in added:
            assert key in rec["hparams"], key
            del rec["hparams"][key]
        torch.save(rec, path)
        back = pvae.load(str(path))
        assert back.hparams == model.hparams
