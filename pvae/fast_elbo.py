"""Lean versions of ``Trace_ELBO`` and ``TraceMeanField_ELBO`` for the training loop.

For the common case, one particle and every guide site reparameterised, the
ELBO is just ``sum scale * log p(x, z) - sum scale * log q(z | x)`` (with the
KL taken analytically for the mean-field variant). Pyro's implementations
build full :class:`~pyro.poutine.Trace` objects, copy every message, check
shapes and prepare score-function terms on every step, a fixed cost that is
large next to a small VAE's step. These subclasses record the
sample messages with one light handler, replay the guide's values into the
model, and compute the same loss; anything else (several particles,
non-reparameterised or enumerated sites, JIT) goes to Pyro's own code.
The lean ``Trace_ELBO`` adds the zero-valued control variates that a guide
distribution offers (``kl_control_variate``: the IAF posterior's base Gaussian KL in
closed form, :class:`pvae.flows.IAFDistribution`); Pyro's path does without them.
From the second step of one structure on (same model and guide, input shapes, program
constants, warm-up weight, parameters: :func:`pvae.program_key.step_key`), the step's
tensor operations, recorded once, are replayed without running the Pyro program
(:mod:`pvae.replay`); a new structure runs the program again, and a program that
reads tensor values into Python, registers parameters with Pyro's store (SVI with
``pyro.optim``) or needs Pyro's own path is never replayed.
``tests/test_fast_elbo.py`` checks that values and gradients equal Pyro's.
With Pyro's validation on (``pyro.enable_validation``), the mean-field variant
checks, as Pyro's class does, that model and guide draw their latent sites in
the same order, and warns otherwise: the analytic-KL estimate can then be
biased (as on :class:`pvae.HierarchicalVAE` with ``guide="bottom_up"``).
"""

from __future__ import annotations

import warnings

import torch
from pyro.distributions.util import scale_and_mask
from pyro.infer import ELBO, Trace_ELBO, TraceMeanField_ELBO
from pyro.infer.util import is_validation_enabled
from pyro.poutine.messenger import Messenger
from pyro.poutine.runtime import _PYRO_STACK
from pyro.poutine.util import site_is_subsample


from pvae.fast_normal import draw, log_density
from pvae.key_cache import TAGS, TreeKeys, _tag
from pvae.program_key import WEIGHT_AT, LatentScale, step_key
from pvae.replay import Tape

_PLAIN = (bool, int, float, str, type(None))


class _Record(Messenger):
    """Record sample messages; optionally replay values from a recorded guide."""

    def __init__(self, replay: dict | None = None) -> None:
        super().__init__()
        self.replay = replay
        self.sites: dict = {}  # sample sites, subsample sites included (they are replayed too)
        self.params = False  # whether the program registered parameters with Pyro's store

    def _process_message(self, msg) -> None:
        if msg["type"] == "param":
            self.params = True
        if self.replay is None and msg["type"] == "sample":  # the guide: keep a Normal's noise
            draw(msg, self)
        if self.replay is not None and msg["type"] == "sample" and not msg["is_observed"]:
            guide_msg = self.replay.get(msg["name"])
            if guide_msg is not None:
                if guide_msg["is_observed"]:
                    raise RuntimeError(f"site {msg['name']!r} is observed in the guide but "
                                       "latent in the model")
                msg["value"] = guide_msg["value"]
                msg["infer"] = guide_msg["infer"]
                msg["done"] = True

    def _postprocess_message(self, msg) -> None:
        if msg["type"] == "sample":
            if msg["name"] in self.sites:
                raise RuntimeError(f"Multiple sample sites named {msg['name']!r}")
            self.sites[msg["name"]] = msg


def _without_subsample(sites: dict) -> dict:
    return {name: msg for name, msg in sites.items() if not site_is_subsample(msg)}


def _log_prob_sum(msg) -> torch.Tensor:
    return scale_and_mask(log_density(msg), msg["scale"], msg["mask"]).sum()


def _log_prob(msg) -> tuple:
    """A site's log-density term as :func:`_difference` takes it: ``(log_prob, scale, mask)``
    (a Normal's in fewer operations, :func:`pvae.fast_normal.log_density`)."""
    return log_density(msg), msg["scale"], msg["mask"]


def _control_variates(model_sites: dict, guide_sites: dict):
    """Zero-valued terms from guide distributions that offer ``kl_control_variate(value,
    prior)`` (:class:`pvae.flows.IAFDistribution`: the base Gaussian's KL in closed form);
    they change the gradient's variance, not its mean nor the loss's value (each a
    ``(term, scale, mask)`` triple, as :func:`_difference` takes them). Only where the
    guide draws the latent sites in the model's order (the mean-field condition): a prior
    that depends on a site the guide draws later (the bottom-up hierarchical guide) would
    bias the gradient, and there the Monte Carlo KL is used."""
    model_order = [name for name in model_sites if name in guide_sites]
    if model_order != [name for name in guide_sites if name in model_sites]:
        return
    for name, g in guide_sites.items():
        cv = getattr(g["fn"], "kl_control_variate", None)
        m = model_sites.get(name)
        if cv is None or m is None or m["is_observed"]:
            continue
        term = cv(g["value"], m["fn"])
        if term is not None:
            yield term, g["scale"], g["mask"]


def _record(model, guide, args, kwargs, tape: Tape | None = None):
    """Run guide then model (guide values replayed); None if the lean path does not apply.

    ``tape``: the :class:`~pvae.replay.Tape` recording this run, told not to replay it
    when the program registers parameters with Pyro's store."""
    with _Record() as g:
        guide(*args, **kwargs)
    guide_sites = _without_subsample(g.sites)
    for msg in guide_sites.values():
        if not msg["fn"].has_rsample or msg["infer"].get("enumerate"):
            return None
    with _Record(replay=g.sites) as m:
        model(*args, **kwargs)
    if tape is not None and (g.params or m.params):
        tape.refuse("the program registers parameters with Pyro's parameter store")
    return _without_subsample(m.sites), guide_sites


def _settings(own: dict, tape: Tape) -> tuple:
    """The ELBO's public plain settings (``own`` is its ``__dict__``), read again only when
    the dict's version tag (:data:`pvae.key_cache.TAGS`) moved since the last step."""
    cached = getattr(tape, "_settings", None)
    if cached is not None and cached[0] is own and cached[1].value == cached[2]:
        return cached[3]
    settings = tuple((k, v) for k, v in own.items() if v.__class__ in _PLAIN and k[0] != "_")
    if TAGS and type(own) is dict:
        tag = _tag(own)
        tape._settings = (own, tag, tag.value, settings)
    return settings


def taped(elbo, model, guide, args: tuple, kwargs: dict, loss):
    """``loss(model, guide, args, kwargs, tape)``, replayed from ``elbo``'s tape when the
    step's structure was seen before (:mod:`pvae.replay`: the key is
    :func:`~pvae.program_key.step_key` and ``elbo``'s own plain settings, such as
    :class:`~pvae.free_bits.FreeBits`' floor); run directly with Pyro's
    validation on (its checks run each step) or under JIT tracing.

    A KL warm-up weight (one :class:`~pvae.program_key.LatentScale` around the call,
    weight not 0) enters the recording as an input, a 0-dim tensor the handler holds
    while the program runs, so a weight that changes every step replays one recording.
    """
    own = elbo.__dict__
    tape = own.get("_tape")
    if tape is None:
        tape = own["_tape"] = Tape()
    trees = own.get("_trees")
    if trees is None:  # the module trees' keys, walked again only when a tree changed
        trees = own["_trees"] = TreeKeys()
    key, warm_up = None, None
    if not is_validation_enabled() and not torch._C._get_tracing_state():
        key = step_key(model, guide, args, kwargs, trees.token)
        if key is not None:  # the ELBO's own settings (FreeBits' floor) are read too
            key = (*key, _settings(own, tape))
        scales = [h for h in _PYRO_STACK if isinstance(h, LatentScale)]
        if key is not None and len(scales) == 1 and scales[0].factor != 0:
            warm_up = scales[0]
            key = (*key[:WEIGHT_AT], "weight as input", *key[WEIGHT_AT + 1:])
    names = [k for k, v in kwargs.items() if isinstance(v, torch.Tensor)]
    positions = [i for i, a in enumerate(args) if isinstance(a, torch.Tensor)]
    inputs = [args[i] for i in positions] + [kwargs[k] for k in names]
    if warm_up is not None:
        inputs.append(torch.tensor(float(warm_up.factor)))

    def run(*values):
        a, kw = list(args), dict(kwargs)
        for i, v in zip(positions, values):
            a[i] = v
        kw.update(zip(names, values[len(positions):len(positions) + len(names)]))
        if warm_up is None:
            return loss(model, guide, tuple(a), kw, tape)
        factor, warm_up.factor = warm_up.factor, values[-1]
        try:
            return loss(model, guide, tuple(a), kw, tape)
        finally:
            warm_up.factor = factor

    return tape(key, run, inputs)


def _total(terms: list) -> torch.Tensor | None:
    total = None
    for t in terms:
        total = t if total is None else total + t
    return total


def _signed(gains: list, costs: list) -> torch.Tensor:
    """``sum(costs) - sum(gains)``, formed without a leading float 0 or a negation, each one
    more operation in a small model's step; at least one list is not empty."""
    gain, cost = _total(gains), _total(costs)
    return -gain if cost is None else cost if gain is None else cost - gain


_FULL = (torch.float32, torch.float64)


def _difference(gains: list, costs: list) -> torch.Tensor:
    """The loss, minus the ELBO: ``sum(costs) - sum(gains)`` (nats), each term a
    ``(tensor, scale, mask)`` triple counted as ``scale_and_mask(tensor, scale, mask).sum()``.

    Terms without a mask whose scale is a plain number (the data plate's ``num_data /
    batch``, ``beta``) are grouped by scale and shape: each group is combined point by
    point, summed once and scaled once, so a step does one sum and one multiplication
    (and its backward one node each) per group instead of per site: the same value up to
    the order of floating-point additions. Terms in half or bfloat16 precision (autocast)
    are summed one by one, as before."""
    groups: dict = {}
    for sign, terms in ((0, gains), (1, costs)):
        for t, scale, mask in terms:
            if mask is None and isinstance(scale, (int, float)) and not isinstance(scale, bool):
                if t.dtype in _FULL:
                    group = (float(scale), t.shape)
                else:  # point by point only in full precision (bfloat16 loses digits)
                    group, t = (float(scale), None), t.sum()
            else:
                group, t = (1.0, None), scale_and_mask(t, scale, mask).sum()
            groups.setdefault(group, ([], []))[sign].append(t)
    scaled: dict = {}  # scale -> the sums of its groups
    for (scale, shape), (g, c) in groups.items():
        part = _signed(g, c)
        scaled.setdefault(scale, []).append(part if shape is None else part.sum())
    total = None
    for scale, parts in scaled.items():
        part = _total(parts)
        part = part if scale == 1.0 else part * scale
        total = part if total is None else total + part
    return total if total is not None else torch.zeros(())


class _Lean:
    """Mixin: the lean path when it applies, Pyro's otherwise. Subclasses give
    ``_lean_terms(model_sites, guide_sites)``: the ELBO's terms with a plus sign (gains)
    and with a minus sign (costs), each a ``(tensor, scale, mask)`` triple
    (:func:`_difference`)."""

    def _lean_ok(self) -> bool:
        return self.num_particles == 1 and not torch._C._get_tracing_state()

    def differentiable_loss(self, model, guide, *args, **kwargs):
        if self._lean_ok():
            return taped(self, model, guide, args, kwargs, self._lean_loss)
        return super().differentiable_loss(model, guide, *args, **kwargs)

    def _lean_loss(self, model, guide, args, kwargs, tape: Tape):
        rng = torch.get_rng_state()
        cuda_rng = torch.cuda.get_rng_state_all() if torch.cuda.is_initialized() else None
        recorded = _record(model, guide, args, kwargs, tape)
        if recorded is not None:
            if is_validation_enabled():
                self._validate(*recorded)
            return _difference(*self._lean_terms(*recorded))
        # Pyro's path then draws exactly what it would have (the guide runs again)
        torch.set_rng_state(rng)
        if cuda_rng is not None:
            torch.cuda.set_rng_state_all(cuda_rng)
        tape.refuse("the lean path does not apply (Pyro's own ELBO runs)")
        return super().differentiable_loss(model, guide, *args, **kwargs)

    def _validate(self, model_sites, guide_sites) -> None:
        """Pyro's checks that the lean path would otherwise skip (validation on)."""

    def loss(self, model, guide, *args, **kwargs):
        with torch.no_grad():
            return self.differentiable_loss(model, guide, *args, **kwargs).item()

    def loss_and_grads(self, model, guide, *args, **kwargs):
        loss = self.differentiable_loss(model, guide, *args, **kwargs)
        loss.backward()
        return loss.item()


class FastTrace_ELBO(_Lean, Trace_ELBO):
    """``Trace_ELBO`` with a lean path for one particle and reparameterised guides."""

    def _lean_terms(self, model_sites, guide_sites):
        return ([_log_prob(m) for m in model_sites.values()],
                [_log_prob(g) for g in guide_sites.values()]
                + list(_control_variates(model_sites, guide_sites)))


class FastTraceMeanField_ELBO(_Lean, TraceMeanField_ELBO):
    """``TraceMeanField_ELBO`` (analytic KL where known) with the same lean path.

    With validation on, warns as Pyro's class does when the guide draws the
    latent sites in another order than the model (the mean-field condition
    cannot be verified, and the analytic KL may be biased).
    """

    def _validate(self, model_sites, guide_sites) -> None:
        model_order = [name for name in model_sites if name in guide_sites]
        guide_order = [name for name in guide_sites if name in model_sites]
        if model_order != guide_order:
            warnings.warn(
                "Failed to verify mean field restriction on the guide: model and guide draw "
                f"their latent sites in different orders (model: {', '.join(model_order)}; "
                f"guide: {', '.join(guide_order)}), so the analytic KL may be biased. Use "
                "Trace_ELBO (elbo='trace'), or a guide that draws the sites in the model's "
                "order."
            )

    def _lean_terms(self, model_sites, guide_sites):
        gains, costs = [], []
        for name, m in model_sites.items():
            if m["is_observed"] or name not in guide_sites:
                gains.append(_log_prob(m))
                continue
            g = guide_sites[name]
            try:
                kl = torch.distributions.kl_divergence(g["fn"], m["fn"])
            except NotImplementedError:  # Monte Carlo, each side with its own scale and mask
                gains.append(_log_prob(m))
                costs.append(_log_prob(g))
                continue
            costs.append((kl, g["scale"], g["mask"]))
        for name, g in guide_sites.items():  # auxiliary guide sites: their entropy term
            if name not in model_sites:
                costs.append(_log_prob(g))
        return gains, costs


class SurrogateELBO(ELBO):
    """An ELBO whose gradient is another objective's: the reported value is minus the
    ELBO's one-sample estimate, the gradient that of ``_terms``' training objective
    (free bits, :class:`pvae.free_bits.FreeBits`; KL balancing,
    :class:`pvae.kl_balance.KLBalance`). Replayed from the second step of one structure
    on, as the lean ELBOs are. Subclasses give ``_terms(recorded) -> (elbo, objective)``
    and ``refusal``, the message (naming the option) for a guide with a site that is not
    reparameterised or is enumerated, raised as ``ValueError`` at the first loss."""

    refusal = "this ELBO needs every latent site of the guide reparameterised"

    def __init__(self, max_plate_nesting: float = float("inf")) -> None:
        super().__init__(num_particles=1, max_plate_nesting=max_plate_nesting)

    def _terms(self, recorded) -> tuple:
        raise NotImplementedError

    def differentiable_loss(self, model, guide, *args, **kwargs) -> torch.Tensor:
        return taped(self, model, guide, args, kwargs, self._loss)

    def _loss(self, model, guide, args, kwargs, tape) -> torch.Tensor:
        recorded = _record(model, guide, args, kwargs, tape)
        if recorded is None:
            raise ValueError(self.refusal)
        elbo, objective = self._terms(recorded)
        return -objective + (objective - elbo).detach()

    def _get_trace(self, model, guide, args, kwargs):  # ELBO's abstract hook, unused here
        raise NotImplementedError(f"{type(self).__name__} computes its loss from one "
                                  "recorded run")

    def loss(self, model, guide, *args, **kwargs) -> float:
        """Minus the ELBO (nats), one-sample estimate."""
        with torch.no_grad():
            return self.differentiable_loss(model, guide, *args, **kwargs).item()

    def loss_and_grads(self, model, guide, *args, **kwargs) -> float:
        loss = self.differentiable_loss(model, guide, *args, **kwargs)
        loss.backward()
        return loss.item()
