"""A self-contained HTML report: inline CSS and SVG, no scripts, no requests; every string escaped."""

from __future__ import annotations

import re
from collections.abc import Sequence
from dataclasses import dataclass, field
from html import escape as _escape

# bidirectional embeddings, overrides and isolates (U+202A-U+202E, U+2066-U+2069): a label holding one
# could reorder the text around it ("evil\u202egnp.exe"); the report shows them as visible code points
BIDI_CONTROLS = re.compile("[\u202a-\u202e\u2066-\u2069]")


def neutral(text: object) -> str:
    """``text`` with every bidirectional control character replaced by its visible code point ``[U+202E]``."""
    return BIDI_CONTROLS.sub(lambda m: f"[U+{ord(m.group()):04X}]", str(text))


def escape(text: object) -> str:
    """HTML-escaped text with bidirectional controls neutralised (every string the page prints)."""
    return _escape(neutral(text))


CSS = """
body{font-family:Georgia,'Times New Roman',serif;max-width:60rem;margin:2rem auto;padding:0 1rem;color:#222}
body{line-height:1.45}
h1{font-size:1.7rem;margin-bottom:.2rem}h2{border-bottom:2px solid #0b5394;padding-bottom:.2rem;margin-top:2.5rem}
h3{margin-top:1.6rem}.banner{background:#fde9e7;border:2px solid #cc0000;color:#800;padding:.6rem 1rem;font-weight:bold}
.summary{background:#eef4fb;border-left:4px solid #0b5394;padding:.6rem 1rem}
table{border-collapse:collapse;margin:.8rem 0;font-size:.88rem;font-family:Helvetica,Arial,sans-serif}
th,td{border-bottom:1px solid #ccc;padding:.25rem .6rem;text-align:right}th{background:#f3f3f3}
td:first-child,th:first-child{text-align:left}caption{caption-side:top;text-align:left;font-weight:bold;padding:.3rem 0}
figure{margin:1rem 0}figure svg{max-width:100%;height:auto}figcaption{font-size:.88rem;color:#444}
.method{font-size:.95rem}.refs{font-size:.85rem;color:#333}.warn{color:#8a4b00}
footer{margin-top:3rem;font-size:.8rem;color:#555;border-top:1px solid #ccc}
"""


@dataclass(frozen=True)
class Table:
    """A table of already formatted cells."""

    caption: str
    header: Sequence[str]
    rows: Sequence[Sequence[str]]
    name: str = "table"

    def html(self) -> str:
        head = "".join(f"<th>{escape(h)}</th>" for h in self.header)
        body = "".join("<tr>" + "".join(f"<td>{escape(c)}</td>" for c in row) + "</tr>" for row in self.rows)
        return (
            f'<table data-name="{escape(self.name)}"><caption>{escape(self.caption)}</caption>'
            f"<thead><tr>{head}</tr></thead><tbody>{body}</tbody></table>"
        )


@dataclass(frozen=True)
class Figure:
    """An inline SVG figure (produced by matplotlib, text escaped) with a caption."""

    caption: str
    svg: str

    def html(self) -> str:
        return f"<figure>{self.svg}<figcaption>{escape(self.caption)}</figcaption></figure>"


@dataclass(frozen=True)
class Section:
    title: str
    paragraphs: Sequence[str] = ()
    blocks: Sequence[Table | Figure] = ()
    method: Sequence[str] = ()
    references: Sequence[str] = ()
    subsections: Sequence[Section] = field(default_factory=tuple)

    def html(self, level: int = 2) -> str:
        parts = [f"<h{level}>{escape(self.title)}</h{level}>"]
        parts += [f"<p>{escape(p)}</p>" for p in self.paragraphs]
        parts += [b.html() for b in self.blocks]
        parts += [s.html(level + 1) for s in self.subsections]  # the method and references close the section
        parts += [f'<p class="method">{escape(p)}</p>' for p in self.method]
        if self.references:
            parts.append('<ul class="refs">' + "".join(f"<li>{escape(r)}</li>" for r in self.references) + "</ul>")
        return "<section>" + "".join(parts) + "</section>"


def document(
    title: str,
    lang: str,
    summary: Sequence[str],
    sections: Sequence[Section],
    banner: str | None,
    footer: str,
    summary_title: str,
) -> str:
    """The whole page as one string."""
    head = (
        f'<!DOCTYPE html><html lang="{escape(lang)}"><head><meta charset="utf-8">'
        '<meta name="viewport" content="width=device-width, initial-scale=1">'
        '<meta http-equiv="Content-Security-Policy" '
        "content=\"default-src 'none'; style-src 'unsafe-inline'; img-src data:\">"
        f"<title>{escape(title)}</title><style>{CSS}</style></head><body>"
    )
    parts = [head, f"<h1>{escape(title)}</h1>"]
    if banner:
        parts.append(f'<p class="banner">{escape(banner)}</p>')
    parts.append(f'<div class="summary"><h2>{escape(summary_title)}</h2>')
    parts += [f"<p>{escape(s)}</p>" for s in summary]
    parts.append("</div>")
    parts += [s.html() for s in sections]
    parts.append(f"<footer><p>{escape(footer)}</p></footer></body></html>")
    return "".join(parts)
