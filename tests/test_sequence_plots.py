"""Figures of sequences (``pvae.sequence_plots``): lines, text tables, anomaly timelines."""

import hashlib

import pytest
import torch
from helpers import assert_png

from pvae import sequence_plots as sp


def _padded(n=5, t=30, d=None):
    g = torch.Generator().manual_seed(0)
    shape = (n, t) if d is None else (n, t, d)
    x = torch.sin(torch.linspace(0, 6, t)).expand(*shape[:1], t).clone()
    x = x.unsqueeze(-1).expand(shape).clone() if d else x
    x = x + 0.1 * torch.randn(shape, generator=g)
    lengths = torch.tensor([t, t - 5, t - 10, 12, 3][:n])
    return x, lengths


def _digest(path):
    return hashlib.sha256(path.read_bytes()).hexdigest()


def test_series_drawn_as_lines_with_reconstructions(tmp_path):
    x, lengths = _padded()
    assert_png(sp.sequence_lines(x, lengths, tmp_path / "s.png", title="samples"), 400, 150)
    rec = x + 0.05
    assert_png(sp.sequence_lines(x, lengths, tmp_path / "r.png", reconstruction=rec,
                                 labels=[0, 1, 0, 1, 1]), 400, 150)
    xm, lm = _padded(d=3)  # multivariate: one colour per variable
    assert_png(sp.sequence_lines(xm, lm, tmp_path / "m.png", max_series=2), 300, 150)


def test_panels_can_be_named(tmp_path):
    x, lengths = _padded()
    plain = sp.sequence_lines(x, lengths, tmp_path / "plain.png")
    named = sp.sequence_lines(x, lengths, tmp_path / "named.png",
                              names=[f"{i / 4:.2f} of the way" for i in range(5)])
    assert_png(named, 400, 150)
    assert _digest(plain) != _digest(named)
    with pytest.raises(ValueError, match="names must give a title to each of the 5 panels"):
        sp.sequence_lines(x, lengths, tmp_path / "few.png", names=["a", "b"])


def test_padding_is_never_drawn(tmp_path):
    x, lengths = _padded()
    pad = torch.arange(x.shape[1]) >= lengths[:, None]
    a = sp.sequence_lines(x.masked_fill(pad, 0.0), lengths, tmp_path / "a.png")
    b = sp.sequence_lines(x.masked_fill(pad, float("nan")), lengths, tmp_path / "b.png")
    c = sp.sequence_lines(x.masked_fill(pad, 1e9), lengths, tmp_path / "c.png")
    assert _digest(a) == _digest(b) == _digest(c)
    d = sp.sequence_lines(x, lengths.clamp(max=10), tmp_path / "d.png")  # lengths do matter
    assert _digest(a) != _digest(d)


def test_bad_series_are_refused_before_drawing(tmp_path):
    x, lengths = _padded()
    with pytest.raises(ValueError, match=r"lengths must have shape \(5,\)"):
        sp.sequence_lines(x, lengths[:3], tmp_path / "e.png")
    with pytest.raises(ValueError, match="lengths must lie in 1..30"):
        sp.sequence_lines(x, lengths * 0, tmp_path / "e.png")
    with pytest.raises(ValueError, match="must match"):
        sp.sequence_lines(x, lengths, tmp_path / "e.png", reconstruction=x[:, :20])
    with pytest.raises(ValueError, match=r"shape \(N, T\) or \(N, T, D\)"):
        sp.sequence_lines(torch.zeros(3), torch.ones(3), tmp_path / "e.png")
    assert not (tmp_path / "e.png").exists()


def test_text_is_drawn_as_a_table(tmp_path):
    cols = {"original": ["house", "water", "people"], "reconstruction": ["horse", "water"],
            "samples": ["thinge", "abover", "grount", "mally"]}
    assert_png(sp.text_table(cols, tmp_path / "t.png", title="words"), 250, 100)
    with pytest.raises(ValueError, match="list of strings"):
        sp.text_table({"original": "house"}, tmp_path / "x.png")
    with pytest.raises(ValueError, match="at least one column"):
        sp.text_table({}, tmp_path / "x.png")


def test_anomaly_timeline_marks_the_region_and_the_top_step(tmp_path):
    t = 1000
    series = torch.sin(torch.arange(t) / 10.0)
    scores = torch.rand(t, generator=torch.Generator().manual_seed(0))
    scores[:20] = float("nan")  # steps no window scored
    scores[510] = 5.0
    path = sp.anomaly_timeline(series, scores, tmp_path / "a.png", region=(500, 520))
    assert_png(path, 600, 250)
    with pytest.raises(ValueError, match="one value per step"):
        sp.anomaly_timeline(series, scores[:-1], tmp_path / "x.png")
    with pytest.raises(ValueError, match="region"):
        sp.anomaly_timeline(series, scores, tmp_path / "x.png", region=(990, 1010))
    with pytest.raises(ValueError, match="every score is NaN"):
        sp.anomaly_timeline(series, torch.full((t,), float("nan")), tmp_path / "x.png")
