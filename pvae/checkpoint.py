"""Checkpoint files: written atomically, read without unpickling code.

Every file pvae writes (checkpoints, configs, metrics, figures, samples) goes
through :func:`atomic_write`, which also turns a full disk or a read-only folder
into a one-line :class:`WriteError` naming the path.

A checkpoint is a ``torch.save`` of plain containers and tensors::

    {"format": "pvae-checkpoint-1", "class": "VAE", "hparams": {...},
     "state_dict": {...}, "training": {...} (training checkpoints only)}

Files are written to a temporary name in the same folder and renamed over the
target (``os.replace`` is atomic), so a crash never leaves a half-written
checkpoint. They are read with ``torch.load(..., weights_only=True)``, which
refuses pickled Python objects: a checkpoint from a stranger cannot run code.
"""

from __future__ import annotations

import contextlib
import errno
import os
import pickle
import tempfile
from pathlib import Path
from typing import Any, Callable, Union

import torch

FORMAT = "pvae-checkpoint-1"
PathLike = Union[str, os.PathLike]


class CheckpointError(ValueError):
    """A checkpoint file that cannot be used (missing, corrupt, unsafe, mismatched)."""


class WriteError(OSError):
    """A file that could not be written: no space left, a read-only file system, no permission.

    Its message is one line naming the path and the fix; the command line prints it as is.
    """


#: errno values that mean "this place cannot take the file", with what to tell the user.
_WRITE_FAILURES = {
    errno.ENOSPC: "no space left on the device: free some disk space or write elsewhere",
    errno.EDQUOT: "the disk quota is exhausted: free some space or write elsewhere",
    errno.EROFS: "the file system is read-only: write to a writable folder",
    errno.EACCES: "permission denied: write to a folder you may write to",
    errno.EPERM: "operation not permitted: write to a folder you may write to",
}


@contextlib.contextmanager
def writing(path: PathLike):
    """Turn out-of-space and read-only OSErrors inside the block into a
    :class:`WriteError` naming ``path``; other errors pass through unchanged."""
    try:
        yield
    except WriteError:
        raise
    except OSError as e:
        why = _WRITE_FAILURES.get(e.errno)
        if why is None:
            raise
        raise WriteError(e.errno, f"cannot write {str(path)!r}: {why}") from None


def atomic_write(path: PathLike, write: Callable[[Any], None], mode: str = "wb") -> None:
    """Call ``write(file)`` on a temporary file next to ``path``, then rename it over ``path``.

    The rename is atomic, so readers see the old file or the new one, never a part,
    and a failed write (full disk, killed process) leaves no partial file behind.
    Temporary files a killed writer left behind are removed first (a run has one writer).

    Raises
    ------
    WriteError
        (an ``OSError``) when the disk is full or the folder is read-only or not
        writable; the message names ``path``.
    """
    path = Path(path)
    with writing(path):
        path.parent.mkdir(parents=True, exist_ok=True)
        for stale in path.parent.glob(f".{path.name}.*.tmp"):
            try:
                stale.unlink()
            except OSError:
                pass
        fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
        try:
            with os.fdopen(fd, mode) as f:
                write(f)
                f.flush()
                os.fsync(f.fileno())
            umask = os.umask(0)
            os.umask(umask)
            os.chmod(tmp, 0o666 & ~umask)  # mkstemp makes it private; give it the usual mode
            os.replace(tmp, path)
        except BaseException:
            if os.path.exists(tmp):
                os.unlink(tmp)
            raise


def atomic_save(obj: Any, path: PathLike) -> None:
    """``torch.save(obj, path)``, atomically (see :func:`atomic_write`)."""
    atomic_write(path, lambda f: torch.save(obj, f))


def copy_file(src: PathLike, dst: PathLike) -> None:
    """Copy the file ``src`` to ``dst``, atomically (see :func:`atomic_write`)."""
    with open(src, "rb") as f:
        data = f.read()
    atomic_write(dst, lambda out: out.write(data), mode="wb")


def atomic_write_text(path: PathLike, text: str) -> None:
    """Write a text file, atomically (see :func:`atomic_write`)."""
    atomic_write(path, lambda f: f.write(text), mode="w")


def model_record(model) -> dict:
    """The plain-data description of a pvae model: class, hparams, weights.

    ``rebuildable`` is False, and ``custom`` says why, when the model has parts
    that a file of plain data cannot rebuild (custom networks, a user-defined
    likelihood): ``pvae.load`` then needs the model built as before (``model=``).
    """
    custom = model.custom_parts()
    return {
        "format": FORMAT,
        "class": type(model).__name__,
        "hparams": model.hparams,
        "rebuildable": not custom,
        "custom": custom,
        "state_dict": {k: v.detach().cpu() for k, v in model.state_dict().items()},
    }


def save_model(model, path: PathLike) -> None:
    atomic_save(model_record(model), path)


def read(path: PathLike) -> dict:
    """Read and sanity-check a checkpoint file; clear errors for every failure."""
    path = Path(path)
    if not path.exists():
        raise FileNotFoundError(f"no checkpoint at {str(path)!r}; check the path")
    try:
        record = torch.load(path, map_location="cpu", weights_only=True)
    except pickle.UnpicklingError as e:
        if "Unsupported global" in str(e) or "GLOBAL" in str(e):
            raise CheckpointError(
                f"refusing to load {str(path)!r}: it contains pickled Python objects, not only "
                "tensors and plain values, and loading it could run arbitrary code. pvae only "
                "loads checkpoints it wrote (model.save / pvae.fit)"
            ) from None
        reason = str(e).split("WeightsUnpickler error:")[-1].strip().splitlines()[0]
        raise CheckpointError(
            f"{str(path)!r} is not a readable pvae checkpoint: it is truncated, corrupt or a "
            f"different kind of file ({reason}); use an earlier checkpoint or retrain"
        ) from None
    except IsADirectoryError:
        raise CheckpointError(f"{str(path)!r} is a folder; pass the checkpoint file inside it "
                              "(e.g. checkpoint.pt)") from None
    except Exception as e:  # noqa: BLE001 - any failure to parse means the same to the user
        raise CheckpointError(
            f"{str(path)!r} is not a readable pvae checkpoint: it is truncated, corrupt or a "
            f"different kind of file ({type(e).__name__}: {e}); use an earlier checkpoint "
            "or retrain"
        ) from None
    if not isinstance(record, dict) or record.get("format") != FORMAT:
        raise CheckpointError(
            f"{str(path)!r} is not a pvae checkpoint (no {FORMAT!r} format tag); "
            "pvae.load reads files written by model.save or pvae.fit"
        )
    kinds = {"class": str, "hparams": dict, "state_dict": dict}
    broken = [k for k, kind in kinds.items() if not isinstance(record.get(k), kind)]
    if broken:
        raise CheckpointError(
            f"{str(path)!r} is a damaged pvae checkpoint (its {', '.join(broken)} entry is "
            "missing or malformed); use an earlier checkpoint or retrain"
        )
    return record


def saved_settings(model, hparams: dict) -> dict:
    """A file's settings as ``model``'s version reads them: an option added after the
    file was saved is missing from it and takes the value ``model`` records for the
    class's default (``saved_hparams``), so an older file still loads and resumes."""
    fill = getattr(type(model), "saved_hparams", None)
    if fill is None:
        return dict(hparams)
    filled = fill(dict(hparams))
    return {**{k: model.hparams[k] for k in filled if k not in hparams and k in model.hparams},
            **hparams}


def restore_weights(model, record: dict, path: PathLike) -> None:
    """Load ``record``'s weights into ``model``, refusing a different model."""
    if record["class"] != type(model).__name__:
        raise CheckpointError(
            f"{str(path)!r} holds a {record['class']}, not a {type(model).__name__}; "
            "load it into the model it was saved from"
        )
    saved = saved_settings(model, record["hparams"])
    if saved != model.hparams:
        diff = {
            k: (saved.get(k), model.hparams.get(k))
            for k in set(saved) | set(model.hparams)
            if saved.get(k) != model.hparams.get(k)
        }
        raise CheckpointError(
            f"{str(path)!r} is from a differently configured model "
            f"(saved vs this: {diff}); build the model with the saved settings"
        )
    try:
        model.load_state_dict(record["state_dict"])
    except RuntimeError as e:
        raise CheckpointError(
            f"{str(path)!r} does not fit this model's networks: {e}"
        ) from None
