"""The examples of the tutorials (docs/tutorials/) run as printed (tests/docs/examples.py
says how): a file of their own, so that a second test worker can take them."""

import pytest

from tests.docs.examples import PAGES, ROOT, run_page

pytestmark = pytest.mark.slow  # each page trains its runs


@pytest.mark.parametrize(
    "page", [p for p in PAGES if "tutorials" in p.parts], ids=lambda p: str(p.relative_to(ROOT))
)
def test_the_examples_of_a_page_run_as_printed(page, workdir, data, monkeypatch):
    run_page(page, data, monkeypatch)
