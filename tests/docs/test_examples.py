"""The examples of README.md and of the manual's pages outside tutorials/ run as printed
(tests/docs/examples.py says how), and no bash line is left out without a reason."""

import pytest

from tests.docs.examples import PAGES, ROOT, SKIP, blocks, commands, run_page

pytestmark = pytest.mark.slow  # each page trains its runs


@pytest.mark.parametrize(
    "page", [p for p in PAGES if "tutorials" not in p.parts], ids=lambda p: str(p.relative_to(ROOT))
)
def test_the_examples_of_a_page_run_as_printed(page, workdir, data, monkeypatch):
    run_page(page, data, monkeypatch)


def test_every_bash_line_is_a_command_the_tests_run_or_says_why_not():
    for page in PAGES:
        for lang, body in blocks(page):
            if lang != "bash" or body.lstrip().startswith(SKIP):
                continue
            for line in commands(body):
                assert line.startswith("cifarlab "), f"{page.name}: {line!r} is not run: say why"
    for page in PAGES:
        for _, body in blocks(page):
            if body.lstrip().startswith(SKIP):
                assert len(body.lstrip()[len(SKIP) :].split("\n")[0].strip()) > 5, page
