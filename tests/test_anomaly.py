"""Windows of a long series (``pvae.data.windows``), window scores mapped back to time
steps, the UCR archive's criterion, and per-window anomaly scores of a model."""

import numpy as np
import pytest
import torch

import pvae
from pvae.data import Windows, ucr_hit, window_steps, windows


# -- windows ----------------------------------------------------------------------------
def test_windows_exact_small_case():
    w = windows(torch.arange(10.0), 4, 3)
    # starts 0, 3, 6 cover 0..9 exactly: no extra window
    assert isinstance(w, Windows) and w.starts.tolist() == [0, 3, 6] and w.series_length == 10
    assert w.x.shape == (3, 4, 1) and w.x.dtype == torch.float32
    assert w.x[..., 0].tolist() == [[0, 1, 2, 3], [3, 4, 5, 6], [6, 7, 8, 9]]
    assert w.lengths.tolist() == [4, 4, 4]


def test_windows_cover_the_end_and_keep_dimensions():
    series = np.stack([np.arange(9.0), -np.arange(9.0)], axis=1)  # (T=9, D=2)
    w = windows(series, 4, 2)
    assert w.starts.tolist() == [0, 2, 4, 5]  # 5: one more window ending at the last step
    assert w.x.shape == (4, 4, 2)
    assert w.x[3, :, 0].tolist() == [5, 6, 7, 8] and w.x[3, :, 1].tolist() == [-5, -6, -7, -8]
    assert windows(np.arange(5.0), 5).starts.tolist() == [0]
    assert windows(np.arange(5.0), 1).x[..., 0].tolist() == [[0], [1], [2], [3], [4]]


@pytest.mark.parametrize("kwargs, match", [
    (dict(length=0), r"window length must be a whole number in 1..6"),
    (dict(length=7), r"in 1..6"),
    (dict(length=2, stride=0), "stride must be"),
    (dict(length=2.5), "whole number"),
])
def test_windows_bad_arguments(kwargs, match):
    with pytest.raises(ValueError, match=match):
        windows(torch.zeros(6), **kwargs)


def test_windows_bad_series():
    with pytest.raises(ValueError, match="first at step 2"):
        windows(torch.tensor([0.0, 1.0, float("nan"), 3.0]), 2)
    with pytest.raises(ValueError, match=r"\(T,\) or \(T, D\)"):
        windows(torch.zeros(2, 5, 1), 2)


# -- windows -> steps -------------------------------------------------------------------
def test_window_steps_mean_and_max_exact():
    w = windows(torch.zeros(6), 3, 1)  # starts 0, 1, 2, 3
    scores = torch.tensor([1.0, 2.0, 3.0, 10.0])
    # step 0: w0; 1: w0,w1; 2: w0..w2; 3: w1..w3; 4: w2,w3; 5: w3
    assert window_steps(scores, w).tolist() == pytest.approx(
        [1, 1.5, 2, 5, 6.5, 10])
    assert window_steps(scores, w, "max").tolist() == [1, 2, 3, 10, 10, 10]
    assert window_steps(scores, w).dtype == torch.float64


def test_window_steps_gap_is_nan_and_errors():
    w = windows(torch.zeros(6), 2, 2)  # starts 0, 2, 4
    hand = Windows(w.x[[0, 2]], w.lengths[[0, 2]], starts=torch.tensor([0, 4]), series_length=6)
    out = window_steps(torch.tensor([1.0, 2.0]), hand)
    assert out[:2].tolist() == [1, 1] and torch.isnan(out[2:4]).all() and out[4:].tolist() == [2, 2]
    with pytest.raises(ValueError, match="one score per window"):
        window_steps(torch.zeros(2), w)
    with pytest.raises(ValueError, match="NaN"):
        window_steps(torch.tensor([0.0, float("nan"), 1.0]), w)
    with pytest.raises(ValueError, match="reduce must be"):
        window_steps(torch.zeros(3), w, "median")
    with pytest.raises(ValueError, match="outside the series"):
        Windows(w.x, w.lengths, starts=torch.tensor([0, 2, 5]), series_length=6)


# -- the UCR criterion ------------------------------------------------------------------
@pytest.mark.parametrize("top, hit", [
    (500, True), (509, True),  # inside [500, 510)
    (400, True), (609, True),  # the widened edges: 500 - 100 and 510 + 100 - 1
    (399, False), (610, False), (0, False),
])
def test_ucr_hit_region_widened_by_100(top, hit):
    s = torch.zeros(1000)
    s[top] = 5.0
    assert ucr_hit(s, 500, 510) is hit


def test_ucr_hit_ties_slack_and_errors():
    s = torch.zeros(1000)
    s[[50, 505]] = 1.0  # a tie: the first highest step counts
    assert not ucr_hit(s, 500, 510)
    assert ucr_hit(s, 500, 510, slack=500)
    with pytest.raises(ValueError, match="NaN"):
        ucr_hit(torch.full((10,), float("nan")), 2, 3)
    with pytest.raises(ValueError, match="non-empty part"):
        ucr_hit(torch.zeros(10), 5, 5)
    with pytest.raises(ValueError, match="shape"):
        ucr_hit(torch.zeros(2, 5), 1, 2)


# -- model scores -----------------------------------------------------------------------
def test_window_scores_with_a_scorer_callable_and_step_report():
    series = torch.zeros(200)
    series[120:124] = 3.0  # the anomaly
    w = windows(series, 10, 5)
    calls = []

    def energy(x, lengths):  # a stand-in scorer: squared size per window
        calls.append((x.shape, lengths.tolist()))
        return (x ** 2).sum((1, 2))

    scores = pvae.evaluate.window_scores(energy, w)
    assert calls[0][0] == (len(w), 10, 1) and set(calls[0][1]) == {10}
    assert scores.tolist() == [36.0 * (int(s) <= 123 and int(s) + 10 > 120) for s in w.starts]
    steps = pvae.evaluate.step_scores(energy, w, reduce="max")
    labels = torch.zeros(200, dtype=torch.long)
    labels[120:124] = 1
    report = pvae.evaluate.step_report(steps, labels, normal_scores=torch.zeros(50))
    assert report["ucr_hit"] is True and 111 <= report["top_step"] <= 129
    assert report["roc_auc"] > 0.9 and report["recall"] == 1.0
    # windows starting at 115 and 120 hold the anomaly: with max, steps 115..129 score 36,
    # of which 11 are normal steps (of 196)
    assert report["false_alarm_rate"] == pytest.approx(11 / 196)
    with pytest.raises(ValueError, match="one score per window"):
        pvae.evaluate.window_scores(lambda x, lengths: torch.zeros(3), w)
    with pytest.raises(TypeError, match="pvae.data.windows"):
        pvae.evaluate.window_scores(energy, pvae.data.Sequences(torch.zeros(2, 3, 1), [3, 3]))


def test_window_scores_of_a_pvae_model_find_the_anomaly():
    """A small MLP VAE trained on windows of a normal sine wave scores windows of a test
    series as its -ELBO (nats per window); the highest step lies in a flat-lined stretch."""
    t = torch.arange(1600.0)
    normal = torch.sin(2 * np.pi * t / 25)
    test = torch.sin(2 * np.pi * t[:800] / 25)
    test[500:515] = 0.0  # the anomaly: the rhythm stops
    train = windows(normal, 25, 5)
    vae = pvae.VAE(25, 2, hidden_dims=(32,), likelihood="gaussian")
    pvae.fit(vae, train.x.flatten(1), epochs=30, seed=0, lr=1e-2, batch_size=64)
    w = windows(test, 25, 5)
    torch.manual_seed(0)
    scores = pvae.evaluate.window_scores(vae, w, num_samples=20)
    torch.manual_seed(0)
    direct = pvae.evaluate.anomaly_scores(vae, w.x.flatten(1), num_samples=20)
    assert torch.allclose(scores, direct)  # the same -ELBO, on windows reshaped to x_shape
    steps = pvae.evaluate.step_scores(vae, w, num_samples=20)
    assert ucr_hit(steps, 500, 515, slack=0)  # inside the flat stretch itself (seeds 0-3: 505)
    with pytest.raises(ValueError, match="cut windows of the length the model was trained on"):
        pvae.evaluate.window_scores(vae, windows(test, 20, 5))


def test_a_split_of_windows_keeps_their_starts():
    from pvae.data.base import split

    series = torch.arange(50.0)
    train, val, test = split(windows(series, 5, 3), 4, 3, seed=0)
    for part in (train, val, test):
        assert isinstance(part, Windows) and part.series_length == 50
        assert torch.equal(part.x[:, 0, 0], part.starts.float())  # window i starts at starts[i]
    assert len(train) + len(val) + len(test) == len(windows(series, 5, 3))


def _shared_level_pair():
    """x_t = z + eps_t over the real steps, z ~ N(0, 1), eps ~ N(0, 1); the guide is the exact
    posterior N(sum_t x_t / (n + 1), 1 / (n + 1)), so every ELBO sample equals log p(x)."""
    import pyro
    import pyro.distributions as dist

    def model(x, lengths):
        mask = pvae.data.step_mask(lengths, x.shape[1])[..., None]
        with pyro.plate("data", x.shape[0]):
            z = pyro.sample("z", dist.Normal(0.0, 1.0))
            loc = z[..., None, None].expand(*z.shape, *x.shape[1:])  # (samples..., N, T, D)
            px = dist.Normal(loc, 1.0).mask(mask).to_event(2)
            pyro.sample("x", px, obs=x)

    def guide(x, lengths):
        mask = pvae.data.step_mask(lengths, x.shape[1])[..., None]
        n = lengths.float()
        with pyro.plate("data", x.shape[0]):
            pyro.sample("z", dist.Normal((x * mask).sum((1, 2)) / (n + 1), (n + 1) ** -0.5))

    return model, guide


def test_window_scores_of_an_x_lengths_pair_are_exact():
    series = torch.randn(40, generator=torch.Generator().manual_seed(0))
    w = windows(series, 6, 4)
    pair = _shared_level_pair()
    for score in ("elbo", "log_likelihood"):
        got = pvae.evaluate.window_scores(pair, w, score=score, num_samples=3)
        cov = torch.eye(6, dtype=torch.float64) + 1.0  # marginal covariance I + 1 1^T
        exact = -torch.distributions.MultivariateNormal(torch.zeros(6, dtype=torch.float64),
                                                        cov).log_prob(w.x[..., 0].double())
        assert torch.allclose(got.double(), exact, atol=1e-4), score
