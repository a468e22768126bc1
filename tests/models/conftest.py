"""Fixtures of the model tests: a smaller slice of the binarised digits."""

import pytest


@pytest.fixture
def x(binary_digits):
    return binary_digits.train.x[:48]
