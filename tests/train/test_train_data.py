"""The training data (``pvae.train.data``): tensors, labels and ``Dataset`` objects."""

import numpy as np
import pytest
import torch
from helpers import small_vae

import pvae


def test_fit_takes_labels_as_a_column_and_refuses_strings(digits):
    x, y = digits.train.x[:40], digits.train.y[:40]
    cvae = pvae.CVAE(64, 3, num_classes=10, hidden_dims=(16,), likelihood="gaussian")
    history = pvae.fit(cvae, (x, y[:, None]), epochs=1, progress=False)
    assert len(history) == 1
    with pytest.raises(TypeError, match="numpy.unique"):
        pvae.fit(cvae, (x.numpy(), np.array(["a"] * 40)), epochs=1, progress=False)
    nan_y = y.float()
    nan_y[0] = float("nan")
    with pytest.raises(ValueError, match="labels hold NaN"):
        pvae.fit(cvae, (x, nan_y), epochs=1, progress=False)
    with pytest.raises(ValueError, match="out of range: found 3000.*must be 0..9"):
        pvae.fit(cvae, (x, (y % 3 + 1) * 1000), epochs=1, progress=False)
    with pytest.raises(ValueError, match="whole numbers.*found 0.4"):
        pvae.fit(cvae, (x, torch.tensor([0.4, 1.6, 2.9, 1.0] * 10)), epochs=1, progress=False)


def test_training_data_joins_tensors_and_datasets(x):
    from pvae.data import ArrayDataset
    from pvae.train import TrainingData

    vae = small_vae()
    in_memory = TrainingData(x, vae, batch_size=100)
    streamed = TrainingData(ArrayDataset(x.numpy()), vae, batch_size=100)
    assert not in_memory.streamed and streamed.streamed
    assert in_memory.num_data == streamed.num_data == 400
    assert in_memory.num_steps(vae) == streamed.num_steps(vae) == 4
    for data in (in_memory, streamed):
        steps = list(data.to("cpu").batches(vae, 0, torch.Generator().manual_seed(0)))
        assert len(steps) == 4
        assert sorted(n for step in steps for _, n in step) == [400] * 4
        assert sum(b[0].shape[0] for step in steps for b, _ in step) == 400
    with pytest.raises(ValueError, match="empty"):
        TrainingData(torch.utils.data.TensorDataset(x[:0]), vae, batch_size=100)
