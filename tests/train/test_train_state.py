"""The saved training state (``pvae.train.state``): a resume it cannot honour is refused
before anything changes."""

import pytest
from helpers import copy_params, params_changed

import pvae


@pytest.fixture
def x(binary_digits):
    return binary_digits.train.x[:48]


def test_resuming_with_fewer_epochs_than_done_is_refused(x, tmp_path):
    vae = pvae.VAE(64, 3, hidden_dims=(16,))
    pvae.fit(vae, x, epochs=3, checkpoint_dir=tmp_path, progress=False, seed=0)
    saved = (tmp_path / "checkpoint.pt").read_bytes()
    weights = copy_params(vae)
    with pytest.raises(ValueError, match=r"has 3 epochs done, more than epochs=2.*epochs > 3"):
        pvae.fit(vae, x, epochs=2, checkpoint_dir=tmp_path, resume=True, progress=False)
    assert (tmp_path / "checkpoint.pt").read_bytes() == saved
    assert not params_changed(weights, vae)
