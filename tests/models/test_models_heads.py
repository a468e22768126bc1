"""Decoder and encoder outputs are checked against what the likelihood and the latent
sites need (``pvae.models.heads``), naming both shapes."""

import pytest
import torch
from helpers import svi_steps
from torch import nn

import pvae


# -- custom networks' outputs, checked at their first call -------------------------------------
class _Dec(nn.Module):
    def __init__(self, z_dim, widths):
        super().__init__()
        self.heads = nn.ModuleList(nn.Linear(z_dim, w) for w in widths)

    def forward(self, z):
        out = tuple(h(z) for h in self.heads)
        return out[0] if len(out) == 1 else out


def _x200():
    return torch.randn(16, 200)


@pytest.mark.parametrize("call", ["fit", "svi", "sample", "reconstruct"])
def test_a_decoder_of_the_wrong_width_is_named_with_both_shapes(call):
    vae = pvae.VAE(200, 4, likelihood="gaussian", decoder=_Dec(4, [199]))
    x = _x200()
    rows = 3 if call == "sample" else 16
    message = (rf"decoder returned one tensor of shape \({rows}, 199\), but the 'gaussian' "
               r"likelihood .*for data of shape \(200,\) needs one tensor of shape \(N, 200\)")
    with pytest.raises(ValueError, match=message):
        if call == "fit":
            pvae.fit(vae, x, epochs=1, batch_size=16, progress=False)
        elif call == "svi":
            svi_steps(vae, x, 1)
        elif call == "sample":
            vae.sample(3)
        else:
            vae.reconstruct(x)


def test_one_tensor_where_the_likelihood_needs_two():
    vae = pvae.VAE(200, 4, likelihood="gaussian", likelihood_kwargs={"scale": "predicted"},
                   decoder=_Dec(4, [200]))
    with pytest.raises(ValueError, match=r"returned one tensor of shape \(16, 200\), but the "
                       r"'gaussian' likelihood \(scale='predicted'\).*needs a tuple of 2 "
                       r"tensors of shapes \(N, 200\), \(N, 200\)"):
        pvae.fit(vae, _x200(), epochs=1, batch_size=16, progress=False)
    right = pvae.VAE(200, 4, likelihood="gaussian", likelihood_kwargs={"scale": "predicted"},
                     decoder=_Dec(4, [200, 200]))
    assert right.sample(5).shape == (5, 200)


def test_one_output_per_data_point_is_refused_not_broadcast():
    vae = pvae.VAE(200, 4, likelihood="gaussian", decoder=_Dec(4, [1]))
    with pytest.raises(ValueError, match=r"returned one tensor of shape \(5, 1\).* needs one "
                                         r"tensor of shape \(N, 200\)"):
        vae.sample(5)  # was shape (5, 1)
    with pytest.raises(ValueError, match=r"returned one tensor of shape \(16, 1\)"):
        pvae.fit(vae, _x200(), epochs=1, batch_size=16, progress=False)


def test_categorical_and_cvae_decoders_are_checked_too():
    cat = pvae.VAE(6, 2, likelihood="categorical", likelihood_kwargs={"num_levels": 4},
                   decoder=_Dec(2, [24]))
    with pytest.raises(ValueError, match=r"one tensor of shape \(3, 24\).*needs one tensor of "
                                         r"shape \(N, 6, 4\)"):
        cat.sample(3)
    cvae = pvae.CVAE(200, 4, num_classes=3, likelihood="gaussian", decoder=_Dec(7, [199]))
    with pytest.raises(ValueError, match=r"decoder returned one tensor of shape \(2, 199\)"):
        cvae.sample(2, y=1)


class _Enc(nn.Module):
    def __init__(self, x_dim, out):
        super().__init__()
        self.lin, self.out = nn.Linear(x_dim, 8), out

    def forward(self, x, *c):
        h = self.lin(x)
        if self.out == "one":
            return h[:, :4]
        return h[:, : self.out], torch.exp(h[:, : self.out])


@pytest.mark.parametrize("out, match", [
    ("one", r"encoder returned one tensor of shape \(16, 4\).*two tensors of shape \(16, 4\)"),
    (3, r"encoder returned a tuple of 2 \(\(16, 3\), \(16, 3\)\).*shape \(16, 4\)"),
])
def test_encoder_outputs_are_checked(out, match):
    vae = pvae.VAE(200, 4, likelihood="gaussian", encoder=_Enc(200, out))
    with pytest.raises(ValueError, match=match):
        pvae.fit(vae, _x200(), epochs=1, batch_size=16, progress=False)
    with pytest.raises(ValueError, match=match):
        vae.encode(_x200())
    cvae = pvae.CVAE(200, 4, num_classes=3, likelihood="gaussian", encoder=_Enc(200, out))
    with pytest.raises(ValueError, match=match):
        cvae.encode(_x200(), torch.zeros(16, dtype=torch.long))
