"""Sequence data (``pvae.data.Sequences``): the container's checks, padding, users' files
(.npz / .npy / long .csv) and ``load("sequences")``; the text ``Vocabulary``."""

import json

import numpy as np
import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

import pvae
from pvae.data import Sequences, Vocabulary


# -- the container ----------------------------------------------------------------------
def test_sequences_dtypes_and_mask():
    s = Sequences(np.zeros((3, 5, 2), np.float64), [5, 1, 3], [0, 1, 0])
    assert s.x.dtype == torch.float32 and s.lengths.dtype == torch.int64
    assert s.y.dtype == torch.int64 and len(s) == 3 and s.max_len == 5 and not s.is_tokens
    assert s.mask.tolist() == [[True] * 5, [True] + [False] * 4, [True] * 3 + [False] * 2]
    tokens = Sequences(np.array([[4, 5, 0], [6, 0, 0]], np.int32), np.array([2, 1]))
    assert tokens.x.dtype == torch.int64 and tokens.is_tokens


def test_nan_in_padding_is_allowed_but_not_in_real_steps():
    x = np.full((2, 4, 1), np.nan, np.float32)
    x[0, :2], x[1, :4] = 1.0, 2.0
    Sequences(x, [2, 4])  # NaN beyond length 2: padding, allowed
    x[1, 3] = np.inf
    with pytest.raises(ValueError, match=r"sequence 1, step 3 < its length 4"):
        Sequences(x, [2, 4])
    with pytest.raises(ValueError, match="inside the real steps"):
        Sequences(x[:1], [3])  # step 2 of sequence 0 is NaN and now real


@pytest.mark.parametrize("lengths, match", [
    ([0, 3], r"sequence 0 has length 0, outside 1..3"),
    ([3, 4], r"sequence 1 has length 4, outside 1..3"),
    ([3], r"shape \(1,\); give one length per sequence, shape \(2,\)"),
    ([1.5, 2], "whole numbers"),
])
def test_bad_lengths_are_refused(lengths, match):
    with pytest.raises(ValueError, match=match):
        Sequences(torch.zeros(2, 3, 1), torch.tensor(lengths))


def test_bad_shapes_are_refused():
    with pytest.raises(ValueError, match=r"x\[\.\.\., None\]"):
        Sequences(torch.zeros(2, 3), [3, 3])  # float (N, T): a series without its step axis
    with pytest.raises(ValueError, match=r"expected \(N, T, D\)"):
        Sequences(torch.zeros(2, 3, 1, 1), [3, 3])
    with pytest.raises(ValueError, match="negative token id"):
        Sequences(torch.tensor([[1, -1]]), [2])
    Sequences(torch.tensor([[1, -1]]), [1])  # a negative id in the padding is padding
    with pytest.raises(ValueError, match="labels y have shape"):
        Sequences(torch.zeros(2, 3, 1), [3, 3], y=[0, 1, 2])


def test_from_list_pads_variable_lengths():
    s = Sequences.from_list([np.ones((2, 3)), 2 * np.ones((4, 3))], y=[1, 0])
    assert s.x.shape == (2, 4, 3) and s.lengths.tolist() == [2, 4]
    assert (s.x[0, :2] == 1).all() and (s.x[0, 2:] == 0).all() and (s.x[1] == 2).all()
    assert Sequences.from_list([[1, 2, 3], [4]], max_len=5).x.tolist() == [[1, 2, 3, 0, 0],
                                                                         [4, 0, 0, 0, 0]]
    with pytest.raises(ValueError, match="more than max_len=2"):
        Sequences.from_list([[1, 2, 3]], max_len=2)
    with pytest.raises(ValueError, match="sequence 1 is empty"):
        Sequences.from_list([[1], []])
    with pytest.raises(ValueError, match="different shapes"):
        Sequences.from_list([np.ones((2, 3)), np.ones((2, 2))])


# -- users' files ------------------------------------------------------------------------
def _ragged(n=20, d=2, seed=0):
    rng = np.random.default_rng(seed)
    lengths = rng.integers(1, 9, size=n)
    x = np.full((n, 8, d), np.nan, np.float32)  # NaN padding, as users often write it
    for i, n_i in enumerate(lengths):
        x[i, :n_i] = rng.normal(size=(n_i, d))
    return x, lengths


def test_npz_with_lengths_and_nan_padding(tmp_path):
    x, lengths = _ragged()
    y = np.arange(20) % 3
    np.savez(tmp_path / "s.npz", x=x, lengths=lengths, y=y)
    s = pvae.data.load_sequences(tmp_path / "s.npz")
    assert s.x.shape == (20, 8, 2) and s.lengths.tolist() == lengths.tolist()
    assert s.y.tolist() == y.tolist()
    assert torch.equal(s.x[s.mask], torch.from_numpy(x)[s.mask])  # real steps kept as they are
    assert (s.x[~s.mask] == 0).all()  # padding set to 0 on loading: no NaN travels on
    d = pvae.data.load("sequences", path=tmp_path / "s.npz", val_fraction=0.2, test_fraction=0.2)
    assert (len(d.train), len(d.val), len(d.test)) == (12, 4, 4)
    assert d.kind == "series" and d.x_shape == (8, 2) and d.step_dim == 2 and d.num_classes == 3
    assert isinstance(d.train, Sequences) and d.max_len == 8 and d.vocab is None
    again = pvae.data.load("sequences", path=tmp_path / "s.npz", val_fraction=0.2,
                           test_fraction=0.2)
    assert torch.equal(again.test.x, d.test.x)  # the split is seeded


def test_npz_errors_name_the_file_and_fault(tmp_path):
    x, lengths = _ragged()
    bad = lengths.copy()
    bad[3] = 0
    np.savez(tmp_path / "zero.npz", x=x, lengths=bad)
    with pytest.raises(ValueError, match=r"zero\.npz.*sequence 3 has length 0"):
        pvae.data.load_sequences(tmp_path / "zero.npz")
    bad[3] = 9
    np.savez(tmp_path / "long.npz", x=x, lengths=bad)
    with pytest.raises(ValueError, match=r"sequence 3 has length 9, outside 1..8"):
        pvae.data.load_sequences(tmp_path / "long.npz")
    np.savez(tmp_path / "nolen.npz", x=x)  # no lengths: all 8 steps real, and NaN in them
    with pytest.raises(ValueError, match="NaN or infinite"):
        pvae.data.load_sequences(tmp_path / "nolen.npz")
    with pytest.raises(FileNotFoundError):
        pvae.data.load_sequences(tmp_path / "missing.npz")
    with pytest.raises(ValueError, match="needs path="):
        pvae.data.load("sequences")


def test_npy_with_lengths_file_and_tokens(tmp_path):
    ids = np.array([[5, 6, 7], [8, 9, 0]], np.int64)
    np.save(tmp_path / "ids.npy", ids)
    np.save(tmp_path / "len.npy", np.array([3, 2]))
    s = pvae.data.load_sequences(tmp_path / "ids.npy", lengths=tmp_path / "len.npy")
    assert s.is_tokens and s.lengths.tolist() == [3, 2] and s.x.tolist() == ids.tolist()
    full = pvae.data.load_sequences(tmp_path / "ids.npy")
    assert full.lengths.tolist() == [3, 3]
    np.savez(tmp_path / "ids.npz", x=ids, lengths=[3, 2])
    d = pvae.data.load("sequences", path=tmp_path / "ids.npz", val_fraction=0, test_fraction=0.5)
    assert d.kind == "tokens" and d.x_shape == (3,) and d.vocab_size == 10 and d.step_dim is None


def test_long_csv(tmp_path):
    text = ("id,t,a,b,label\n"
            "s2,1,5,50,1\ns1,0,1,10,0\ns1,2,3,30,0\ns1,1,2,20,0\ns2,0,4,40,1\n"
            "s3,7,6,60,0\n")
    (tmp_path / "long.csv").write_text(text)
    s = pvae.data.load_sequences(tmp_path / "long.csv")
    # sequences in the order of their first row; steps sorted; the label column kept apart
    assert s.lengths.tolist() == [2, 3, 1] and s.y.tolist() == [1, 0, 0]
    assert s.x[:, :, 0].tolist() == [[4, 5, 0], [1, 2, 3], [6, 0, 0]]
    assert s.x[1, :, 1].tolist() == [10, 20, 30]
    (tmp_path / "plain.csv").write_text("7,0,1.5\n7,1,2.5\n")  # no header, one value column
    p = pvae.data.load_sequences(tmp_path / "plain.csv")
    assert p.x.shape == (1, 2, 1) and p.y is None


@pytest.mark.parametrize("body, match", [
    ("id,t,v\na,0,1\na,2,3\n", "sequence 'a' misses time step 1"),
    ("id,t,v\na,0,1\na,0,3\n", "sequence 'a' has step 0 twice"),
    ("id,t,v\na,0,1\na,1,nan\n", "NaN or infinite"),
    ("id,t,v\na,0.5,1\n", "not a whole number"),
    ("id,t,v,y\na,0,1,0\na,1,1,1\n", "two labels"),
    ("id,t,v\na,0,1\na,1\n", "line 3 has 2 columns"),
    ("id,t\na,0\n", "at least one value column"),
])
def test_long_csv_errors(tmp_path, body, match):
    (tmp_path / "bad.csv").write_text(body)
    with pytest.raises(ValueError, match=match):
        pvae.data.load_sequences(tmp_path / "bad.csv")


def test_sequence_sets_refuse_image_options(tmp_path):
    np.savez(tmp_path / "s.npz", x=np.zeros((10, 4, 1)), lengths=np.full(10, 4))
    with pytest.raises(ValueError, match="binarize and flatten are for images"):
        pvae.data.load("sequences", path=tmp_path / "s.npz", flatten=True)


def test_max_train_and_num_labelled_on_sequences(tmp_path):
    x, lengths = _ragged(40)
    np.savez(tmp_path / "s.npz", x=x, lengths=lengths, y=np.arange(40) % 2)
    d = pvae.data.load("sequences", path=tmp_path / "s.npz", max_train=10, num_labelled=4)
    assert isinstance(d.train, Sequences) and len(d.train) == 10
    assert (d.train.y >= 0).sum() == 4


# -- vocabulary -------------------------------------------------------------------------
def test_char_vocabulary_round_trip():
    texts = ["hello", "world", "a", "héllo wörld"]
    v = Vocabulary.build(texts, "char")
    assert v.itos[:4] == ["<pad>", "<unk>", "<bos>", "<eos>"]
    assert v.itos[4] == "l"  # the most frequent character first
    x, lengths = v.encode(texts)
    assert x.dtype == torch.int64 and x.shape == (4, 11) and lengths.tolist() == [5, 5, 1, 11]
    assert (x[2, 1:] == v.pad_id).all()  # padded with <pad>; no <bos>/<eos> written
    assert not ((x == v.bos_id) | (x == v.eos_id)).any()
    assert v.decode(x, lengths) == texts


@settings(max_examples=60, deadline=None)
@given(st.lists(st.text(alphabet=st.characters(blacklist_categories=("Cs",)), min_size=1,
                        max_size=12), min_size=1, max_size=8))
def test_char_round_trip_of_any_text(texts):
    v = Vocabulary.build(texts, "char")
    assert v.decode(*v.encode(texts)) == texts


@settings(max_examples=60, deadline=None)
@given(st.lists(st.lists(st.sampled_from(["a", "bb", "the", "x1", "é"]), min_size=1, max_size=6),
                min_size=1, max_size=8))
def test_word_round_trip_of_any_sentence(sentences):
    texts = [" ".join(words) for words in sentences]
    v = Vocabulary.build(texts, "word")
    x, lengths = v.encode(texts)
    assert lengths.tolist() == [len(w) for w in sentences] and v.decode(x, lengths) == texts


def test_word_vocabulary_unknown_and_round_trip():
    v = Vocabulary.build(["the cat sat", "the dog"], "word")
    x, lengths = v.encode(["the cat", "a  dog  sat"], max_len=4)
    assert x.shape == (2, 4) and lengths.tolist() == [2, 3]
    assert x[1, 0].item() == v.unk_id
    assert v.decode(x, lengths) == ["the cat", "<unk> dog sat"]
    assert v.decode(*v.encode(["the dog sat"])) == ["the dog sat"]


def test_vocabulary_errors():
    v = Vocabulary(["a", "b"])
    with pytest.raises(ValueError, match="text 1 has no tokens"):
        v.encode(["ab", ""])
    with pytest.raises(ValueError, match="more than max_len=1"):
        v.encode(["ab"], max_len=1)
    with pytest.raises(TypeError, match="list of texts"):
        v.encode("ab")
    with pytest.raises(ValueError, match="outside the vocabulary"):
        v.decode(torch.tensor([[7]]), torch.tensor([1]))
    with pytest.raises(ValueError, match="appears twice"):
        Vocabulary(["a", "a"])
    with pytest.raises(ValueError, match="other than"):
        Vocabulary(["<unk>"])
    with pytest.raises(ValueError, match="single characters"):
        Vocabulary(["ab"], "char")


def test_vocabulary_saves_as_plain_json(tmp_path):
    v = Vocabulary.build(["zebra", "apple"], "char")
    state = json.loads(json.dumps(v.to_dict()))  # plain JSON, nothing else
    assert Vocabulary.from_dict(state) == v
    v.save(tmp_path / "vocab.json")
    w = Vocabulary.load(tmp_path / "vocab.json")
    assert w == v and w.encode(["zebra"])[0].tolist() == v.encode(["zebra"])[0].tolist()
    with pytest.raises(ValueError, match="'level' and 'tokens'"):
        Vocabulary.from_dict({"tokens": ["a"]})


def test_images_unchanged():
    d = pvae.data.load("digits", flatten=True, binarize="static")
    assert d.kind == "image" and d.x_shape == (64,) and d.vocab is None and d.max_len is None
    assert d.step_dim is None and d.vocab_size is None and isinstance(d.train, pvae.data.Split)


def test_every_name_is_listed_once():
    import typing

    assert sorted(typing.get_args(pvae.data.DataName)) == sorted(pvae.data.DATASETS)
    assert len(set(pvae.data.DATASETS)) == len(pvae.data.DATASETS)


def test_sequences_given_to_a_fixed_size_model_are_refused_naming_the_fix():
    seqs = Sequences(torch.randn(5, 4, 2), torch.tensor([4, 4, 3, 2, 1]))
    vae = pvae.VAE(8, 2, likelihood="gaussian")
    for run in (lambda: pvae.evaluate.elbo(vae, seqs),
                lambda: pvae.fit(vae, seqs, epochs=1, progress=False, logger=None)):
        with pytest.raises(ValueError, match=r"VAE takes fixed-size .*SequenceVAE.*x\.flatten\(1\)"):
            run()
