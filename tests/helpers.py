"""Plain helper functions shared by several test modules."""

import importlib

import pyro
import torch
from PIL import Image
from pyro import poutine
from pyro.infer import SVI, Trace_ELBO

import pvae


def sites(fn, *args):
    tr = poutine.trace(fn).get_trace(*args)
    return {n: s for n, s in tr.nodes.items() if s["type"] == "sample" and n != "data"}


def cvae(**kw):
    return pvae.CVAE(64, 3, num_classes=10, hidden_dims=(32,), **kw)


def ssvae(**kw):
    return pvae.SemiSupervisedVAE(64, 10, z_dim=3, hidden_dims=(32,), **kw)


def hvae(**kw):
    return pvae.HierarchicalVAE(64, (6, 3), hidden_dims=(32,), **kw)


def svi_steps(model, x, steps=5):
    svi = SVI(model.model, model.guide, pyro.optim.Adam({"lr": 1e-2}), Trace_ELBO())
    return [svi.step(x) for _ in range(steps)]


def copy_params(model):
    return [p.detach().clone() for p in model.parameters()]


def params_changed(before, model):
    return any(not torch.equal(a, b) for a, b in zip(before, model.parameters()))


L = pvae.latent


E = pvae.evaluate


def small_vae(**kw):
    return pvae.VAE(64, 4, hidden_dims=(32,), **kw)


def assert_png(path, min_w=200, min_h=150):
    w, h = Image.open(path).size
    assert path.stat().st_size > 2000 and w >= min_w and h >= min_h, (path, w, h)


compare_module = importlib.import_module("pvae.compare")  # pvae.compare is the function


def fail_estimator(monkeypatch, elbo: str, error: Exception) -> None:
    """Make ``pvae.compare``'s training raise ``error`` for the estimator named ``elbo``
    (the others train as usual)."""
    real = compare_module.fit

    def fit(model, data, **kw):
        if kw["elbo"] == elbo:
            raise error
        return real(model, data, **kw)

    monkeypatch.setattr(compare_module, "fit", fit)


#: Quick settings for a table, for every model type; TABLE adds z_dim (not hvae's: z_dims).
TABLE_ANY_MODEL = ["--set", "model.likelihood=gaussian", "--set", "model.hidden_dims=[8]",
                   "--set", "train.epochs=1", "--set", "evaluate.num_samples=2", "--quiet"]
TABLE = [*TABLE_ANY_MODEL, "--set", "model.z_dim=2"]


def data_in_support(likelihood, n: int, d: int):
    """The first of a few small (n, d) data sets that lies in the likelihood's support:
    binary, in (0, 1), counts, real."""
    g = torch.Generator().manual_seed(0)
    for x in ((torch.rand(n, d, generator=g) > 0.5).float(),
              torch.rand(n, d, generator=g) * 0.8 + 0.1,
              torch.randint(0, 5, (n, d), generator=g).float(),
              torch.randn(n, d, generator=g)):
        try:
            likelihood.check_support(x)
            return x
        except ValueError:
            continue
    raise AssertionError(f"no test data in the support of {likelihood.name}")
