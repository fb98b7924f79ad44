"""Figures count epochs in whole numbers; the HTML report wraps long commands."""

from __future__ import annotations

import re

from cifarlab.report import figures as plots


def css_rules(page: str) -> list[tuple[str, dict[str, str]]]:
    """The (selector, declarations) of the page's <style> element, in order."""
    style = re.search(r"<style>(.*?)</style>", page, re.S)
    assert style, "the page has no <style>"
    rules = []
    for selectors, body in re.findall(r"([^{}]+)\{([^}]*)\}", style.group(1)):
        pairs = (d.split(":", 1) for d in body.split(";") if ":" in d)
        decls = {k.strip(): v.strip() for k, v in pairs}
        rules += [(sel.strip(), decls) for sel in selectors.split(",")]
    return rules


def computed(rules, path: list[str], prop: str) -> str | None:
    """The value of an inherited CSS property for the element at `path` (its tag and its
    ancestors' tags, outermost first), from type and descendant selectors."""

    def matches(selector: str, here: list[str]) -> bool:
        *ancestors, last = selector.split()
        if last != here[-1]:
            return False
        rest = iter(reversed(here[:-1]))
        return all(any(tag == a for tag in rest) for a in reversed(ancestors))

    for depth in range(len(path), 0, -1):  # the element, then what it inherits
        values = [d[prop] for sel, d in rules if prop in d and matches(sel, path[:depth])]
        if values:
            return values[-1]
    return None


def test_epoch_axes_have_whole_numbers_only(monkeypatch, tmp_path):
    figures = []
    monkeypatch.setattr(plots, "save_figure", lambda fig, path: figures.append(fig))
    rows = [
        {
            "epoch": e,
            "train_loss": 1 / e,
            "train_acc": 0.1 * e,
            "val_loss": 1 / e,
            "val_acc": 0.1 * e,
        }
        for e in (1, 2, 3)
    ]
    plots.training_curves(rows, tmp_path / "c.png")
    plots.sweep_curves([rows], ["lr=0.1"], tmp_path / "s.png", "sweep")
    plots.epoch_study(rows, {"best_epoch": 2, "gap_epoch": None}, tmp_path / "e.png")
    for fig in figures:
        fig.canvas.draw()
        for ax in fig.axes:
            ticks = [t for t in ax.get_xticks() if ax.get_xlim()[0] <= t <= ax.get_xlim()[1]]
            assert ticks and all(float(t).is_integer() for t in ticks), ticks


def test_report_wraps_long_commands(tmp_path):
    """The commands a study report gives (code blocks, and run folders in table cells) wrap
    in the HTML page instead of running off it: the page's CSS makes the elements holding
    them wrap at spaces and, for long words such as paths, anywhere."""
    from html.parser import HTMLParser

    from cifarlab.report.document import Report

    command = "cifarlab train " + " ".join(f"--option-{i} value-{i}" for i in range(30))
    folder = "runs/" + "x" * 150
    doc = Report("Report")
    doc.code(command + "\n" + command)
    doc.table(["run", "test accuracy"], [[f"`{folder}`", "72.48%"]])
    doc.write(tmp_path)
    page = (tmp_path / "report.html").read_text()

    class Where(HTMLParser):
        """The tags around each piece of text."""

        def __init__(self):
            super().__init__()
            self.open, self.found = [], {}

        def handle_starttag(self, tag, attrs):
            self.open.append(tag)

        def handle_endtag(self, tag):
            while self.open and self.open.pop() != tag:
                pass

        def handle_data(self, data):
            self.found.setdefault(data.strip(), list(self.open))

    where = Where()
    where.feed(page)
    rules = css_rules(page)
    pre = where.found[command + "\n" + command]
    assert computed(rules, pre, "white-space") in ("pre-wrap", "break-spaces"), pre
    assert computed(rules, pre, "overflow-wrap") in ("anywhere", "break-word"), pre
    cell = where.found[folder]
    assert cell[-2:] == ["td", "code"]
    assert computed(rules, cell, "overflow-wrap") in ("anywhere", "break-word"), cell
    assert computed(rules, ["html", "body", "p"], "overflow-wrap") is None  # the rest: as usual
