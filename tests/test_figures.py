"""One registry of plot kinds (``pvae.figures``), shared by ``pvae train`` and ``pvae plot``."""

import torch

import pvae
from pvae import figures
from pvae.data import Data, Split
from pvae.train import History


def _view(model, history, n=12, image=(1, 8, 8)):
    g = torch.Generator().manual_seed(0)
    split = Split(torch.rand(n, 64, generator=g), torch.randint(0, 3, (n,), generator=g))
    data = Data(name="made", train=split, val=None, test=split, x_shape=(64,), image_shape=image)
    return figures.View(model, data, history)


def test_one_registry_decides_which_figures_apply():
    history = History([{"epoch": 1, "train_elbo": -50.0, "recon": -40.0, "kl": 10.0}])
    vae2 = _view(pvae.VAE(64, 2, hidden_dims=(8,)), history)
    assert figures.applicable(vae2, basic=True) == ["curves", "reconstructions", "samples"]
    assert figures.applicable(vae2) == ["curves", "reconstructions", "samples", "latent",
                                        "interpolation", "traversal", "manifold"]
    no_history = _view(pvae.VAE(64, 3, hidden_dims=(8,)), None)
    assert "curves" not in figures.applicable(no_history)
    assert "manifold" not in figures.applicable(no_history)  # z_dim 3
    cvae = _view(pvae.CVAE(64, 2, num_classes=3, hidden_dims=(8,)), history)
    assert "conditional" in figures.applicable(cvae)
    assert "conditional" not in figures.applicable(
        _view(pvae.CVAE(64, 2, num_classes=3, hidden_dims=(8,)), history, image=None))
    # pvae train draws exactly the basic kinds that apply, each one as pvae plot names it
    for view in (vae2, no_history, cvae):
        basic = figures.applicable(view, basic=True)
        assert all(k in figures.applicable(view) for k in basic)
        assert all(figures.KINDS[k].basic for k in basic)
    assert figures.figure_name("latent", "pca") == "latent-pca.png"
    assert figures.figure_name("samples") == "samples.png"


def _sequence_view(tokens: bool):
    from pvae.data import Sequences, Vocabulary

    g = torch.Generator().manual_seed(0)
    if tokens:
        vocab = Vocabulary.build(["cat", "dog", "bird", "fish", "cow"])
        x, lengths = vocab.encode(["cat", "dog", "bird", "fish", "cow", "cod"])
        model = pvae.SequenceVAE(vocab_size=len(vocab), z_dim=2, hidden_dim=8, max_len=6)
    else:
        vocab = None
        x, lengths = torch.randn(6, 12, 2, generator=g), torch.tensor([12, 10, 8, 12, 5, 3])
        model = pvae.SequenceVAE(x_dim=2, z_dim=2, hidden_dim=8, max_len=12)
    split = Sequences(x, lengths, torch.tensor([0, 1, 0, 1, 0, 1]))
    data = Data(name="made", train=split, val=None, test=split, x_shape=tuple(x.shape[1:]),
                num_classes=2, vocab=vocab, step_dim=None if tokens else 2)
    history = History([{"epoch": 1, "train_elbo": -50.0, "recon": -40.0, "kl": 10.0}])
    return figures.View(model.eval(), data, history)


def test_sequence_runs_get_the_figures_of_their_data_shape(tmp_path):
    from helpers import assert_png

    for tokens in (True, False):
        view = _sequence_view(tokens)
        kinds = figures.applicable(view)
        # z_dim 2, yet no grid of decoded points: a sequence is not a tile of an image
        assert kinds == ["curves", "reconstructions", "samples", "latent", "interpolation"]
        assert figures.applicable(view, basic=True) == ["curves", "reconstructions", "samples"]
        for kind in kinds:
            assert_png(figures.draw(view, kind, tmp_path / f"{tokens}-{kind}.png"), 100, 80)
