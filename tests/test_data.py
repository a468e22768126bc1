"""Data loading: digits, MNIST from the shared files, user arrays and files, binarisation."""

import numpy as np
import pytest
import torch

import pvae
from pvae.data import load, load_array


# -- labels in a user's file, checked at load ---------------------------------------------------
def _npz(tmp_path, y, n=30):
    path = tmp_path / "data.npz"
    np.savez(path, x=np.random.default_rng(0).random((n, 4)).astype(np.float32), y=y)
    return path


@pytest.mark.parametrize("y, match", [
    (np.tile([0.4, 1.6, 2.9], 10), r"whole class ids, found 0.4 \(30 fractional"),
    (np.array(["cat", "dog", "eel"] * 10), r"<U3 values, not class ids.*numpy.unique"),
    (np.array([0.0, 1.0, np.nan] * 10), r"10 NaN or infinite"),
    (np.tile([1000, 2000, 3000], 10), r"3 distinct value\(s\) but range up to 3000, which would "
                                      r"make 3001 classes; re-index them to 0..2.*numpy.unique"),
    (np.tile([0, 1, -2], 10), r"found -2"),
])
def test_bad_labels_in_a_users_file_are_refused_at_load(tmp_path, y, match):
    with pytest.raises(ValueError, match=match):
        pvae.data.load("array", path=_npz(tmp_path, y))
    with pytest.raises(ValueError, match=match):
        pvae.data.ArrayDataset(np.zeros((30, 4), np.float32), y)


def test_a_matrix_y_in_a_file_is_condition_vectors_and_must_be_finite(tmp_path):
    # (N, D) with D > 1 in a user's file: a CVAE's condition vectors (config model.y_dim)
    y = np.random.default_rng(1).normal(size=(30, 3))
    data = pvae.data.load("array", path=_npz(tmp_path, y))
    assert data.train.y.dtype == torch.float32 and data.train.y.shape[1] == 3
    y[4, 1] = np.nan
    with pytest.raises(ValueError, match="condition vectors y must be finite"):
        pvae.data.load("array", path=_npz(tmp_path, y))
    # as class labels (ArrayDataset), a matrix is refused with the shape it has
    with pytest.raises(ValueError, match=r"shape \(30, 3\)"):
        pvae.data.ArrayDataset(np.zeros((30, 4), np.float32), np.zeros((30, 3)))


def test_good_labels_in_a_users_file(tmp_path):
    data = pvae.data.load("array", path=_npz(tmp_path, np.tile([0, 1, 2], 10)[:, None]))
    assert data.train.y.dim() == 1 and data.num_classes == 3  # (N, 1) squeezed
    data = pvae.data.load("array", path=_npz(tmp_path, np.tile([0.0, 2.0, -1.0], 10)))
    assert data.num_classes == 3 and set(data.train.y.tolist()) <= {-1, 0, 2}


def test_digits_splits_and_scaling():
    d = load("digits")
    assert d.x_shape == (1, 8, 8) and d.image_shape == (1, 8, 8)
    assert len(d.train) + len(d.val) + len(d.test) == 1797
    assert d.train.x.min() >= 0 and d.train.x.max() <= 1
    assert d.train.y.dtype == torch.long and set(d.train.y.unique().tolist()) == set(range(10))
    # deterministic for a seed, different for another
    assert torch.equal(load("digits").train.x, d.train.x)
    assert not torch.equal(load("digits", seed=1).train.x, d.train.x)
    flat = load("digits", flatten=True, val_fraction=0.0)
    assert flat.x_shape == (64,) and flat.val is None and flat.image_shape == (1, 8, 8)


def test_static_and_dynamic_binarisation():
    s = load("digits", binarize="static")
    assert set(s.train.x.unique().tolist()) == {0.0, 1.0} and s.transform is None
    d = load("digits", binarize="dynamic")
    assert d.transform is pvae.data.binarize
    assert len(d.train.x.unique()) > 2  # grey levels, binarised per batch by fit
    assert set(d.test.x.unique().tolist()) == {0.0, 1.0}  # evaluation data fixed once
    assert torch.equal(load("digits", binarize="dynamic").test.x, d.test.x)


def test_mnist_from_the_shared_files(shared_data):
    d = load("mnist", root=shared_data, max_train=1000, val_fraction=0.1)
    assert d.x_shape == (1, 28, 28) and len(d.test) == 10000 and len(d.train) == 1000
    assert d.test.y[:5].tolist() == [7, 2, 1, 0, 4]
    full = load("mnist", root=shared_data, val_fraction=0.0)
    assert len(full.train) == 60000
    assert full.train.x.mean().item() * 255 == pytest.approx(33.318, abs=0.01)
    f = load("fashion_mnist", root=shared_data, flatten=True, max_train=10)
    assert f.x_shape == (784,)


def test_missing_torchvision_files_say_where_to_look(tmp_path):
    with pytest.raises(FileNotFoundError, match="MNIST/raw.*download=True"):
        load("mnist", root=tmp_path)


def test_user_arrays(tmp_path):
    x = np.random.default_rng(0).poisson(3.0, size=(50, 4)).astype(np.int64)
    y = np.arange(50) % 3
    np.save(tmp_path / "a.npy", x)
    np.savez(tmp_path / "b.npz", x=x, y=y)
    np.savetxt(tmp_path / "c.csv", x, delimiter=",", header="a,b,c,d", comments="")
    np.savetxt(tmp_path / "d.csv", x, delimiter=",")
    for name in ("a.npy", "b.npz", "c.csv", "d.csv"):
        xt, _ = load_array(tmp_path / name)
        assert torch.equal(xt, torch.tensor(x, dtype=torch.float32)), name
    d = load("array", path=tmp_path / "b.npz", val_fraction=0.2, test_fraction=0.2)
    assert len(d.train) == 30 and d.num_classes == 3 and d.image_shape is None
    vae = pvae.VAE(4, 2, likelihood="poisson")
    assert len(pvae.fit(vae, d.train, epochs=2)) == 2


def test_bad_user_files(tmp_path):
    with pytest.raises(FileNotFoundError, match="does not exist"):
        load_array(tmp_path / "missing.npy")
    (tmp_path / "bad.npy").write_bytes(b"garbage")
    with pytest.raises(ValueError, match="cannot read data file"):
        load_array(tmp_path / "bad.npy")
    np.save(tmp_path / "nan.npy", np.array([[1.0, np.nan]]))
    with pytest.raises(ValueError, match="NaN or infinite"):
        load_array(tmp_path / "nan.npy")
    np.save(tmp_path / "empty.npy", np.zeros((0, 3)))
    with pytest.raises(ValueError, match="N >= 1"):
        load_array(tmp_path / "empty.npy")
    (tmp_path / "x.txt").write_text("1,2")
    with pytest.raises(ValueError, match="unsupported file type"):
        load_array(tmp_path / "x.txt")
    (tmp_path / "t.csv").write_text("a,b\n1,2\n3,oops\n")
    with pytest.raises(ValueError, match="cannot read data file"):
        load_array(tmp_path / "t.csv")
    with pytest.raises(ValueError, match="needs path"):
        load("array")
    with pytest.raises(ValueError, match="unknown data set"):
        load("cifar")
