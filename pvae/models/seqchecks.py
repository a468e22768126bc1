"""Checks and clean-up of padded sequence data ``(x, lengths)`` for the sequence model.

Every rule raises before any work, naming the problem and the fix. Values
beyond a sequence's length (padding) may be anything, NaN and garbage ids
included: they are never checked and :func:`clean` replaces them before any
computation reads them (:func:`pvae.models.seqdist.clean`).
"""

from __future__ import annotations

import operator
from typing import Optional

import torch

from pvae.models.seqdist import step_mask

_INTEGER = (torch.uint8, torch.int8, torch.int16, torch.int32, torch.int64)


def _whole(t: torch.Tensor) -> bool:
    return bool((t == t.round()).all()) if t.is_floating_point() else True


def _check_lengths_type(lengths, n: int) -> None:
    """The checks of :func:`check_lengths` that read no value: type, shape, dtype."""
    if not isinstance(lengths, torch.Tensor):
        raise TypeError(f"lengths must be a tensor or array of shape ({n},), "
                        f"got {type(lengths).__name__}")
    if lengths.dim() != 1 or lengths.shape[0] != n:
        raise ValueError(f"lengths has shape {tuple(lengths.shape)}, but x has {n} sequences: "
                         f"pass one length per sequence, shape ({n},)")
    if lengths.dtype == torch.bool or lengths.is_complex() or not (
            lengths.is_floating_point() or lengths.dtype in _INTEGER):
        raise ValueError(f"lengths has dtype {lengths.dtype}; pass whole numbers (int64)")


def check_lengths(lengths, n: int, num_steps: int) -> None:
    """Raise ``ValueError`` (``TypeError`` for a non-tensor) unless ``lengths`` holds ``n``
    whole numbers in ``1..num_steps``."""
    _check_lengths_type(lengths, n)
    if lengths.is_floating_point() and not (torch.isfinite(lengths).all() and _whole(lengths)):
        raise ValueError("lengths must be whole numbers (the number of real steps of each "
                         "sequence), found NaN, infinite or fractional values")
    if n and (lengths.min() < 1 or lengths.max() > num_steps):
        bad = lengths.min() if lengths.min() < 1 else lengths.max()
        raise ValueError(f"a length of {bad:g} is outside 1..{num_steps} (x is padded to "
                         f"{num_steps} steps): every sequence needs at least one step and at "
                         "most the padded size; drop empty sequences or pad x further")


def _check_shape(x: torch.Tensor, vocab_size: Optional[int], x_dim: Optional[int]) -> None:
    if vocab_size is not None:
        if x.dim() != 2:
            raise ValueError(
                f"token sequences x must have shape (N, T) (integer ids), got "
                f"{tuple(x.shape)}; for real-valued series build SequenceVAE(x_dim=D, ...)")
    else:
        if x.dim() == 2:
            raise ValueError(
                f"x has shape {tuple(x.shape)}, but SequenceVAE(x_dim={x_dim}) takes float "
                f"series of shape (N, T, {x_dim}); for a univariate series pass x[..., None], "
                "for token ids build SequenceVAE(vocab_size=V, ...)")
        if x.dim() != 3 or x.shape[2] != x_dim:
            raise ValueError(f"x has shape {tuple(x.shape)}, but the model takes series of "
                             f"shape (N, T, {x_dim}) (x_dim={x_dim})")
    if x.shape[0] == 0 or x.shape[1] == 0:
        raise ValueError(f"x is empty (shape {tuple(x.shape)}); pass at least one sequence "
                         "of at least one step")


def check_excluded_ids(excluded_ids, vocab_size: Optional[int]) -> tuple[int, ...]:
    """``excluded_ids`` as a sorted tuple of ints; ``ValueError`` unless they are distinct
    whole ids in ``0..vocab_size-1`` that leave at least one id, for token models only."""
    ids = tuple(excluded_ids or ())
    if not ids:
        return ()
    if vocab_size is None:
        raise ValueError("excluded_ids are for token models (SequenceVAE(vocab_size=V, ...)); "
                         "a series model has no ids to exclude")
    try:
        if any(isinstance(i, bool) for i in ids):
            raise TypeError
        ids = tuple(operator.index(i) for i in ids)
    except TypeError:
        raise ValueError(f"excluded_ids must be whole token ids, got {list(ids)!r}") from None
    if min(ids) < 0 or max(ids) >= vocab_size:
        raise ValueError(f"excluded_ids {list(ids)} must lie in the vocabulary 0..{vocab_size - 1}")
    if len(set(ids)) != len(ids):
        raise ValueError(f"excluded_ids {list(ids)} name an id twice; give each once")
    if len(ids) == vocab_size:
        raise ValueError("excluded_ids exclude every id; leave at least one id the data holds")
    return tuple(sorted(ids))


def check_sequence_shapes(x, lengths, *, vocab_size: Optional[int],
                          x_dim: Optional[int]) -> None:
    """The checks of :func:`check_sequences` that read no tensor value: types, shapes and
    the lengths' dtype (``ValueError`` / ``TypeError`` with the same messages)."""
    if not isinstance(x, torch.Tensor):
        raise TypeError(f"x must be a tensor or array, got {type(x).__name__}")
    _check_shape(x, vocab_size, x_dim)
    _check_lengths_type(lengths, x.shape[0])


def check_sequences(x, lengths, *, vocab_size: Optional[int], x_dim: Optional[int],
                    likelihood=None, excluded_ids: tuple = ()) -> None:
    """Raise ``ValueError`` / ``TypeError`` unless ``(x, lengths)`` is padded sequence data.

    Token data (``vocab_size`` set): x of shape ``(N, T)`` with whole ids in
    ``0..vocab_size-1``, none of ``excluded_ids``, on the real steps. Series: x of
    shape ``(N, T, x_dim)``, finite on the real steps, and in ``likelihood``'s
    support there when it is given.
    """
    check_sequence_shapes(x, lengths, vocab_size=vocab_size, x_dim=x_dim)
    check_lengths(lengths, x.shape[0], x.shape[1])
    real = x[step_mask(lengths.long(), x.shape[1])]
    if real.is_floating_point() and not torch.isfinite(real).all():
        bad = int((~torch.isfinite(real)).sum())
        raise ValueError(f"x holds {bad} NaN or infinite value(s) within the sequences' lengths "
                         "(padding beyond a length may hold anything); remove or impute them")
    if vocab_size is not None:
        if real.is_complex() or not (real.is_floating_point() or real.dtype in _INTEGER
                                     or real.dtype == torch.bool):
            raise ValueError(f"token ids have dtype {x.dtype}; pass integer ids (int64)")
        if not _whole(real):
            raise ValueError("token ids must be whole numbers 0..vocab_size-1, found fractions; "
                             "pass integer ids")
        if real.numel() and (real.min() < 0 or real.max() >= vocab_size):
            bad = real.min() if real.min() < 0 else real.max()
            raise ValueError(f"token id {bad:g} is outside the vocabulary 0..{vocab_size - 1} "
                             f"(vocab_size={vocab_size}); map unknown words to an id of your "
                             "own or build the model with a larger vocab_size")
        hit = [i for i in excluded_ids if bool((real == i).any())]
        if hit:
            raise ValueError(f"token id {hit[0]} is excluded by this model (excluded_ids="
                             f"{tuple(excluded_ids)}: ids it gives probability 0, such as a "
                             "Vocabulary's <pad>, <bos>, <eos>) but appears within the "
                             "sequences' lengths; fix the lengths or the encoding, or build the "
                             "model without excluding it")
    elif likelihood is not None:
        likelihood.check_support(real)


def positive(name: str, value) -> int:
    """``value`` as an int, or ``ValueError`` naming ``name`` unless it is a positive int."""
    try:
        v = operator.index(value)
    except TypeError:
        v = 0
    if isinstance(value, bool) or v < 1:
        raise ValueError(f"{name} must be a positive int, got {value!r}")
    return v
