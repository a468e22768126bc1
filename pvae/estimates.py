"""The per-point estimates everything else builds on: ELBO, importance-sampled
log-likelihood, their parts, and per-site log densities, in nats per data point.

They read Pyro traces (:mod:`pvae.weights`), so they work for any model/guide
pair whose sample sites lie in ``pyro.plate("data")``: a pvae model, or a pair
of callables ``(model_fn, guide_fn)``. They sit below :mod:`pvae.train` (whose
loop reports them per epoch) and are re-exported by :mod:`pvae.evaluate`,
whose module docstring describes batching, chunking and validation.
"""

from __future__ import annotations

import math
import weakref
from contextlib import contextmanager
from typing import Optional

import pyro
import torch

from pyro.infer.util import is_validation_enabled

from pvae.batching import as_batch
from pvae.key_cache import TreeKeys
from pvae.models.base import PVAEModel, as_pair
from pvae.program_key import step_key
from pvae.replay import Tape
from pvae.weights import check_per_point, log_weights

Batch = tuple

#: Decoder-output numbers per evaluation chunk (see the module docstring).
CHUNK_ELEMENTS = 2**21
#: A network's largest activation per chunk may hold this many times the chunk's budget of
#: decoder outputs: the conv VAE of configs/fashion_mnist.yaml decodes as fast per image at
#: 167 samples a pass (two budgets of its 32 x 28 x 28 maps) as at 67, and 1.5 times
#: slower at 256 (one thread).
ACTIVATION_SHARE = 2
#: Working numbers a model declares (:func:`working_numbers`: a recurrent network's
#: hidden states and gates) per evaluation chunk: 256 MB of float32. Recurrent networks
#: need chunks of hundreds of sequences to run at speed; smaller budgets are slower.
WORKING_ELEMENTS = 2**26


@contextmanager
def _unvalidated(model):
    """For pvae models, whose data were checked up front: no per-sample argument
    validation, and no Pyro parameter registration on every submodule access (nothing
    here optimises through Pyro's param store; a fixed cost on every chunk, as in
    training: :meth:`pvae.models.base.PVAEModel.unregistered`)."""
    if not isinstance(model, PVAEModel):
        yield
        return
    with pyro.validation_enabled(False), model.unregistered():
        yield


def site_log_probs(model, batch: Batch, num_samples: int) -> dict[str, dict[str, torch.Tensor]]:
    """Per-site log densities, each of shape ``(num_samples, N)``.

    Returns ``{"model": {site: log p}, "guide": {site: log q}, "observed": {site: log p}}``
    for one vectorised draw of ``num_samples`` guide samples per data point
    (discrete guide sites are sampled, not enumerated).
    """
    pair = as_pair(model)
    with torch.no_grad(), _unvalidated(model):
        w = log_weights(pair.model, pair.guide, batch, num_samples,
                        max_plate_nesting=pair.max_plate_nesting,
                        enumerate=False, keep_sites=True)
    check_per_point(w)
    return w.sites


def _outputs(model, x: torch.Tensor) -> int:
    """Decoder outputs per guide sample of one data point of the batch ``x``."""
    likelihood = getattr(model, "likelihood", None)
    return max(math.prod(x.shape[1:]) * max(getattr(likelihood, "num_params", 1), 1), 1)


def working_numbers(model, x: torch.Tensor) -> tuple[int, int]:
    """``(per_point, per_sample)``: the floats one data point of the batch ``x`` holds in
    the model's networks while the model and guide run on it, once per point (the
    encoder) and once more per guide sample (the decoder), as the model declares them
    with ``model.working_numbers(x)``; ``(0, 0)`` for a model that declares none
    (feed-forward networks, whose working size is of the order of their outputs).

    Recurrent models declare their hidden states and gates at every time step
    (:meth:`pvae.SequenceVAE.working_numbers`): at 128 units about 700 floats per
    step, where the decoder outputs two.
    """
    declared = getattr(model, "working_numbers", None)
    if not callable(declared):
        return 0, 0
    per_point, per_sample = declared(x)
    return int(per_point), int(per_sample)


def activation_numbers(model, batch: Batch) -> int:
    """The most numbers any one network module of ``model`` outputs per guide sample of
    one data point, measured by running the model and guide once on the first point of
    ``batch`` with one and with two samples (forward hooks; RNG state restored). A conv
    decoder's hidden maps (32 x 28 x 28 for 28 x 28 images) are 32 times its output; an
    MLP's largest is its output. 0 for a pair of callables (no modules to hook).
    Measured once per model and shape of data point.
    """
    if not isinstance(model, torch.nn.Module):
        return 0
    key = tuple((tuple(t.shape[1:]), t.dtype, t.device) for t in batch)
    known = _ACTIVATIONS.setdefault(model, {})
    if key not in known:
        known[key] = _probe(model, tuple(t[:1] for t in batch))
    return known[key]


#: :func:`activation_numbers` per model and data shape: measured once, not every epoch.
_ACTIVATIONS: "weakref.WeakKeyDictionary" = weakref.WeakKeyDictionary()


def _probe(model, sub: Batch) -> int:
    sizes: list[list[int]] = [[], []]
    calls = sizes[0]

    def hook(module, args, output):
        outs = output if isinstance(output, (tuple, list)) else (output,)
        calls.append(sum(t.numel() for t in outs if isinstance(t, torch.Tensor)))

    handles = [m.register_forward_hook(hook) for m in model.modules()]
    devices = [sub[0].device] if sub[0].device.type == "cuda" else []
    try:
        with torch.random.fork_rng(devices=devices):
            for i, k in enumerate((1, 2)):
                calls = sizes[i]
                _weights(model, sub, k, enumerate=True)
    finally:
        for h in handles:
            h.remove()
    if len(sizes[0]) != len(sizes[1]):
        return max(sizes[1], default=0)  # a program whose calls vary: its largest output
    return max((b - a for a, b in zip(*sizes)), default=0)


def _even(total: int, most: int) -> list[int]:
    """``total`` split into the fewest parts of at most ``most``, as equal as can be."""
    parts = -(-total // max(most, 1))
    return [total // parts + (1 if i < total % parts else 0) for i in range(parts)]


class _Evaluation:
    """Batching, chunking and train/eval mode around a per-chunk computation.

    A chunk of ``b`` points and ``k`` samples holds ``b * k * outputs`` numbers (at most
    ``max_elements``), where ``outputs`` is the larger of the decoder's outputs per
    sample and the largest activation any network module makes per sample
    (:func:`activation_numbers`: a conv decoder's hidden maps) over
    :data:`ACTIVATION_SHARE`, and ``b * (per_point +
    k * per_sample)`` declared working numbers (:func:`working_numbers`; at most
    ``max_working``): batches shrink below ``batch_size`` when even one sample per
    point (``together`` samples, for callers that take all their samples at once) would
    exceed either. ``many_samples``: rows shrink further so that one chunk holds as many
    of each point's samples as fit (models that declare no working size): the
    per-point work (the encoder, Pyro's per-chunk bookkeeping) then runs on fewer chunks.
    A batch's samples are split into chunks of equal size."""

    def __init__(self, model, data, batch_size: int, max_elements: int, num_samples: int,
                 checked: bool = False, max_working: Optional[int] = None, together: int = 1,
                 many_samples: bool = False):
        self.model = model
        # data checked already (the training loop's monitor and validation batches) skip it
        self.batch = tuple(data) if checked else as_batch(data, model)
        self.num_samples, self.max_elements = num_samples, max_elements
        self.max_working = max_elements if max_working is None else max_working
        self.per_point, self.per_sample = working_numbers(model, self.batch[0])
        self.outputs = _outputs(model, self.batch[0])
        if not self.per_sample and self.batch[0].shape[0] and max_elements < 2**62:
            with _eval_mode(model):
                self.outputs = max(self.outputs, activation_numbers(model, self.batch)
                                   // ACTIVATION_SHARE)
        # rows per batch: ``together`` samples of each (1 where samples are chunked) fit
        room = self.per_point + together * self.per_sample
        if many_samples and not self.per_sample:
            together = max(together, num_samples)
        self.batch_size = max(1, min(batch_size, max_elements // (together * self.outputs),
                                     self.max_working // max(room, 1)))

    def per_point_chunk(self, b: int) -> int:
        """Guide samples per chunk for ``b`` data points (at least 1, at most ``num_samples``)."""
        b = max(b, 1)
        k = min(self.num_samples, self.max_elements // (b * self.outputs))
        if self.per_sample:
            k = min(k, (self.max_working // b - self.per_point) // self.per_sample)
        return max(1, k)

    def __len__(self) -> int:
        return self.batch[0].shape[0]

    def __iter__(self):
        with _eval_mode(self.model):
            for start in range(0, self.batch[0].shape[0], self.batch_size):
                sub = tuple(t[start : start + self.batch_size] for t in self.batch)
                yield sub, _even(self.num_samples, self.per_point_chunk(sub[0].shape[0]))


@contextmanager
def _eval_mode(model):
    """``model.eval()`` inside, its training mode restored after."""
    was_training = bool(getattr(model, "training", False))
    if hasattr(model, "eval"):
        model.eval()
    try:
        yield
    finally:
        if was_training:
            model.train()


class _Replays:
    """A :class:`~pvae.replay.Tape` of one evaluation's chunks and its module-tree keys:
    from the second chunk of one structure on (same model, input shapes, sample count,
    program constants and parameters: :func:`pvae.program_key.step_key`), a chunk's tensor
    operations, recorded once, are replayed without running the Pyro program, drawing the
    same numbers in the same order, so the estimate is the one the program gives."""

    def __init__(self) -> None:
        self.tape, self.trees = Tape(), TreeKeys()

    def __call__(self, pair, sub: Batch, size: int, enumerate: bool, run) -> torch.Tensor:
        key = None
        if all(isinstance(t, torch.Tensor) for t in sub) and not is_validation_enabled():
            key = step_key(pair.model, pair.guide, sub, {}, self.trees.token)
            if key is not None:
                key = (*key, size, enumerate, pair.max_plate_nesting)
        return self.tape(key, run, list(sub))


def _weights(model, sub, size, enumerate: bool, replays: Optional[_Replays] = None
             ) -> torch.Tensor:
    """Log weights ``(size, N)`` of one chunk (replayed from ``replays`` when given)."""
    pair = as_pair(model)

    def run(*batch) -> torch.Tensor:
        w = log_weights(pair.model, pair.guide, batch, size,
                        max_plate_nesting=pair.max_plate_nesting, enumerate=enumerate)
        check_per_point(w)
        return w.local

    with torch.no_grad(), _unvalidated(model):
        return run(*sub) if replays is None else replays(pair, sub, size, enumerate, run)


def elbo(model, data, num_samples: int = 1, *, batch_size: int = 1000,
         max_elements: int = CHUNK_ELEMENTS, checked: bool = False,
         max_working: int = WORKING_ELEMENTS) -> torch.Tensor:
    """ELBO per data point (nats), averaged over ``num_samples`` guide samples.

    Memory: each chunk of points and samples holds at most ``max_elements`` decoder
    outputs and ``max_working`` of the working numbers a model declares
    (:func:`working_numbers`; a recurrent model's hidden states), float32 each.

    ``checked=True``: ``data`` is a tuple of tensors already checked against the
    model (as :func:`pvae.batching.as_batch` returns it), so it is not checked again.
    """
    out = []
    for sub, sizes in _Evaluation(model, data, batch_size, max_elements, num_samples, checked,
                                  max_working):
        total = sum(_weights(model, sub, k, enumerate=False).sum(0) for k in sizes)
        out.append(total / num_samples)
    return torch.cat(out)


def log_likelihood(model, data, num_samples: int = 1000, *, batch_size: int = 100,
                   max_elements: int = CHUNK_ELEMENTS, checked: bool = False,
                   max_working: int = WORKING_ELEMENTS,
                   progress: Optional[bool] = False) -> torch.Tensor:
    """Importance-sampled log p(x) per data point (nats), with the guide as proposal.

    ``log (1/K) sum_k p(x, z_k) / q(z_k | x)``, the logsumexp taken per data
    point over all ``K = num_samples`` samples (Burda et al. 2015): a
    stochastic lower bound that tightens as K grows. Discrete guide sites
    (the semi-supervised model's label) are enumerated here
    (``config_enumerate``) and summed out exactly inside each sample.
    ``checked``, ``max_elements`` and ``max_working`` as for :func:`elbo`; batches hold
    fewer than ``batch_size`` points when that lets a chunk hold more of each point's
    samples (the encoder then runs on fewer chunks). ``progress``: a tqdm bar over the
    data points with the time left (``None``: when stderr is a terminal). Returns a
    tensor of shape ``(N,)``.
    """
    out = []
    evaluation = _Evaluation(model, data, batch_size, max_elements, num_samples, checked,
                             max_working, many_samples=True)
    replays = _Replays()  # every chunk of one shape runs the same operations
    with _bar(progress, len(evaluation), f"log-likelihood, K = {num_samples}") as bar:
        for sub, sizes in evaluation:
            lse = None
            for k in sizes:
                part = torch.logsumexp(_weights(model, sub, k, True, replays), 0)
                lse = part if lse is None else torch.logaddexp(lse, part)
            out.append(lse - math.log(num_samples))
            bar.update(sub[0].shape[0])
    return torch.cat(out)


def _bar(progress: Optional[bool], total: int, desc: str):
    """A tqdm bar over ``total`` data points, shown when ``progress`` (``None``: when
    stderr is a terminal, as the training loop's bar)."""
    import sys

    from tqdm import tqdm

    show = progress if progress is not None else sys.stderr.isatty()
    return tqdm(total=total, disable=not show, desc=desc, unit="point", leave=False)


def parts(model, data, num_samples: int = 1, *, batch_size: int = 1000,
          checked: bool = False) -> dict[str, torch.Tensor]:
    """Per data point: ``elbo``, ``recon`` (E_q log p(x | z)) and ``kl`` (E_q log q/p),
    plus ``kl_<site>`` for each latent site; Monte Carlo over ``num_samples``.
    ``checked`` as for :func:`elbo`. All samples of a batch are drawn at once; for a
    model that declares its working size (:func:`working_numbers`), batches hold at
    most :data:`WORKING_ELEMENTS` of it."""
    acc: dict[str, list[torch.Tensor]] = {}
    # all samples of a batch at once: only the declared working size bounds its rows
    for sub, _ in _Evaluation(model, data, batch_size, 2**62, num_samples, checked,
                              WORKING_ELEMENTS, together=num_samples):
        p = site_log_probs(model, sub, num_samples)
        recon = sum(p["observed"].values()).mean(0)
        row = {"recon": recon}
        kl_total = torch.zeros_like(recon)
        for name, lq in p["guide"].items():
            kl = (lq - p["model"][name]).mean(0)
            row[f"kl_{name}"] = kl
            kl_total = kl_total + kl
        row["kl"] = kl_total
        row["elbo"] = recon - kl_total
        for key, val in row.items():
            acc.setdefault(key, []).append(val)
    return {k: torch.cat(v) for k, v in acc.items()}
