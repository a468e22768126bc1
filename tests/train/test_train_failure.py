"""Training that turns non-finite (``pvae.train.failure``): the site is named, the
checkpoint kept, and a fix suggested."""

import pytest
import torch
from helpers import small_vae

import pvae
from pvae.train import CHECKPOINT


def test_numerical_failure_names_the_site_and_keeps_the_checkpoint(x, tmp_path):
    vae = small_vae()
    written = []

    def poison(row):  # after epoch 1 is checkpointed, the decoder goes bad
        written.append((tmp_path / CHECKPOINT).read_bytes())
        with torch.no_grad():
            vae.decoder.net[-1].bias.fill_(float("nan"))

    with pytest.raises(FloatingPointError, match="observed site 'x'.*lower learning rate") as e:
        pvae.fit(vae, x, epochs=3, checkpoint_dir=tmp_path, callback=poison)
    assert f"The last good checkpoint, '{tmp_path / CHECKPOINT}', was kept" in str(e.value)
    assert "standardise" not in str(e.value)  # binary data: nothing to standardise
    assert len(written) == 1 and (tmp_path / CHECKPOINT).read_bytes() == written[0]
    assert pvae.load(tmp_path / CHECKPOINT).decoder.net[-1].bias.isfinite().all()


def _poisoned_fit(model, data, **kwargs):
    def poison(row):  # after epoch 1, the decoder goes bad
        with torch.no_grad():
            model.decoder.net[-1].bias.fill_(float("nan"))

    with pytest.raises(FloatingPointError) as e:
        pvae.fit(model, data, epochs=3, callback=poison, **kwargs)
    return str(e.value)


def test_numerical_failure_claims_a_checkpoint_only_when_one_exists(x, tmp_path):
    message = _poisoned_fit(small_vae(), x)
    assert "checkpoint was kept" not in message and "Nothing was saved" in message
    message = _poisoned_fit(small_vae(), x, checkpoint_dir=tmp_path, checkpoint_every=5)
    assert "checkpoint was kept" not in message and "No checkpoint had been written" in message
    assert not (tmp_path / CHECKPOINT).exists()


@pytest.mark.parametrize("likelihood", ["gaussian", "laplace"])
def test_numerical_failure_suggests_standardising_unscaled_real_data(likelihood):
    g = torch.Generator().manual_seed(0)
    table = 5000.0 + 300.0 * torch.randn(200, 6, generator=g)  # means 5000, std 300
    message = _poisoned_fit(pvae.VAE(6, 2, hidden_dims=(8,), likelihood=likelihood), table)
    assert "not standardised" in message and "x = (x - mean) / std" in message
    assert f"for a {likelihood} likelihood" in message
    standard = (table - table.mean(0)) / table.std(0)
    message = _poisoned_fit(pvae.VAE(6, 2, hidden_dims=(8,), likelihood=likelihood), standard)
    assert "standardis" not in message
