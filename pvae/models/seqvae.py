"""The sequence VAE: a recurrent encoder and an autoregressive recurrent decoder."""

from __future__ import annotations

import functools
from typing import Literal, Optional, Union

import pyro
import pyro.distributions as dist
import torch
from pyro.distributions import constraints
from pyro.infer.util import is_validation_enabled
from pyro.nn import pyro_method

from pvae import likelihoods as lk
from pvae.flows import GaussianPosterior
from pvae.models.base import ObservedSites, PVAEModel
from pvae.models.checks import check_hparams, num_draws
from pvae.models.registry import register
from pvae.models.seqchecks import (check_excluded_ids, check_sequence_shapes, check_sequences,
                                   positive as _positive)
from pvae.models.seqdist import MaskedSequence, clean, step_mask
from pvae.models.seqgen import generate, teacher_score
from pvae.nets_recurrent import SequenceDecoder, SequenceEncoder, SeriesInputs, TokenInputs


@register
class SequenceVAE(PVAEModel):
    r"""Variational autoencoder of variable-length sequences (Fabius & van Amersfoort 2014;
    Bowman et al. 2016, "Generating sentences from a continuous space").

    Data are the pair ``(x, lengths)``: float series ``x`` of shape ``(N, T, D)``
    (``SequenceVAE(x_dim=D, ...)``) or token ids of shape ``(N, T)``
    (``SequenceVAE(vocab_size=V, ...)``), and ``lengths`` of shape ``(N,)`` in
    ``1..T``. Values beyond a length (padding) may be anything, NaN included:
    they are replaced before any computation and never scored.

    Generative story, for each sequence ``n`` in ``pyro.plate("data")``::

        z_n ~ Normal(0, I)                                   # site "z", (z_dim,)
        h_0 = tanh(W z_n);  h_t = RNN(h_{t-1}, input(x_{t-1}) [, z_n])
        x_nt ~ likelihood(out(h_t)),  t < L_n                # site "x", (T, D) or (T,)

    The decoder is autoregressive (teacher forcing on the observed steps). z sets
    its initial state and, with ``z_every_step``, also joins every step's input.
    With ``decoder_history="previous"`` the RNN reads z alone and a head maps
    ``(h_t, input(x_{t-1}))`` to the step's parameters: p(x_t | x_{t-1}, z), a local
    autoregressive context that leaves the series' shape to z (Chen et al. 2017). For
    tokens the categories are ``0..V-1`` and an end-of-sequence event ``V``,
    scored after the last token, so p(x) includes the length (a sequence has at
    least one token: no end event at the first step). Series are modelled given
    their length. Site ``"x"`` is a :class:`pvae.models.seqdist.MaskedSequence`:
    one log-probability per sequence, in nats.

    Guide::

        z_n ~ Normal(encoder(x_n[:L_n]))                     # site "z"

    from a (bidirectional) GRU/LSTM that reads only the real steps (packed),
    optionally followed by ``guide_flows`` inverse autoregressive flows.

    Parameters
    ----------
    x_dim
        Features per step of real-valued or binary series; give this or ``vocab_size``.
    z_dim
        Latent dimensions.
    vocab_size
        Number of token ids ``V`` (ids ``0..V-1``) for token sequences.
    likelihood
        Per-step likelihood by name (:func:`pvae.likelihoods.names`): ``"gaussian"``
        (default for series), ``"laplace"``, ``"bernoulli"`` (binary series), ...;
        tokens always use ``"categorical"`` over ``V + 1`` categories.
    hidden_dim, rnn, num_layers
        The recurrent networks' width, cell (``"gru"`` or ``"lstm"``) and depth.
    bidirectional_encoder
        Whether the encoder reads the sequence both ways.
    embedding_dim
        Token embedding size (default ``hidden_dim``).
    excluded_ids
        Token ids the data never holds, which the model gives probability 0 at
        every step (their logits are -inf in scoring and in generation): p(x) is
        then a distribution over sequences of the other ids, and samples never
        hold them. For text encoded by a :class:`pvae.data.Vocabulary` pass
        ``excluded_ids=vocab.excluded_ids`` (its ``<pad>``, ``<bos>``, ``<eos>``,
        which the model has no use for: it has its own start input and end
        event); data holding an excluded id within its lengths is refused.
    word_dropout
        Probability, in training only, of replacing each decoder input by an
        unknown token (a zeroed, flagged step for series), Bowman et al.'s
        remedy for posterior collapse; use it with ``pvae.fit(kl_warmup=...)``.
    z_every_step
        Feed z to every decoder step as well as to its initial state (default False).
    decoder_history
        ``"full"`` (default): the decoder's RNN reads every previous step;
        ``"previous"``: it reads z only and the output head sees the previous step.

        Measured on GunPoint (z_dim 8, 60 epochs, lr 3e-3, batch 8, kl_warmup 20;
        ``benchmarks/SEQ_DECODER.md``; test log p(x) in nats per series, K=200;
        1-NN accuracy on latent means, raw series 0.90; sample std, data 1.0):

        ==============================  ====  =======  ==========  ====  =====
        decoder, word_dropout           KL    active   log p(x)    1-NN  std
        ==============================  ====  =======  ==========  ====  =====
        initial state only, 0           0.02  0/8      -13.0       0.61  2.33
        z every step, 0                 0.10  0/8      -14.1       0.61  2.39
        initial state only, 0.5 (2x)    0.09  0/8      -10.8       0.59  2.9
        z every step, 0.5 (2x)          1.08  0-1/8    -11.9       0.55  2.5
        z every step, 0.9               5.64  6/8      -71.5       0.52  0.71
        previous step only, 0.75        7.84  7/8      -57.4       0.61  1.16
        ==============================  ====  =======  ==========  ====  =====

        z at every step raises the KL about tenfold at about 1 nat of log p(x)
        per series; input dropout of 0.75-0.9 makes z carry several nats and
        samples keep the data's spread, but costs about 50 nats. No variant's
        latent separates GunPoint's classes (1-NN near chance against 0.90 raw).
    beta, guide_flows, likelihood_kwargs
        As for :class:`pvae.VAE`.
    max_len
        Default maximum length of :meth:`sample`, :meth:`decode_mean` and of the
        model run without x.

    Raises
    ------
    ValueError
        For neither or both of ``x_dim`` and ``vocab_size``, a likelihood other
        than categorical for tokens, ``excluded_ids`` that are not distinct ids of
        the vocabulary (or that leave none), or a bad size, rate or option.
    """

    config_name = "seqvae"
    batch_parts = ("x", "lengths")

    def __init__(self, x_dim: Optional[Union[int, tuple, list]] = None, z_dim: int = 16, *,
                 vocab_size: Optional[int] = None, likelihood: Optional[str] = None,
                 hidden_dim: int = 128, rnn: Literal["gru", "lstm"] = "gru", num_layers: int = 1,
                 bidirectional_encoder: bool = True, embedding_dim: Optional[int] = None,
                 excluded_ids: tuple = (), word_dropout: float = 0.0, z_every_step: bool = False,
                 decoder_history: Optional[str] = None, beta: float = 1.0,
                 likelihood_kwargs: Optional[dict] = None, guide_flows: int = 0,
                 max_len: int = 100) -> None:
        super().__init__()
        check_hparams(z_dim=z_dim, beta=beta, guide_flows=guide_flows)
        if (x_dim is None) == (vocab_size is None):
            raise ValueError("give x_dim=D for real-valued series of shape (N, T, D) or "
                             "vocab_size=V for token ids of shape (N, T), not both or neither")
        if isinstance(x_dim, (tuple, list)) and len(x_dim) == 1:
            x_dim = x_dim[0]
        hidden_dim = _positive("hidden_dim", hidden_dim)
        num_layers = _positive("num_layers", num_layers)
        self.max_len = _positive("max_len", max_len)
        if not (isinstance(word_dropout, (int, float)) and 0 <= word_dropout < 1):
            raise ValueError(f"word_dropout must be a probability in [0, 1), got {word_dropout!r}")
        self.z_dim, self.beta, self.word_dropout = z_dim, float(beta), float(word_dropout)
        self.tokens = vocab_size is not None
        self.vocab_size = None if vocab_size is None else _positive("vocab_size", vocab_size)
        self.x_dim = None if x_dim is None else _positive("x_dim", x_dim)
        self.excluded_ids = check_excluded_ids(excluded_ids, self.vocab_size)
        mask = None
        if self.excluded_ids:
            mask = torch.zeros(self.vocab_size + 1, dtype=torch.bool)
            mask[list(self.excluded_ids)] = True
        self.register_buffer("excluded_mask", mask, persistent=False)
        self._default_encoder = self._default_decoder = True
        if self.tokens:
            if likelihood not in (None, "categorical") or likelihood_kwargs:
                raise ValueError("token sequences use the categorical likelihood over the "
                                 f"vocabulary and an end event; got likelihood={likelihood!r}"
                                 + (f", likelihood_kwargs={likelihood_kwargs!r}"
                                    if likelihood_kwargs else ""))
            self.x_shape = ()
            self.likelihood = lk.get("categorical", num_levels=self.vocab_size + 1).setup(())
            embedding_dim = _positive("embedding_dim", embedding_dim or hidden_dim)
            self.enc_inputs = TokenInputs(self.vocab_size, embedding_dim)
            self.dec_inputs = TokenInputs(self.vocab_size, embedding_dim)
            enc_dim, out_dim = embedding_dim, self.vocab_size + 1
        else:
            self.x_shape = (self.x_dim,)
            self.likelihood = lk.resolve(likelihood or "gaussian",
                                         **(likelihood_kwargs or {})).setup(self.x_shape)
            self.dec_inputs = SeriesInputs(self.x_dim)
            enc_dim, out_dim = self.x_dim, self.likelihood.num_params * self.x_dim
        self.encoder = SequenceEncoder(enc_dim, z_dim, hidden_dim, rnn, num_layers,
                                       bool(bidirectional_encoder))
        if not isinstance(z_every_step, bool):
            raise ValueError(f"z_every_step must be True or False, got {z_every_step!r}")
        decoder_history = decoder_history or "full"
        if decoder_history not in ("full", "previous"):
            raise ValueError("decoder_history must be 'full' (the decoder reads every previous "
                             "step) or 'previous' (only the last one), got "
                             f"{decoder_history!r}")
        self.decoder = SequenceDecoder(self.dec_inputs.dim, z_dim, hidden_dim, out_dim, rnn,
                                       num_layers, z_every_step, decoder_history)
        self.posterior = GaussianPosterior(z_dim, guide_flows)
        self._remember(
            x_dim=self.x_dim, z_dim=z_dim, vocab_size=self.vocab_size,
            likelihood=self.likelihood.name if not self.tokens else None,
            likelihood_kwargs=self.likelihood.hparams() if not self.tokens else None,
            hidden_dim=hidden_dim, rnn=rnn, num_layers=num_layers,
            bidirectional_encoder=bool(bidirectional_encoder),
            embedding_dim=embedding_dim if self.tokens else None,
            excluded_ids=list(self.excluded_ids), word_dropout=self.word_dropout,
            z_every_step=z_every_step, decoder_history=decoder_history, beta=self.beta,
            guide_flows=guide_flows,
            max_len=self.max_len)

    # -- data ---------------------------------------------------------------------------------
    #: The dtype token ids travel in (pvae.batching keeps them exact); None: float32.
    @property
    def x_dtype(self) -> Optional[torch.dtype]:
        return torch.int64 if self.tokens else None

    def check_data(self, x, *rest, support: bool = True) -> None:
        """Raise ``ValueError`` (``TypeError`` for non-tensors) unless ``(x, lengths)`` is data
        this model takes: shapes, lengths in ``1..T``, ids in the vocabulary, finite
        values (and the likelihood's support where ``support``) on the real steps."""
        if len(rest) != 1:
            raise ValueError(self._parts_message(1 + len(rest)))
        check_sequences(x, rest[0], vocab_size=self.vocab_size, x_dim=self.x_dim,
                        likelihood=self._modules["likelihood"] if support else None,
                        excluded_ids=self.excluded_ids)

    def working_numbers(self, x: torch.Tensor) -> tuple[int, int]:
        """``(per_point, per_sample)``: floats one sequence of the padded batch ``x``
        (``(N, T)`` or ``(N, T, D)``) holds in the encoder (once) and in the decoder
        (per sample of z) while the model runs: ``T`` times the recurrent networks'
        numbers per step. Evaluation sizes its chunks by it (:mod:`pvae.estimates`)."""
        num_steps = x.shape[1] + (1 if self.tokens else 0)  # tokens: the end event's step
        return (x.shape[1] * self.encoder.numbers_per_step(),
                num_steps * self.decoder.numbers_per_step())

    def _checked(self, x, lengths, support: bool = False):
        return clean(*self.checked_batch(x, lengths, support=support), self.tokens)

    # -- networks ------------------------------------------------------------------------------
    def _encode(self, x: torch.Tensor, lengths: torch.Tensor):
        if self.tokens:
            inputs = self.enc_inputs.embedding(x)
        else:
            inputs = self._encoder_input(x)
        return self.encoder(inputs, lengths)

    @torch.no_grad()
    def _draw(self, num_steps: int, z: torch.Tensor, lengths: Optional[torch.Tensor]):
        return generate(self, z, num_steps, 1.0, False, lengths)

    # -- public methods ------------------------------------------------------------------------
    def encode(self, x, lengths) -> tuple[torch.Tensor, torch.Tensor]:
        """``(z_loc, z_scale)`` of q(z | x) (the base Gaussian, with flows), each ``(N, z_dim)``.

        ``x``, ``lengths`` are checked as ``pvae.fit`` checks them (``ValueError`` /
        ``TypeError`` naming the problem)."""
        return self._encode(*self._checked(x, lengths))

    @torch.no_grad()
    def embed(self, x, lengths) -> torch.Tensor:
        """Posterior means E_q[z | x], shape ``(N, z_dim)`` (before flows)."""
        return self.encode(x, lengths)[0]

    @torch.no_grad()
    def decode_mean(self, z: torch.Tensor, *, max_len: Optional[int] = None):
        """Greedy decoding of codes ``z`` ``(N, z_dim)``: ``(x, lengths)`` with the most
        probable token (the mean step, for series) fed back at each step."""
        return self.generate(z, max_len=max_len, temperature=0.0)

    @torch.no_grad()
    def reconstruct(self, x, lengths, *, max_len: Optional[int] = None):
        """Greedy decoding from the posterior means: ``(x_hat, lengths_hat)``. Series keep
        their lengths (padding is 0); tokens stop at the end event or ``max_len``
        (default: the longer of ``T + 1`` and the model's ``max_len``)."""
        x, lengths = self._checked(x, lengths)
        z = self._encode(x, lengths)[0]
        if not self.tokens:
            out, _ = self.generate(z, max_len=x.shape[1], temperature=0.0)
            return torch.where(step_mask(lengths, x.shape[1])[..., None], out, 0.0), lengths
        return self.generate(z, max_len=max_len or max(x.shape[1] + 1, self.max_len),
                             temperature=0.0)

    @torch.no_grad()
    def sample(self, n: int, *, max_len: Optional[int] = None, temperature: float = 1.0):
        """``n`` sequences from the model: ``(x, lengths)``, x padded with 0.

        Tokens stop at the end event (or are cut at ``max_len``); series run
        ``max_len`` steps (default: the model's ``max_len``). ``temperature``
        divides token and Bernoulli logits; for continuous likelihoods it scales
        each draw's deviation from the step's mean; 0 is greedy (the most probable
        token, the mean step, rounded for counts); other discrete likelihoods take
        only 0 or 1. ``ValueError`` for a bad ``n``, ``max_len`` or temperature.
        """
        z = torch.randn(num_draws(n), self.z_dim, device=self.device)
        return self.generate(z, max_len=max_len, temperature=temperature)

    def generate(self, z: torch.Tensor, *, max_len: Optional[int] = None,
                 temperature: float = 1.0, trim: bool = True):
        """Run the decoder from codes ``z`` ``(..., z_dim)``: ``(x, lengths)`` of batch
        shape ``z.shape[:-1]`` (see :meth:`sample`); token x has ``max(lengths)`` steps
        with ``trim``, else ``max_len``."""
        max_len = self.max_len if max_len is None else _positive("max_len", max_len)
        if not (isinstance(temperature, (int, float)) and temperature >= 0):
            raise ValueError(f"temperature must be a number >= 0, got {temperature!r}")
        lik = self.likelihood
        if (not self.tokens and lik.discrete and lik.name != "bernoulli"
                and temperature not in (0, 1)):
            raise ValueError(f"temperature={temperature!r} is defined for token and Bernoulli "
                             "logits and for continuous likelihoods; the "
                             f"{lik.name!r} likelihood draws at temperature 1 (or greedily, 0)")
        return generate(self, z, max_len, float(temperature), trim)

    # -- Pyro program --------------------------------------------------------------------------
    def _size(self, x, lengths, batch_size):
        for t in (x, lengths):
            if t is not None:
                return t.shape[0], t.device
        return (1 if batch_size is None else int(batch_size)), self.device

    @pyro_method
    def model(self, x: Optional[torch.Tensor] = None, lengths: Optional[torch.Tensor] = None, *,
              batch_size: Optional[int] = None, max_len: Optional[int] = None):
        """p(z) p(x | z), site ``"x"`` a :class:`pvae.models.seqdist.MaskedSequence`.

        Without x (``batch_size`` sequences, or one per given length) the site is
        drawn unless a handler conditions it: of ``max_len`` steps (default: the
        longest given length, else the model's ``max_len``); of the given
        ``lengths`` (tokens with the end event forbidden before them), else series
        of all the steps and tokens until their end event. The site's lengths are
        recorded at the deterministic site ``"lengths"``.

        ``ValueError`` (before any work) for x with outer batch dimensions, x without
        lengths, or data that is not padded sequences (as :meth:`check_data`); the
        guide checks its data the same way.
        """
        self._check_program_data(x, lengths)
        n, device = self._size(x, lengths, batch_size)
        if x is not None:
            if lengths is None:
                raise ValueError("the model needs the lengths of x: call model(x, lengths)")
            x, lengths = clean(x, lengths, self.tokens)
            num_steps = x.shape[1]
        else:
            num_steps = self._num_steps(lengths, max_len)
            lengths = None if lengths is None else lengths.long()
        score = functools.partial(
            teacher_score, self.decoder, self.dec_inputs, self.likelihood, self.vocab_size,
            self.word_dropout if self.training else 0.0,  # the networks, registered here
            excluded=self.excluded_mask)
        with self.data_plate(n, device):
            with self.kl_scale():
                z = pyro.sample("z", dist.Normal(torch.zeros(n, self.z_dim, device=device), 1.0)
                                .to_event(1))
            px = MaskedSequence(score, z, lengths, num_steps, self.x_shape, self._step_support(),
                                functools.partial(self._draw, num_steps))
            with ObservedSites() as sites:
                value = pyro.sample("x", px, obs=x)
            if not sites.observed["x"]:  # drawn here, not given or conditioned
                pyro.deterministic("lengths", px.drawn_lengths)
            return value

    def _check_program_data(self, x, lengths) -> None:
        """Refuse outer batch dimensions (data sets inside a user's plate) at entry, and
        data that is not padded sequences (:func:`pvae.models.seqchecks.check_sequences`:
        shapes, lengths in ``1..T``, ids, finite real steps) with the messages of
        :meth:`check_data`; the likelihood's support is left to Pyro's validation. The
        values (lengths, ids, finiteness) are checked while Pyro's validation is on (its
        default), the types and shapes always."""
        want = 2 if self.tokens else 3
        for name, t, dims in (("x", x, want), ("lengths", lengths, 1)):
            if isinstance(t, torch.Tensor) and t.dim() > dims:
                shape = "(N, T)" if self.tokens else f"(N, T, {self.x_dim})"
                raise ValueError(
                    f"{name} has shape {tuple(t.shape)}, but SequenceVAE.model and .guide take "
                    f"x of shape {shape} and lengths of shape (N,): one data set of N "
                    "sequences. Outer batch dimensions (e.g. S data sets inside your own "
                    "pyro.plate) are not supported: the plate name 'data' and its dim -1 are "
                    "reserved for the model's plate over the N sequences. Flatten the data "
                    "sets into one batch or call the model once per data set.")
        if isinstance(x, torch.Tensor) and lengths is not None:
            # Pyro's own tools (SVI, Predictive, poutine) reach here without pvae.fit's check.
            # The values are checked as Pyro checks its distributions' arguments: while its
            # validation is on (the default). pvae.fit checks the data before training and
            # turns validation off, so its steps read no value and can be replayed.
            if is_validation_enabled():
                check_sequences(x, lengths, vocab_size=self.vocab_size, x_dim=self.x_dim,
                                excluded_ids=self.excluded_ids)
            else:
                check_sequence_shapes(x, lengths, vocab_size=self.vocab_size, x_dim=self.x_dim)

    def _num_steps(self, lengths, max_len) -> int:
        longest = None if lengths is None else int(lengths.max())
        if max_len is None:
            return longest or self.max_len
        max_len = _positive("max_len", max_len)
        if longest is not None and longest > max_len:
            raise ValueError(f"a length of {longest} is above max_len={max_len}")
        return max_len

    def _step_support(self):
        if self.tokens:
            return constraints.integer_interval(0, self.vocab_size - 1)
        return constraints.independent(constraints.real, 1)

    @pyro_method
    def guide(self, x: Optional[torch.Tensor] = None, lengths: Optional[torch.Tensor] = None,
              **kwargs):
        """q(z | x) = Normal(encoder(x, lengths)) (then the flows)."""
        if x is None or lengths is None:
            raise ValueError("the guide needs data: call guide(x, lengths)")
        self._check_program_data(x, lengths)
        x, lengths = clean(x, lengths, self.tokens)
        with self.data_plate(x.shape[0], x.device):
            z_loc, z_scale = self._encode(x, lengths)
            with self.kl_scale():
                return pyro.sample("z", self.posterior(z_loc, z_scale))
