"""The pure KL-weight and learning-rate schedules (``pvae.train.schedules``)."""

import pytest
from helpers import small_vae

import pvae


def test_schedules_are_pure_and_match_the_history(x):
    from pvae.train import kl_weight, learning_rate

    assert [learning_rate(e, 1.0, (2, 4), 0.5) for e in range(6)] == [1, 1, 0.5, 0.5, 0.25, 0.25]
    assert kl_weight(0, 0, 10, 0) == 1.0
    assert kl_weight(0, 0, 4, 2) == pytest.approx(1 / 8)
    assert kl_weight(1, 3, 4, 2) == 1.0 and kl_weight(5, 0, 4, 2) == 1.0
    h = pvae.fit(small_vae(), x, epochs=3, batch_size=100, kl_warmup=2.5, lr=1e-3,
                 lr_steps=(2,), seed=0)
    assert h["kl_weight"] == [kl_weight(e, 3, 4, 2.5) for e in range(3)]
    assert h["lr"] == [learning_rate(e, 1e-3, (2,)) for e in range(3)]
