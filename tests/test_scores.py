"""Pure scores (``pvae.scores``): accuracy, ROC AUC."""

import pytest
import torch
from helpers import E

import pvae


def test_roc_auc_refuses_labels_it_cannot_read():
    scores = torch.tensor([0.1, 0.4, 0.35, 0.8])
    assert E.roc_auc(scores, torch.tensor([0, 0, 1, 1])) == pytest.approx(0.75)
    assert E.roc_auc(scores.numpy(), [False, False, True, True]) == pytest.approx(0.75)
    with pytest.raises(ValueError, match="3 labels for 4 scores"):
        E.roc_auc(scores, torch.tensor([0, 1, 1]))
    with pytest.raises(ValueError, match=r"0 \(normal\) or 1 \(anomaly\), found the values "
                                         r"\[1, 2\]"):
        E.roc_auc(scores, torch.tensor([1, 1, 2, 2]))
    with pytest.raises(ValueError, match="NaN"):
        E.roc_auc(torch.tensor([0.1, float("nan"), 0.3, 0.2]), torch.tensor([0, 0, 1, 1]))
    assert E.calibrate_threshold([1.0, 2.0, 3.0, 4.0, 5.0], 0.25) == pytest.approx(4.0)
    with pytest.raises(ValueError, match="NaN"):
        E.calibrate_threshold(torch.tensor([0.1, float("nan")]))


def test_accuracy_counts_labelled_points_only():
    # 27 points, 6 unlabelled; of the 21 labelled, 6 are right: 6/21 = 0.286, where counting
    # the unlabelled as errors would give 6/27 = 0.222
    y = torch.tensor([0] * 21 + [-1] * 6)
    predicted = torch.tensor([0] * 6 + [1] * 15 + [0] * 6)
    probs = torch.nn.functional.one_hot(predicted, 3).float() * 0.8 + 0.1
    for p in (probs, predicted):
        result = pvae.evaluate.accuracy(p, y)
        assert result == {"accuracy": pytest.approx(6 / 21), "num_labelled": 21}
        assert round(result["accuracy"], 3) == 0.286
    assert pvae.evaluate.accuracy(probs[21:], y[21:]) == {"accuracy": None, "num_labelled": 0}
    assert pvae.evaluate.accuracy(probs[:0], y[:0]) == {"accuracy": None, "num_labelled": 0}
    with pytest.raises(ValueError, match="shape"):
        pvae.evaluate.accuracy(probs, y[:5])
    with pytest.raises(ValueError, match="-1 .unlabelled.; found -2"):
        pvae.evaluate.accuracy(probs[:2], torch.tensor([0, -2]))
    with pytest.raises(ValueError, match="whole numbers"):
        pvae.evaluate.accuracy(probs[:2], torch.tensor([0.0, 0.5]))


def test_roc_auc_ties_and_exact_values():
    s = torch.tensor([0.1, 0.4, 0.35, 0.8])
    y = torch.tensor([0, 0, 1, 1])
    assert pvae.evaluate.roc_auc(s, y) == pytest.approx(0.75)
    assert pvae.evaluate.roc_auc(torch.ones(4), y) == pytest.approx(0.5)


def test_bits_per_step_divides_total_bits_by_total_steps():
    import math

    nats = torch.tensor([2.0, 6.0]) * math.log(2)  # 2 and 6 bits
    lengths = torch.tensor([1, 3])
    assert pvae.evaluate.bits_per_step(nats, lengths) == pytest.approx(8 / 4)
    # a token model's end-of-sequence event counts as one more step per sequence
    assert pvae.evaluate.bits_per_step(nats, lengths, end_event=True) == pytest.approx(8 / 6)
    with pytest.raises(ValueError, match="2 values for 3 lengths"):
        pvae.evaluate.bits_per_step(nats, torch.tensor([1, 2, 3]))
    with pytest.raises(ValueError, match="at least 1"):
        pvae.evaluate.bits_per_step(nats, torch.tensor([0, 2]))
