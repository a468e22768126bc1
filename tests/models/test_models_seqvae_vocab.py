"""SequenceVAE with a pvae.data.Vocabulary: ids the text never holds get probability zero.

A Vocabulary reserves ids 0..3 for <pad>, <unk>, <bos>, <eos>; encoded text holds
<unk> at most (padding lies beyond the lengths). A model built with
``excluded_ids=vocab.excluded_ids`` never scores or samples <pad>, <bos>, <eos>
inside a sequence, so decoded samples are words, not 'ine<eos>ett'.
"""

from __future__ import annotations

import pytest
import torch
from pyro import poutine
from pyro.infer import Trace_ELBO

import pvae
from pvae.data import Vocabulary

WORDS = ["the", "cat", "sat", "on", "a", "mat", "tea", "at", "ant", "tan"]


def _model(vocab, **kw):
    return pvae.SequenceVAE(vocab_size=len(vocab), z_dim=2, hidden_dim=8,
                            excluded_ids=vocab.excluded_ids, **kw)


def _favour(model, ids):
    """Make the decoder put (almost) all its mass on ``ids`` wherever it may."""
    with torch.no_grad():
        model.decoder.out.weight[:] = 0.0
        model.decoder.out.bias[:] = -50.0
        model.decoder.out.bias[list(ids)] = 50.0


def test_the_vocabulary_names_the_ids_encoded_text_never_holds():
    v = Vocabulary.build(WORDS)
    assert v.excluded_ids == (v.pad_id, v.bos_id, v.eos_id) == (0, 2, 3)
    x, lengths = v.encode(WORDS)
    real = x[torch.arange(x.shape[1]) < lengths[:, None]]
    assert not any(int(i) in v.excluded_ids for i in real)


def test_samples_never_hold_excluded_ids_even_where_the_decoder_favours_them():
    v = Vocabulary.build(WORDS)
    torch.manual_seed(0)
    model = _model(v)
    _favour(model, v.excluded_ids)  # the unconstrained decoder would emit only these
    for temperature in (1.0, 0.0):
        x, lengths = model.sample(200, max_len=6, temperature=temperature)
        real = x[torch.arange(x.shape[1]) < lengths[:, None]]
        assert not any(int(i) in v.excluded_ids for i in real.unique())
        assert all("<pad>" not in t and "<eos>" not in t and "<bos>" not in t
                   for t in v.decode(x, lengths))


def test_log_prob_is_normalised_over_the_allowed_ids_and_the_end_event():
    v = Vocabulary.build(WORDS)
    torch.manual_seed(0)
    model = _model(v).eval()
    x, lengths = v.encode(["cat", "a"])
    z = torch.randn(2, 2)
    trace = poutine.trace(poutine.condition(model.model, {"z": z})).get_trace(x, lengths)
    site = trace.nodes["x"]
    lp = site["fn"].log_prob(site["value"])
    with torch.no_grad():
        out = model.decoder(model.dec_inputs.teacher(x), z)  # (2, T + 1, V + 1)
        allowed = torch.ones(len(v) + 1, dtype=torch.bool)
        allowed[list(v.excluded_ids)] = False
        logp = torch.full_like(out, float("-inf"))
        logp[..., allowed] = torch.log_softmax(out[..., allowed], -1)
        first = torch.log_softmax(out[:, 0, allowed[:-1].nonzero().flatten()], -1)
        expect = []
        for i, n in enumerate(lengths.tolist()):
            steps = [logp[i, t, x[i, t]] for t in range(1, n)]
            first_id = allowed[:-1].nonzero().flatten().tolist().index(int(x[i, 0]))
            expect.append(first[i, first_id] + sum(steps) + logp[i, n, len(v)])
    torch.testing.assert_close(lp, torch.stack(expect))


def test_padding_with_an_excluded_id_keeps_the_loss_and_gradient_finite():
    v = Vocabulary.build(WORDS)
    torch.manual_seed(0)
    model = _model(v, word_dropout=0.3)
    x, lengths = v.encode(WORDS)  # padded with <pad>, an excluded id
    loss = Trace_ELBO().differentiable_loss(model.model, model.guide, x, lengths)
    loss.backward()
    assert torch.isfinite(loss)
    assert all(torch.isfinite(p.grad).all() for p in model.parameters() if p.grad is not None)


def test_data_holding_an_excluded_id_is_refused_before_any_work():
    v = Vocabulary.build(WORDS)
    model = _model(v)
    x, lengths = v.encode(WORDS)
    x[1, 0] = v.eos_id
    before = [p.clone() for p in model.parameters()]
    with pytest.raises(ValueError, match=r"token id 3 is excluded.*excluded_ids=\(0, 2, 3\)"):
        pvae.fit(model, (x, lengths), epochs=1, progress=False, logger=None)
    with pytest.raises(ValueError, match="excluded"):
        pvae.evaluate.elbo(model, (x, lengths))
    assert all(torch.equal(p, b) for p, b in zip(model.parameters(), before))


@pytest.mark.parametrize("kw,match", [
    (dict(vocab_size=5, excluded_ids=(5,)), r"excluded_ids .* 0\.\.4"),
    (dict(vocab_size=5, excluded_ids=(-1,)), r"excluded_ids .* 0\.\.4"),
    (dict(vocab_size=5, excluded_ids=(1, 1)), "twice"),
    (dict(vocab_size=3, excluded_ids=(0, 1, 2)), "at least one"),
    (dict(vocab_size=5, excluded_ids=(1.5,)), "whole"),
    (dict(x_dim=2, excluded_ids=(0,)), "token"),
])
def test_bad_excluded_ids_are_refused(kw, match):
    with pytest.raises(ValueError, match=match):
        pvae.SequenceVAE(z_dim=2, **kw)


def test_excluded_ids_survive_save_and_load(tmp_path):
    v = Vocabulary.build(WORDS)
    model = _model(v)
    model.save(tmp_path / "m.pt")
    again = pvae.load(tmp_path / "m.pt")
    assert again.excluded_ids == v.excluded_ids == tuple(again.hparams["excluded_ids"])
    _favour(again, v.excluded_ids)
    x, lengths = again.sample(50, max_len=5)
    assert not any(int(i) in v.excluded_ids
                   for i in x[torch.arange(x.shape[1]) < lengths[:, None]])


def test_decode_without_lengths_ends_a_row_at_its_first_pad_or_eos():
    v = Vocabulary.build(WORDS)
    x, lengths = v.encode(["cat", "a", "tea"])
    assert v.decode(x) == ["cat", "a", "tea"]  # padded with <pad>: no "<pad>" in the texts
    row = torch.tensor([[v.stoi["c"], v.stoi["a"], v.eos_id, v.stoi["t"]]])
    assert v.decode(row) == ["ca"]
    assert v.decode(row, torch.tensor([4])) == ["ca<eos>t"]  # given lengths are read as given
