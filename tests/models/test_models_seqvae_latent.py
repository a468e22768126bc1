"""SequenceVAE: z reaches every decoder step; evaluation memory counts the recurrent
networks' working size."""

from __future__ import annotations

import pytest
import torch

import pvae
from pvae.estimates import CHUNK_ELEMENTS, WORKING_ELEMENTS, _Evaluation


def series_data(n, t, d=1, seed=0):
    g = torch.Generator().manual_seed(seed)
    return torch.randn(n, t, d, generator=g), torch.full((n,), t)


def working(model, data, batch_size=100, num_samples=1000, **kw):
    kw.setdefault("max_working", WORKING_ELEMENTS)
    ev = _Evaluation(model, data, batch_size, CHUNK_ELEMENTS, num_samples, **kw)
    rows = min(ev.batch_size, ev.batch[0].shape[0])
    k = ev.per_point_chunk(rows)
    return ev, rows, k


@pytest.mark.parametrize("rnn", ["gru", "lstm"])
def test_the_evaluation_chunk_shrinks_with_steps_times_hidden_units(rnn):
    chunks = {}
    for t, hidden in ((30, 16), (150, 16), (150, 128)):
        model = pvae.SequenceVAE(x_dim=1, z_dim=2, hidden_dim=hidden, rnn=rnn)
        data = series_data(100, t)
        ev, rows, k = working(model, data)
        per_point, per_sample = model.working_numbers(data[0])
        # what one chunk holds stays within the budget ...
        assert rows * (per_point + k * per_sample) <= WORKING_ELEMENTS
        # ... and the declared size grows with T x hidden units
        assert per_sample >= t * hidden * (3 if rnn == "gru" else 4)
        chunks[t, hidden] = rows * k
    # 5x the steps, then 8x the units: the sequences per chunk fall about as much
    assert chunks[30, 16] >= 4 * chunks[150, 16]
    assert chunks[150, 16] >= 6 * chunks[150, 128]


def test_a_batch_too_big_for_one_sample_each_is_split_into_fewer_rows():
    model = pvae.SequenceVAE(x_dim=1, z_dim=2, hidden_dim=32)
    data = series_data(50, 40)
    per_point, per_sample = model.working_numbers(data[0])
    budget = 7 * (per_point + per_sample)
    ev, rows, k = working(model, data, batch_size=50, num_samples=16, max_working=budget)
    assert rows == 7 and k == 1


def _weights_free_of_z(model):
    """q(z | x) = p(z) = Normal(0, I) and a decoder that ignores z: every importance
    weight is then p(x | z) = p(x), the same for any draw, so chunking must not change
    the estimates at all."""
    dec, enc = model.decoder, model.encoder
    z_dim = model.z_dim
    with torch.no_grad():
        dec.init.weight.zero_()
        dec.init.bias.zero_()
        dec.rnn.weight_ih_l0[:, -z_dim:] = 0.0  # z's columns of every step's input
        enc.out.weight.zero_()
        enc.out.bias[:z_dim] = 0.0
        scale = torch.tensor(1.0 - pvae.nets._MIN_SCALE)
        enc.out.bias[z_dim:] = scale + torch.log(-torch.expm1(-scale))  # softplus^-1
    return model


def test_chunked_evaluation_equals_the_unchunked_one():
    torch.manual_seed(0)
    model = _weights_free_of_z(pvae.SequenceVAE(x_dim=1, z_dim=2, hidden_dim=16)).eval()
    x, _ = series_data(12, 20, seed=1)
    lengths = torch.tensor([20, 3, 11, 7, 20, 1, 15, 9, 2, 20, 18, 5])
    per_point, per_sample = model.working_numbers(x)
    small = 3 * per_point + 6 * per_sample
    # batches of 12 become 4 rows of 1 sample; batches of 3, 3 rows of 2 samples
    for batch_size, chunks in ((12, (4, 1)), (3, (3, 2))):
        assert working(model, (x, lengths), batch_size=batch_size, num_samples=64,
                       max_working=small)[1:] == chunks
    out = {}
    for name, budget, batch_size in (("one chunk", 2**62, 12), ("chunked", small, 12),
                                     ("chunked 3", small, 3)):
        kw = dict(num_samples=64, max_working=budget, max_elements=2**62, batch_size=batch_size)
        out[name] = (pvae.evaluate.log_likelihood(model, (x, lengths), **kw),
                     pvae.evaluate.elbo(model, (x, lengths), **kw))
    for name in ("chunked", "chunked 3"):
        for a, b in zip(out["one chunk"], out[name]):
            assert a.shape == b.shape == (12,)
            torch.testing.assert_close(a, b, rtol=0, atol=1e-4)
    # and both are log p(x) itself, as the construction makes every weight
    torch.testing.assert_close(out["one chunk"][0], out["one chunk"][1], rtol=0, atol=1e-4)


def test_models_that_declare_no_working_size_chunk_as_before():
    vae = pvae.VAE(64, 4, hidden_dims=(32,))
    x = torch.rand(100, 64).round()
    ev, rows, k = working(vae, x)
    assert rows == 100 and k == min(1000, CHUNK_ELEMENTS // (100 * 64))


def test_parts_bounds_the_rows_that_hold_all_their_samples_at_once():
    model = pvae.SequenceVAE(x_dim=1, z_dim=2, hidden_dim=128)
    x, lengths = series_data(40, 150)
    per_point, per_sample = model.working_numbers(x)
    ev = _Evaluation(model, (x, lengths), 1000, 2**62, 50, max_working=WORKING_ELEMENTS,
                     together=50)
    assert ev.batch_size * (per_point + 50 * per_sample) <= WORKING_ELEMENTS < 1000 * per_sample
    out = pvae.evaluate.parts(model, (x[:4], lengths[:4]), num_samples=2)
    assert out["elbo"].shape == (4,)


def _decoder_outputs(model, x, z):
    inputs = model.dec_inputs.teacher(x)
    return model.decoder(inputs, z)


def test_z_reaches_every_step_not_only_the_initial_state():
    torch.manual_seed(0)
    for kw in (dict(z_every_step=True), dict(decoder_history="previous")):
        model = pvae.SequenceVAE(x_dim=1, z_dim=2, hidden_dim=8, **kw)
        with torch.no_grad():
            model.decoder.init.weight.zero_()  # no path from z through the initial state
        x, _ = series_data(3, 12)
        z = torch.randn(3, 2)
        a, b = _decoder_outputs(model, x, z), _decoder_outputs(model, x, z + 1.0)
        assert (a - b)[:, -1].abs().min() > 1e-4, kw  # the last step still sees z


def test_the_previous_step_decoder_reads_only_the_previous_step():
    torch.manual_seed(0)
    model = pvae.SequenceVAE(x_dim=1, z_dim=2, hidden_dim=8, decoder_history="previous")
    x, _ = series_data(2, 10)
    z = torch.randn(2, 2)
    y = x.clone()
    y[:, 3] += 5.0  # x_3 informs the prediction of x_4 only
    a, b = _decoder_outputs(model, x, z), _decoder_outputs(model, y, z)
    changed = (a - b).abs().amax((0, 2)) > 1e-6
    assert changed.tolist() == [t == 4 for t in range(10)]
    full = pvae.SequenceVAE(x_dim=1, z_dim=2, hidden_dim=8)
    a, b = _decoder_outputs(full, x, z), _decoder_outputs(full, y, z)
    assert ((a - b).abs().amax((0, 2)) > 1e-6).tolist() == [t >= 4 for t in range(10)]


@pytest.mark.parametrize("kw, match", [(dict(z_every_step=1), "z_every_step"),
                                       (dict(decoder_history="last"), "decoder_history")])
def test_bad_decoder_options_are_refused(kw, match):
    with pytest.raises(ValueError, match=match):
        pvae.SequenceVAE(x_dim=1, z_dim=2, **kw)


def test_decoder_options_survive_save_and_load(tmp_path):
    model = pvae.SequenceVAE(x_dim=1, z_dim=2, hidden_dim=8, z_every_step=False,
                             decoder_history="previous")
    model.save(tmp_path / "m.pt")
    again = pvae.load(tmp_path / "m.pt")
    assert again.hparams == model.hparams
    assert (again.decoder.history, again.decoder.z_every_step) == ("previous", True)


def test_active_units_draws_within_the_working_budget(monkeypatch):
    """active_units takes all its samples of a batch at once: its batches shrink so that
    rows x samples x a recurrent model's declared working numbers stay in the budget."""
    import pvae.evaluate as ev
    from pvae.estimates import working_numbers

    torch.manual_seed(0)
    model = pvae.SequenceVAE(x_dim=1, z_dim=2, hidden_dim=16)
    x = torch.randn(40, 30, 1)
    lengths = torch.full((40,), 30)
    per_point, per_sample = working_numbers(model, x)
    budget = 20 * (per_point + 10 * per_sample)  # room for 20 rows of 10 samples
    monkeypatch.setattr(ev, "WORKING_ELEMENTS", budget)
    seen, real = [], ev.log_weights

    def spy(m, g, batch, k, **kw):
        seen.append((batch[0].shape[0], k))
        return real(m, g, batch, k, **kw)

    monkeypatch.setattr(ev, "log_weights", spy)
    out = ev.active_units(model, (x, lengths), num_samples=10)
    assert out["z"]["dims"] == 2
    assert sum(b for b, _ in seen) == 40 and max(b for b, _ in seen) <= 20
