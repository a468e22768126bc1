"""The ``evaluate`` section of a run's config, and how many test points it scores.

The importance-sampled log-likelihood costs K decoder passes per data point: on
all 10,000 test images of Fashion-MNIST at K = 200, four times the conv VAE's
whole training on 2 CPU cores. A run therefore scores a reproducible random
subset of the test points by default (at most :data:`DEFAULT_TEST_POINTS`,
chosen with :data:`pvae.evaluate.SUBSET_SEED`, the same subset for every run
on the same data) and reports the estimate's standard error; ``test_points:
all`` scores every point.
"""

from __future__ import annotations

from typing import Annotated, Any, Literal, Optional, Union

from pydantic import BeforeValidator, Field

from pvae.config_base import _Section
from pvae.config_errors import ConfigError

#: Test points a run's log-likelihood scores by default (fewer when the split is
#: smaller). Chosen so that the evaluation of every shipped config costs no more
#: than its training (benchmarks/RESULTS.md): its standard error is then about
#: 0.5 nats on MNIST, where test points' log-likelihoods spread by about 25.
DEFAULT_TEST_POINTS = 2000

ALL = "all"


def check_points(value: Any, key: str = "config key 'evaluate.test_points'") -> Any:
    """``value`` if it is a number of points (a positive int), ``"all"`` or ``None``;
    else :class:`ConfigError` naming ``key``, the value and what is allowed."""
    if value is None or value == ALL:
        return value
    if isinstance(value, int) and not isinstance(value, bool) and value >= 1:
        return value
    null = ("" if key.startswith("--") else
            f", or null (the default: a random {DEFAULT_TEST_POINTS} of them, or all if fewer)")
    raise ConfigError(f"{key} must be a positive whole number of points, 'all'{null}; "
                      f"got {value!r}")


def points_to_score(setting: Union[int, str, None], available: int,
                    key: str = "config key 'evaluate.test_points'") -> int:
    """How many of ``available`` points to score for the setting ``setting``: ``None``,
    at most :data:`DEFAULT_TEST_POINTS`; ``"all"``, every one; an int, that many.

    Raises
    ------
    ConfigError
        A setting that is not a positive int, ``"all"`` or ``None``, or more points
        than ``available`` (the message names ``key`` and the split's size).
    """
    check_points(setting, key)
    if setting is None:
        return min(DEFAULT_TEST_POINTS, available)
    if setting == ALL:
        return available
    if setting > available:
        raise ConfigError(f"{key} is {setting}, but the split has only {available} points; "
                          f"ask for at most {available}, or 'all'")
    return setting


class EvalConfig(_Section):
    """The ``evaluate`` section: the test evaluation after training."""

    num_samples: int = Field(100, ge=1, description="importance samples for the test "
                                                    "log-likelihood after training")
    test_points: Annotated[Optional[Union[int, Literal["all"]]],
                           BeforeValidator(check_points)] = Field(
        None, description=f"test points the log-likelihood scores, a random subset the same "
                          f"for every run (with its standard error): a number, 'all', or "
                          f"null for at most {DEFAULT_TEST_POINTS}, so that evaluating costs "
                          f"no more than training")

    # -- sequences: an anomaly series' windows --------------------------------------------------
    anomaly_samples: int = Field(10, ge=1, description="anomaly series: samples of the ELBO "
                                                       "per scored window")
