"""The sequence data shipped inside aeon and wordfreq (``pip install pvae[sequences]``):
shapes, dtypes, labels and splits of every set; skipped cleanly without the packages."""

import sys

import numpy as np
import pytest
import torch

import pvae
from pvae.data import Sequences

# name: (train + val series, test series, T, D, classes), as aeon 1.x ships them
UCR = {
    "gunpoint": (50, 150, 150, 1, 2),
    "italy_power_demand": (67, 1029, 24, 1, 2),
    "arrow_head": (36, 175, 251, 1, 3),
    "japanese_vowels": (270, 370, 29, 12, 9),
}


@pytest.fixture(scope="session")
def series_sets():
    pytest.importorskip("aeon")
    return {name: pvae.data.load(name, seed=0) for name in UCR}


@pytest.fixture(scope="session")
def words():
    pytest.importorskip("wordfreq")
    return pvae.data.load("words", seed=0)


@pytest.mark.parametrize("name", list(UCR))
def test_ucr_sets(series_sets, name):
    n_train, n_test, t, d_, k = UCR[name]
    d = series_sets[name]
    assert d.kind == "series" and d.x_shape == (t, d_) and d.step_dim == d_
    assert d.num_classes == k and d.vocab is None and d.max_len == t
    assert len(d.train) + len(d.val) == n_train and len(d.test) == n_test
    assert len(d.val) == round(0.1 * n_train)  # carved from aeon's training split
    for s in (d.train, d.val, d.test):
        assert isinstance(s, Sequences) and s.x.dtype == torch.float32
        assert s.x.shape[1:] == (t, d_) and s.lengths.dtype == torch.int64
        assert s.y.dtype == torch.int64 and set(s.y.tolist()) <= set(range(k))
        assert torch.isfinite(s.x).all()
    assert set(d.test.y.tolist()) == set(range(k))
    if name != "japanese_vowels":
        assert (d.test.lengths == t).all() and (d.train.lengths == t).all()


def test_japanese_vowels_is_padded_variable_length(series_sets):
    d = series_sets["japanese_vowels"]
    lengths = torch.cat([d.train.lengths, d.val.lengths, d.test.lengths])
    assert lengths.min() == 7 and lengths.max() == 29  # the UEA archive's 7..29 frames
    s = d.test
    assert (s.x[~s.mask] == 0).all()  # padding is 0
    assert (s.x[s.mask].abs().sum(-1) > 0).all()  # real frames hold the coefficients


def test_ucr_values_are_aeons(series_sets):
    from aeon.datasets import load_gunpoint

    x, y = load_gunpoint(split="test")
    d = series_sets["gunpoint"]
    assert np.allclose(d.test.x[..., 0].numpy(), x[:, 0, :])  # (N, 1, T) -> (N, T, 1)
    assert d.test.y.tolist() == [int(v) - 1 for v in y]  # labels "1", "2" -> 0, 1


def test_splits_are_seeded(series_sets):
    again = pvae.data.load("gunpoint", seed=0)
    other = pvae.data.load("gunpoint", seed=1)
    d = series_sets["gunpoint"]
    assert torch.equal(again.val.x, d.val.x) and not torch.equal(other.val.x, d.val.x)


def test_words(words):
    d = words
    assert d.kind == "tokens" and d.x_shape == (18,) and d.step_dim is None
    assert d.num_classes is None and d.test.y is None
    assert d.vocab.level == "char" and len(d.vocab) == 30 and d.vocab_size == 30
    assert sorted(d.vocab.itos[4:]) == list("abcdefghijklmnopqrstuvwxyz")
    n = len(d.train) + len(d.val) + len(d.test)
    assert 19000 < n <= 20000
    assert (len(d.val), len(d.test)) == (round(0.1 * n), round(0.15 * n))
    texts = d.vocab.decode(d.test.x, d.test.lengths)
    assert all(t.isalpha() and t.islower() and t.isascii() for t in texts)
    assert d.train.x.dtype == torch.int64 and (d.train.x[~d.train.mask] == d.vocab.pad_id).all()
    seen = set(texts) | set(d.vocab.decode(d.train.x, d.train.lengths))
    assert {"the", "people"} <= seen and len(seen) == len(texts) + len(d.train)  # no repeats


def test_ucr_anomaly_135():
    pytest.importorskip("aeon")
    a = pvae.data.load("ucr_anomaly_135")
    assert isinstance(a, pvae.data.AnomalySeries) and a.name == "InternalBleeding16"
    assert a.train.shape == (1200,) and a.test.shape == (7501,) and a.labels.shape == (7501,)
    assert a.train.dtype == torch.float32 and a.labels.dtype == torch.int64
    assert (a.region_start, a.region_end) == (4187, 4199)
    assert a.labels.sum() == 12 and (a.labels[4187:4199] == 1).all()
    assert torch.equal(a.test[:1200], a.train)  # the archive's test series starts with it
    peak = torch.zeros(7501)
    peak[4199 + 99] = 1.0
    assert a.hit(peak) and not a.hit(peak.roll(1))


def test_unknown_name_and_missing_package(monkeypatch):
    with pytest.raises(ValueError, match="unknown data set 'gun_point'.*gunpoint"):
        pvae.data.load("gun_point")
    monkeypatch.setitem(sys.modules, "aeon.datasets", None)  # import fails as if absent
    monkeypatch.setitem(sys.modules, "wordfreq", None)
    for name in ("gunpoint", "ucr_anomaly_135", "words"):
        with pytest.raises(ImportError, match=r"pip install pvae\[sequences\]"):
            pvae.data.load(name)


def test_ucr_anomaly_windowed():
    pytest.importorskip("aeon")
    a = pvae.data.load("ucr_anomaly_135")
    d = a.windowed(100, 25, val_fraction=0.2, seed=0)
    assert d.kind == "series" and d.x_shape == (100, 1) and d.step_dim == 1
    assert len(d.train) + len(d.val) == (1200 - 100) // 25 + 1 and len(d.val) == 9
    whole = torch.cat([d.train.x, d.val.x])
    assert abs(whole.mean()) < 0.1 and abs(whole.std() - 1) < 0.1  # standardised by train
    w = d.test  # the test series' windows in order, with their starts
    assert isinstance(w, pvae.data.Windows) and w.series_length == 7501
    assert w.starts[-1] == 7401 and torch.allclose(w.x[0, :, 0], (a.test[:100] - a.train.mean())
                                                   / a.train.std())
    assert not pvae.data.window_steps(torch.zeros(len(w)), w).isnan().any()


def test_ucr_anomaly_refuses_split_options():
    with pytest.raises(ValueError, match=r"max_train do\(es\) not apply.*\.windowed"):
        pvae.data.load("ucr_anomaly_135", max_train=10)
    with pytest.raises(ValueError, match=r"num_labelled do\(es\) not apply"):
        pvae.data.load("ucr_anomaly_135", num_labelled=0)
