"""pvae.latent.embed_2d's PCA (scikit-learn's): checked against the covariance's eigenvectors."""

import numpy as np
import pytest
import torch

from pvae import latent


def _codes(n=200, seed=0):
    """Codes with known principal axes: standard deviations 3, 1, 0.1 along a random rotation."""
    rng = np.random.default_rng(seed)
    q, _ = np.linalg.qr(rng.normal(size=(3, 3)))
    z = rng.normal(size=(n, 3)) * np.array([3.0, 1.0, 0.1]) @ q.T + np.array([5.0, -2.0, 1.0])
    return torch.as_tensor(z, dtype=torch.float32)


def test_pca_projects_onto_the_two_leading_eigenvectors_up_to_sign():
    z = _codes()
    coords, used = latent.embed_2d(z, "pca")
    assert used == "PCA" and coords.shape == (len(z), 2)
    zc = z.double().numpy() - z.double().numpy().mean(0)
    _, vecs = np.linalg.eigh(np.cov(zc.T))
    expected = zc @ vecs[:, ::-1][:, :2]  # eigh sorts ascending
    got = coords.double().numpy()
    for k in range(2):  # each component equals the eigen-projection or its mirror image
        sign = np.sign(got[:, k] @ expected[:, k])
        np.testing.assert_allclose(got[:, k], sign * expected[:, k], atol=1e-4)
    assert got[:, 0].var() > 5 * got[:, 1].var()  # the first axis is the wide one


def test_pca_is_deterministic_and_auto_uses_it_above_two_dimensions():
    z = _codes(seed=1)
    a, _ = latent.embed_2d(z, "pca")
    b, used = latent.embed_2d(z.clone(), "auto")
    assert used == "PCA" and torch.equal(a, b)


def test_two_points_are_embedded_and_one_is_refused():
    coords, _ = latent.embed_2d(torch.tensor([[0.0, 0.0, 0.0], [2.0, 0.0, 0.0]]), "pca")
    assert coords.shape == (2, 2)
    assert abs(coords[0, 0] - coords[1, 0]) == pytest.approx(2.0)
    with pytest.raises(ValueError, match="at least 2 points, got 1"):
        latent.embed_2d(torch.zeros(1, 3), "pca")
