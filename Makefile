# The two commands a new user needs (see README.md). Both install first, so
# they work on a fresh machine with Python >= 3.10 and pip.
PYTHON ?= python3

.PHONY: demo test install install-dev

install:
	$(PYTHON) -m pip install -e .

install-dev:
	$(PYTHON) -m pip install -e '.[dev]'

# Train the default VAE on scikit-learn's embedded digits (no download, < 1 minute
# on 2 CPU cores) and write a run folder under runs/.
demo: install
	$(PYTHON) -m pvae train --config configs/digits.yaml

# The whole test suite (a few minutes on 2 CPU cores; no GPU, no network).
test: install-dev
	$(PYTHON) -m pytest
