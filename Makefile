# Two commands do all the set-up on a fresh machine: `make demo` and `make test`.
PYTHON ?= python3
VENV   ?= .venv
PY     := $(VENV)/bin/python
# The exact versions CI tests (requirements.lock, written by `make lock`). To move to newer ones:
# `make install CONSTRAINTS=` in a fresh venv, run the tests, then `make lock` and commit the lock.
CONSTRAINTS ?= -c requirements.lock
IMAGE_HAS ?= torch torchvision numpy pandas pyarrow

.PHONY: install demo test test-slow lock wheelhouse offline-check clean

install: $(VENV)/.installed

$(VENV)/.installed: pyproject.toml requirements.lock
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install -q --upgrade pip
	$(PY) -m pip install -q -e '.[test]' $(CONSTRAINTS)
	touch $@

demo: install
	$(PY) study/demo.py

test: install
	$(PY) -m pytest

test-slow: install
	$(PY) -m pytest -m slow

# Freeze the environment the tests ran in: every package, transitive ones and setuptools (torch
# requires it) too, at its exact version; pip itself is left to upgrade.
lock: install
	{ echo "# Exact versions CI tests; regenerate with make lock (docs/cluster.md, section 11)."; \
	  $(PY) -m pip freeze --all --exclude-editable --exclude pip; } > requirements.lock.partial
	mv requirements.lock.partial requirements.lock

# Wheels of what the project needs beyond an image that has IMAGE_HAS, at the locked versions (docs/cluster.md, section 11).
wheelhouse: install
	$(PY) -m tools.wheelhouse --image-has $(IMAGE_HAS)

# Install the wheelhouse offline into a fresh environment with only the image's packages; run a study there.
offline-check: install
	$(PY) -m tools.offline_check --wheelhouse wheelhouse --image-has $(IMAGE_HAS)

clean:
	rm -rf $(VENV) wheelhouse mlruns mlflow.db mlartifacts checkpoints nce_runs .pytest_cache
