"""In-memory training data go to the device once, not once per batch (GPU readiness,
``benchmarks/gpu.py``). On a CPU no copy can be seen, so the test counts the calls that
would make one: every ``Tensor.to`` / ``Tensor.cuda`` during ``pvae.fit``."""

from unittest import mock

import pytest
import torch

import pvae


def _moves_during_fit(x, batch_size, epochs=1):
    calls = []
    to, cuda = torch.Tensor.to, torch.Tensor.cuda

    def counting_to(self, *args, **kwargs):
        calls.append(tuple(self.shape))
        return to(self, *args, **kwargs)

    def counting_cuda(self, *args, **kwargs):  # pragma: no cover - no CUDA in the test
        calls.append(tuple(self.shape))
        return cuda(self, *args, **kwargs)

    vae = pvae.VAE(x.shape[1], 4, hidden_dims=(32,))
    with mock.patch.object(torch.Tensor, "to", counting_to), \
            mock.patch.object(torch.Tensor, "cuda", counting_cuda):
        pvae.fit(vae, x, epochs=epochs, batch_size=batch_size, seed=0, monitor_size=1,
                 device="cpu", progress=False)
    return calls


@pytest.mark.parametrize("epochs", [1, 2])
def test_fit_moves_in_memory_data_once_not_per_batch(epochs):
    x = torch.rand(256, 64).round()
    few, many = _moves_during_fit(x, 128, epochs), _moves_during_fit(x, 8, epochs)
    # 2 against 32 steps an epoch: the same moves (parameters, the data, an epoch's order)
    assert len(few) == len(many)
    assert many.count((256, 64)) == 1  # the whole training set, once
    assert many.count((256,)) == epochs  # each epoch's shuffled order, once
