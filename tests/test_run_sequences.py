"""Sequence data in runs (``pvae.run_sequences``): the model's settings from the data,
refusals of mismatched model and data, anomaly series as windows."""

import pytest

from pvae.config import ConfigError, from_dict
from pvae.run_sequences import check_model_for_data, seqvae_kwargs


def _model(**kw):
    return from_dict({"model": {"type": "seqvae", **kw}}).model


def test_text_takes_its_vocabulary_and_length_from_the_data():
    kw = seqvae_kwargs(_model(likelihood="categorical", embedding_dim=16), (21,), 26)
    assert kw["vocab_size"] == 26 and kw["max_len"] == 21 and kw["embedding_dim"] == 16
    assert "x_dim" not in kw and "likelihood" not in kw
    kw = seqvae_kwargs(_model(likelihood="categorical", max_len=40), (21,), 26)
    assert kw["max_len"] == 40


def test_series_take_their_step_size_and_likelihood():
    kw = seqvae_kwargs(_model(likelihood="laplace", hidden_dim=32, rnn="lstm"), (150, 3), None)
    assert kw["x_dim"] == 3 and kw["likelihood"] == "laplace" and kw["max_len"] == 150
    assert kw["hidden_dim"] == 32 and kw["rnn"] == "lstm" and "vocab_size" not in kw


@pytest.mark.parametrize("model,shape,vocab,message", [
    ({"likelihood": "gaussian"}, (21,), 26, "'model.likelihood' must be categorical for text"),
    ({"likelihood": "categorical"}, (21,), None, "needs the vocabulary's size"),
    ({"likelihood": "gaussian", "embedding_dim": 8}, (150, 1), None,
     "'model.embedding_dim' is for text"),
    ({"likelihood": "gaussian"}, (1, 28, 28), None, r"shape \(T,\) or \(T, D\)"),
])
def test_settings_that_do_not_fit_the_data_are_config_errors(model, shape, vocab, message):
    with pytest.raises(ConfigError, match=message):
        seqvae_kwargs(_model(**model), shape, vocab)


def test_sequence_data_and_the_sequence_model_go_together():
    seq = from_dict({"model": {"type": "seqvae"}, "data": {"name": "words"}})
    check_model_for_data(seq, "words")
    with pytest.raises(ConfigError, match="data.name words is sequence data: set model.type: "
                                          "seqvae"):
        check_model_for_data(from_dict({"data": {"name": "words"}}), "words")
    with pytest.raises(ConfigError, match="model.type seqvae takes sequence data"):
        check_model_for_data(from_dict({"model": {"type": "seqvae"}}), "digits")


def test_a_text_run_gives_the_vocabularys_special_tokens_probability_zero():
    import torch

    import pvae
    from pvae.runs import model_for

    vocab = pvae.data.Vocabulary.build(["ab", "ba", "abc"], level="char")
    x, lengths = vocab.encode(["ab", "ba", "abc"])
    split = pvae.data.Sequences(x, lengths)
    data = pvae.data.Data(name="tiny", train=split, val=None, test=split, x_shape=(3,),
                          vocab=vocab)
    cfg = from_dict({"model": {"type": "seqvae", "likelihood": "categorical", "z_dim": 2,
                               "hidden_dim": 8}})
    model = model_for(cfg, data)
    assert set(model.excluded_ids) == set(vocab.excluded_ids)
    xs, ls = model.sample(20, max_len=3)
    steps = torch.arange(xs.shape[1]) < ls[:, None]
    assert not torch.isin(xs[steps], torch.tensor(vocab.excluded_ids)).any()
