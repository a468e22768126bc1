"""Training and evaluation on a CUDA device (skipped on machines without one)."""

import pytest
import torch

import pvae

pytestmark = pytest.mark.skipif(not torch.cuda.is_available(),
                                reason="no CUDA device on this machine")


def test_fit_evaluate_and_save_on_cuda(binary_digits, tmp_path):
    vae = pvae.VAE(64, 4, hidden_dims=(32,))
    h = pvae.fit(vae, binary_digits.train.x, epochs=3, device="cuda", seed=0,
                 checkpoint_dir=tmp_path)
    assert vae.device.type == "cuda" and h[-1]["train_elbo"] > h[0]["train_elbo"]
    x = binary_digits.test.x.cuda()
    assert torch.isfinite(pvae.evaluate.log_likelihood(vae, x, num_samples=20)).all()
    back = pvae.load(tmp_path / "checkpoint.pt", device="cuda")
    torch.testing.assert_close(back.reconstruct(x[:4]), vae.reconstruct(x[:4]))
