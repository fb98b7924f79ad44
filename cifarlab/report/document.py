"""A report as a list of blocks, written as Markdown and as one self-contained HTML file.

doc = Report("Title")
doc.heading("Results"); doc.text("..."); doc.table(["a", "b"], rows); doc.figure(png, "cap")
doc.write(out)   # out/report.md (figures linked) and out/report.html (figures embedded)

Figures are numbered in the order they are added: "Figure 1: cap", "Figure 2: ...".
"""

from __future__ import annotations

import base64
import html
import os
from pathlib import Path

from cifarlab.files import atomic_write_bytes

CSS = """
body { font-family: system-ui, sans-serif; max-width: 60rem; margin: 2rem auto; padding: 0 1rem;
       line-height: 1.45; color: #222; }
table { border-collapse: collapse; margin: 0.8rem 0; font-size: 0.92rem; }
th, td { border: 1px solid #ccc; padding: 0.25rem 0.6rem; text-align: right; }
th { background: #f3f3f3; } td:first-child, th:first-child { text-align: left; }
figure { margin: 1rem 0; } figure img { max-width: 100%; }
figcaption { font-size: 0.9rem; color: #555; }
code, pre { background: #f5f5f5; font-size: 0.85rem; }
pre { padding: 0.5rem; white-space: pre-wrap; overflow-wrap: anywhere; }
td code { overflow-wrap: anywhere; }
"""


class Report:
    def __init__(self, title: str) -> None:
        self.title = title
        self.blocks: list[tuple[str, tuple]] = []
        self.figures = 0

    def heading(self, text: str, level: int = 2) -> None:
        self.blocks.append(("heading", (text, level)))

    def text(self, text: str) -> None:
        self.blocks.append(("text", (text,)))

    def code(self, text: str) -> None:
        self.blocks.append(("code", (text,)))

    def bullets(self, items: list[str]) -> None:
        """A list, one item (a sentence or a few) each."""
        self.blocks.append(("bullets", (list(items),)))

    def table(self, header: list[str], rows: list[list]) -> None:
        self.blocks.append(("table", (header, [[str(c) for c in r] for r in rows])))

    def figure(self, path: Path, caption: str) -> None:
        """A figure, numbered in order of appearance: its caption becomes "Figure N: ..."."""
        self.figures += 1
        self.blocks.append(("figure", (Path(path), f"Figure {self.figures}: {caption}")))

    # ----------------------------------------------------------------------- writers

    def markdown(self, base: Path) -> str:
        out = [f"# {self.title}", ""]
        for kind, args in self.blocks:
            if kind == "heading":
                out += ["#" * args[1] + " " + args[0], ""]
            elif kind == "text":
                out += [args[0], ""]
            elif kind == "code":
                out += ["```", args[0], "```", ""]
            elif kind == "bullets":
                out += [f"- {item}" for item in args[0]] + [""]
            elif kind == "table":
                header, rows = args
                out.append("| " + " | ".join(header) + " |")
                out.append("|" + "|".join("---" for _ in header) + "|")
                out += ["| " + " | ".join(r) + " |" for r in rows]
                out.append("")
            elif kind == "figure":
                path, caption = args
                out += [f"![{caption}]({os.path.relpath(path, base)})", "", f"*{caption}*", ""]
        return "\n".join(out)

    def html(self) -> str:
        e = html.escape
        out = [
            "<!DOCTYPE html>",
            '<html lang="en"><head><meta charset="utf-8">',
            f"<title>{e(self.title)}</title><style>{CSS}</style></head><body>",
            f"<h1>{e(self.title)}</h1>",
        ]
        for kind, args in self.blocks:
            if kind == "heading":
                out.append(f"<h{args[1]}>{e(args[0])}</h{args[1]}>")
            elif kind == "text":
                out.append(f"<p>{_inline(args[0])}</p>")
            elif kind == "code":
                out.append(f"<pre><code>{e(args[0])}</code></pre>")
            elif kind == "bullets":
                out.append("<ul>" + "".join(f"<li>{_inline(i)}</li>" for i in args[0]) + "</ul>")
            elif kind == "table":
                header, rows = args
                out.append("<table><tr>" + "".join(f"<th>{e(h)}</th>" for h in header) + "</tr>")
                for r in rows:
                    out.append("<tr>" + "".join(f"<td>{_inline(c)}</td>" for c in r) + "</tr>")
                out.append("</table>")
            elif kind == "figure":
                path, caption = args
                data = base64.b64encode(Path(path).read_bytes()).decode()
                out.append(
                    f'<figure><img alt="{e(caption)}" src="data:image/png;base64,{data}">'
                    f"<figcaption>{e(caption)}</figcaption></figure>"
                )
        out.append("</body></html>")
        return "\n".join(out)

    def write(self, out: Path) -> tuple[Path, Path]:
        out = Path(out)
        md, page = out / "report.md", out / "report.html"
        atomic_write_bytes(md, self.markdown(out).encode())
        atomic_write_bytes(page, self.html().encode())
        return md, page


def _inline(text: str) -> str:
    """Escape, then render `code` and **bold** spans as Markdown would."""
    parts = html.escape(text).split("`")
    for i in range(1, len(parts), 2):
        parts[i] = f"<code>{parts[i]}</code>"
    s = "".join(parts)
    bold = s.split("**")
    for i in range(1, len(bold), 2):
        bold[i] = f"<strong>{bold[i]}</strong>"
    return "".join(bold)
