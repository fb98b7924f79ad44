"""The docs tests' fixtures: the synthetic ~/data and a working folder (tests/docs/examples.py)."""

from tests.docs.examples import data, workdir  # noqa: F401 (fixtures for the tests here)
