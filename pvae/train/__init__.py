"""The one training loop (:func:`fit`) and its parts.

- :mod:`pvae.train.loop`: :func:`fit`, the epochs;
- :mod:`pvae.train.step`: one optimisation step (:class:`Step`);
- :mod:`pvae.train.data`: the training data (:class:`TrainingData`), tensors or a ``Dataset``;
- :mod:`pvae.train.state`: the saved state (optimiser, random streams, history);
- :mod:`pvae.train.checks`: every check made before any work;
- :mod:`pvae.train.schedules`: :func:`kl_weight` and :func:`learning_rate`;
- :mod:`pvae.train.history`: :class:`History`, one row per epoch;
- :mod:`pvae.train.failure`: the error raised when training turns non-finite;
- :mod:`pvae.train.logging`: what each epoch reports to TensorBoard (``fit(logger=...)``).
"""

from pvae.batching import as_batch_tensors, num_batches  # noqa: F401  (importable here before)
from pvae.elbos import ELBO_NAMES, ELBOS, LatentScale, make_elbo  # noqa: F401  (same)
from pvae.train.checks import check_elbo, check_options, resume_record
from pvae.train.data import TrainingData
from pvae.train.history import History
from pvae.train.loop import CHECKPOINT, fit
from pvae.train.schedules import Schedule, kl_weight, learning_rate
from pvae.train.state import TrainState
from pvae.train.step import Step

__all__ = ["CHECKPOINT", "History", "Schedule", "Step", "TrainState", "TrainingData", "check_elbo",
           "check_options", "fit", "kl_weight", "learning_rate", "resume_record"]
