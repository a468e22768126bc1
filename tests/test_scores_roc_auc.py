"""pvae.scores.roc_auc: scikit-learn's roc_auc_score behind pvae's own input checks."""

import numpy as np
import pytest
import torch
from sklearn.metrics import roc_auc_score

from pvae import evaluate, scores


def test_roc_auc_is_the_same_function_in_evaluate_and_scores():
    assert evaluate.roc_auc is scores.roc_auc


def test_ties_count_half_as_computed_by_hand():
    # Pairs (anomaly, normal): (0.5, 0.1) right, (0.5, 0.5) a tie, (0.9, 0.1) and (0.9, 0.5)
    # right: (1 + 0.5 + 1 + 1) / 4 = 0.875. The rank-sum formula pvae used before and
    # scikit-learn's trapezoids both give a tie half credit, so they agree here.
    s = torch.tensor([0.1, 0.5, 0.5, 0.9])
    y = torch.tensor([0, 1, 0, 1])
    assert scores.roc_auc(s, y) == pytest.approx(0.875, abs=1e-12)
    assert scores.roc_auc(torch.ones(4), y) == pytest.approx(0.5, abs=1e-12)
    assert scores.roc_auc([0.9, 0.1, 0.9, 0.1], [1, 0, 0, 1]) == pytest.approx(0.5, abs=1e-12)


def test_matches_scikit_learn_on_many_ties():
    rng = np.random.default_rng(0)
    s = rng.integers(0, 5, size=300).astype(float)  # five values: ties everywhere
    y = rng.integers(0, 2, size=300)
    s[y == 1] += 0.7  # anomalies score a little higher
    got = scores.roc_auc(torch.as_tensor(s), torch.as_tensor(y))
    assert got == pytest.approx(roc_auc_score(y, s), abs=1e-12)
    assert 0.5 < got < 1
    # the same by brute force over every (anomaly, normal) pair
    d = s[y == 1][:, None] - s[y == 0][None, :]
    assert got == pytest.approx(((d > 0) + 0.5 * (d == 0)).mean(), abs=1e-12)


def test_infinite_scores_keep_their_place():
    # scikit-learn refuses infinite scores; a point of zero likelihood is the most anomalous
    s = torch.tensor([0.1, float("inf"), 0.3, 0.2, -float("inf")])
    y = torch.tensor([0, 1, 0, 1, 0])
    assert scores.roc_auc(s, y) == pytest.approx(roc_auc_score(y, [0.1, 9.0, 0.3, 0.2, -9.0]))


def test_labels_other_than_0_1_are_refused_though_scikit_learn_takes_them():
    s = torch.tensor([0.1, 0.4, 0.35, 0.8])
    assert roc_auc_score([-1, -1, 1, 1], s.numpy()) == pytest.approx(0.75)  # it would guess
    with pytest.raises(ValueError, match=r"labels must be 0 \(normal\) or 1 \(anomaly\)"):
        scores.roc_auc(s, torch.tensor([-1, -1, 1, 1]))
    with pytest.raises(ValueError, match="2 labels for 4 scores"):
        scores.roc_auc(s, [0, 1])
    with pytest.raises(ValueError, match=r"1 score\(s\) are NaN"):
        scores.roc_auc(torch.tensor([0.1, float("nan"), 0.3, 0.2]), [0, 0, 1, 1])
    with pytest.raises(ValueError, match="both anomalies and normal points"):
        scores.roc_auc(s, [True] * 4)
    assert scores.roc_auc(s.numpy(), [False, False, True, True]) == pytest.approx(0.75)
