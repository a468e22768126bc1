"""Encoder and decoder building blocks.

Encoders map x (shape ``(..., *x_shape)``) to ``(z_loc, z_scale)``; decoders map
z (shape ``(..., z_dim)``) to a flat tensor of ``out_dim`` numbers per data
point, which a likelihood splits into its parameters. Any leading batch
dimensions (data, particles) are carried through.
"""

from __future__ import annotations

import math
from typing import Callable, Sequence

import torch
import torch.nn.functional as F
from torch import nn

_MIN_SCALE = 1e-4
_ACTIVATIONS: dict[str, Callable[[], nn.Module]] = {
    "relu": nn.ReLU,
    "softplus": nn.Softplus,
    "tanh": nn.Tanh,
    "elu": nn.ELU,
    "gelu": nn.GELU,
}


def activation(name: str) -> nn.Module:
    """An activation module by name (``relu``, ``softplus``, ``tanh``, ``elu``, ``gelu``)."""
    if name not in _ACTIVATIONS:
        raise ValueError(f"unknown activation {name!r}; valid: {', '.join(_ACTIVATIONS)}")
    return _ACTIVATIONS[name]()


#: Normalisations of :class:`MLP`'s hidden layers: none, or per-point layer normalisation.
NORMS = ("none", "layer")


class MLP(nn.Sequential):
    """Linear layers with an activation between them (none after the last).

    ``norm="layer"`` puts ``LayerNorm`` (Ba et al. 2016) between each hidden linear
    layer and its activation. It normalises each data point's hidden units by their
    own mean and spread, so, unlike batch normalisation, no point's output depends
    on the other points of its batch: per-point ELBOs, minibatch scaling, K-sample
    evaluation and data-parallel training stay exact. ``ValueError`` for another name.
    """

    def __init__(self, in_dim: int, hidden_dims: Sequence[int], out_dim: int, act: str = "relu",
                 norm: str = "none"):
        if norm not in NORMS:
            raise ValueError(f"norm must be one of {', '.join(map(repr, NORMS))}, got {norm!r}")
        dims = [in_dim, *hidden_dims, out_dim]
        layers: list[nn.Module] = []
        for i, (a, b) in enumerate(zip(dims[:-1], dims[1:])):
            layers.append(nn.Linear(a, b))
            if i < len(dims) - 2:
                if norm == "layer":
                    layers.append(nn.LayerNorm(b))
                layers.append(activation(act))
        super().__init__(*layers)

    def with_hidden(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """``(output, h)``: the output and the last hidden layer's activations ``h``
        (the input itself for an MLP without hidden layers), e.g. the context of an
        IAF posterior (:mod:`pvae.flows`)."""
        *body, last = list(self)
        for layer in body:
            x = layer(x)
        return last(x), x

    @property
    def hidden_dim(self) -> int:
        """Width of ``h`` in :meth:`with_hidden`."""
        return [m for m in self if isinstance(m, nn.Linear)][-1].in_features


def cat_broadcast(*tensors: torch.Tensor) -> torch.Tensor:
    """Concatenate along the last dim after broadcasting all other dims.

    Lets an enumerated label of shape ``(C, 1, C)`` meet data of shape ``(B, D)``.
    """
    batch = torch.broadcast_shapes(*(t.shape[:-1] for t in tensors))
    return torch.cat([t.expand(*batch, t.shape[-1]) for t in tensors], -1)


def one_hot(y: torch.Tensor, num_classes: int, dtype=torch.float32) -> torch.Tensor:
    """Integer labels (any float holding whole numbers too) -> one-hot vectors."""
    return F.one_hot(y.long(), num_classes).to(dtype)


def split_loc_scale(out: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Split ``(..., 2 * d)`` into a location and a positive (softplus) scale."""
    loc, raw = out.chunk(2, dim=-1)
    return loc, F.softplus(raw) + _MIN_SCALE


class MLPEncoder(nn.Module):
    """x -> (z_loc, z_scale) through an MLP on the flattened input."""

    def __init__(self, x_shape: Sequence[int], z_dim: int, hidden_dims: Sequence[int] = (400,),
                 act: str = "relu"):
        super().__init__()
        self.x_shape = tuple(x_shape)
        self.net = MLP(math.prod(self.x_shape), hidden_dims, 2 * z_dim, act)
        self.hidden_dim = self.net.hidden_dim

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        return self.with_hidden(x)[:2]

    def with_hidden(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """``(z_loc, z_scale, h)``, ``h`` the last hidden layer (width :attr:`hidden_dim`)."""
        batch = x.shape[: x.dim() - len(self.x_shape)]
        out, h = self.net.with_hidden(x.reshape(*batch, -1))
        return (*split_loc_scale(out), h)


class MLPDecoder(nn.Module):
    """z -> ``out_dim`` numbers through an MLP."""

    def __init__(self, z_dim: int, hidden_dims: Sequence[int], out_dim: int, act: str = "relu"):
        super().__init__()
        self.net = MLP(z_dim, hidden_dims, out_dim, act)

    def forward(self, z: torch.Tensor) -> torch.Tensor:
        return self.net(z)


def _down(size: int, layers: int) -> int:
    for _ in range(layers):
        size = (size + 1) // 2  # conv k=3, s=2, p=1
    return size


class ConvEncoder(nn.Module):
    """Images ``(C, H, W)`` -> (z_loc, z_scale): stride-2 convolutions, then a linear layer."""

    def __init__(self, x_shape: Sequence[int], z_dim: int, channels: Sequence[int] = (32, 64),
                 act: str = "relu"):
        super().__init__()
        c, h, w = x_shape
        self.x_shape = (c, h, w)
        layers: list[nn.Module] = []
        for cout in channels:
            layers += [nn.Conv2d(c, cout, 3, stride=2, padding=1), activation(act)]
            c = cout
        self.conv = nn.Sequential(*layers)
        flat = c * _down(h, len(channels)) * _down(w, len(channels))
        self.head = nn.Linear(flat, 2 * z_dim)
        self.hidden_dim = flat

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        return self.with_hidden(x)[:2]

    def with_hidden(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """``(z_loc, z_scale, h)``, ``h`` the flattened convolutional features."""
        batch = x.shape[:-3]
        h = self.conv(x.reshape(-1, *self.x_shape)).flatten(1)
        out = self.head(h)
        return (*split_loc_scale(out.reshape(*batch, -1)), h.reshape(*batch, -1))


class ConvDecoder(nn.Module):
    """z -> ``out_channels`` maps of size ``(H, W)``, returned flat (channel-major).

    A linear layer to a small map, then stride-2 transposed convolutions that
    double its size, then a crop to ``(H, W)``.
    """

    def __init__(self, z_dim: int, x_shape: Sequence[int], out_channels: int,
                 channels: Sequence[int] = (64, 32), act: str = "relu"):
        super().__init__()
        _, h, w = x_shape
        self.hw = (h, w)
        self.h0, self.w0 = _down(h, len(channels)), _down(w, len(channels))
        self.c0 = channels[0]
        self.fc = nn.Sequential(nn.Linear(z_dim, self.c0 * self.h0 * self.w0), activation(act))
        layers: list[nn.Module] = []
        c = self.c0
        for cout in list(channels[1:]) + [channels[-1]]:
            layers += [nn.ConvTranspose2d(c, cout, 4, stride=2, padding=1), activation(act)]
            c = cout
        layers.append(nn.Conv2d(c, out_channels, 3, padding=1))
        self.deconv = nn.Sequential(*layers)

    def forward(self, z: torch.Tensor) -> torch.Tensor:
        batch = z.shape[:-1]
        h = self.fc(z.reshape(-1, z.shape[-1])).reshape(-1, self.c0, self.h0, self.w0)
        out = self.deconv(h)[..., : self.hw[0], : self.hw[1]]
        return out.reshape(*batch, -1)
