"""The likelihood base class and the name -> class registry."""

from __future__ import annotations

import inspect
from typing import ClassVar, Sequence, Union

import pyro.distributions as dist
import torch
from torch import nn

Params = Union[torch.Tensor, tuple]

_REGISTRY: dict[str, type["Likelihood"]] = {}
_MIN_SCALE = 1e-3


def register(cls: type["Likelihood"]) -> type["Likelihood"]:
    """Class decorator: make ``cls`` available under ``cls.name``."""
    _REGISTRY[cls.name] = cls
    return cls


def names() -> list[str]:
    """The registered likelihood names."""
    return sorted(_REGISTRY)


def is_registered(likelihood: "Likelihood") -> bool:
    """Whether ``likelihood``'s class is the one registered under its name, so that
    ``get(likelihood.name, **likelihood.hparams())`` rebuilds it (save and load)."""
    return _REGISTRY.get(likelihood.name) is type(likelihood)


def get(name: str, **kwargs) -> "Likelihood":
    """A new likelihood instance by name; ``kwargs`` go to its constructor."""
    if name not in _REGISTRY:
        raise ValueError(
            f"unknown likelihood {name!r}; valid names are: {', '.join(names())}"
        )
    cls = _REGISTRY[name]
    valid = [p for p in inspect.signature(cls.__init__).parameters if p != "self"]
    unknown = sorted(set(kwargs) - set(valid))
    if unknown:
        raise ValueError(
            f"likelihood {name!r} has no option {', '.join(map(repr, unknown))}; "
            f"its options are: {', '.join(valid) or 'none'}"
        )
    return cls(**kwargs)


def resolve(spec: Union[str, "Likelihood"], **kwargs) -> "Likelihood":
    """A likelihood from a name or an instance (returned as is)."""
    if isinstance(spec, Likelihood):
        if kwargs:
            raise ValueError("likelihood options go to the constructor when passing an instance")
        return spec
    if isinstance(spec, str):
        return get(spec, **kwargs)
    raise TypeError(
        f"likelihood must be a name ({', '.join(names())}) or a pvae.likelihoods.Likelihood, "
        f"got {type(spec).__name__}"
    )


def _describe_range(x: torch.Tensor) -> str:
    return f"min {x.min().item():.4g}, max {x.max().item():.4g}"


class Likelihood(nn.Module):
    """Base class: decoder output -> distribution of x, plus a support check.

    Subclasses set :attr:`name` and :attr:`num_params`, implement
    :meth:`distribution` (from a tuple of parameter tensors) and
    :meth:`_support_problem`, and may override :meth:`mean`.
    """

    name: ClassVar[str] = ""
    #: How many numbers per feature a default decoder must produce.
    num_params: int = 1
    #: Whether x is discrete (log p(x) is a log probability, not a log density).
    discrete: ClassVar[bool] = False

    def __init__(self) -> None:
        super().__init__()
        self.x_shape: tuple[int, ...] = ()

    # -- set-up -------------------------------------------------------------
    def setup(self, x_shape: Sequence[int]) -> "Likelihood":
        """Bind to a data shape (creates per-feature parameters where needed)."""
        self.x_shape = tuple(int(s) for s in x_shape)
        return self

    @property
    def event_dim(self) -> int:
        return len(self.x_shape)

    # -- decoder output -> distribution ---------------------------------------
    def unflatten(self, out: torch.Tensor) -> Params:
        """Split a flat decoder output ``(..., num_params * prod(x_shape))``."""
        out = out.reshape(*out.shape[:-1], self.num_params, *self.x_shape)
        if self.num_params == 1:
            return out.squeeze(-self.event_dim - 1)
        return tuple(out.unbind(-self.event_dim - 1))

    def _as_tuple(self, params: Params) -> tuple:
        return params if isinstance(params, tuple) else (params,)

    def forward(self, params: Params) -> dist.Distribution:
        """The distribution of x (event shape ``x_shape``) given decoder output."""
        return self.distribution(*self._as_tuple(params)).to_event(self.event_dim)

    def distribution(self, *params: torch.Tensor) -> dist.Distribution:  # pragma: no cover
        raise NotImplementedError

    def encoder_input(self, x: torch.Tensor) -> torch.Tensor:
        """How a default encoder sees the data (counts: log1p; levels: scaled to [0, 1])."""
        return x

    def mean(self, params: Params) -> torch.Tensor:
        """E[x | params], for plots and reconstructions."""
        return self.distribution(*self._as_tuple(params)).mean

    # -- data checks -----------------------------------------------------------
    def check_support(self, x: torch.Tensor) -> None:
        """Raise ``ValueError`` naming the problem and the fix if ``x`` is invalid."""
        x = torch.as_tensor(x)
        if not torch.is_floating_point(x) and x.dtype not in (
            torch.uint8, torch.int8, torch.int16, torch.int32, torch.int64, torch.bool
        ):
            raise ValueError(f"data has dtype {x.dtype}; pvae needs real numbers (float32)")
        if x.is_floating_point() and not torch.isfinite(x).all():
            bad = (~torch.isfinite(x)).sum().item()
            raise ValueError(
                f"data holds {bad} NaN or infinite value(s); remove or impute them before training"
            )
        problem = self._support_problem(x.float() if x.dtype == torch.bool else x)
        if problem:
            raise ValueError(f"likelihood {self.name!r}: data has {problem}")

    def _support_problem(self, x: torch.Tensor) -> str | None:
        return None

    def hparams(self) -> dict:
        """Constructor arguments that rebuild this likelihood (for save/load)."""
        return {}

    def extra_repr(self) -> str:
        """The data shape and the constructor arguments (:meth:`hparams`)."""
        return ", ".join([f"x_shape={self.x_shape}"]
                         + [f"{k}={v!r}" for k, v in self.hparams().items()])
