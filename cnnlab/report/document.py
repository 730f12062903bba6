"""A report as a list of blocks, rendered to GitHub Markdown or to one self-contained HTML
file (images inlined as base64), so both say exactly the same thing."""

from __future__ import annotations

import base64
import html
import re
from collections.abc import Callable
from dataclasses import dataclass

from cnnlab.display_text import unescaped
from cnnlab.html_table import html_table
from cnnlab.markdown import markdown_table


@dataclass
class Heading:
    text: str
    level: int = 2


@dataclass
class Paragraph:
    text: str  # plain text; `code` spans are kept as they are in Markdown


@dataclass
class Table:
    header: list[str]
    rows: list[list[str]]


@dataclass
class Code:
    text: str


@dataclass
class Image:
    path: str  # relative to the document
    alt: str


Block = Heading | Paragraph | Table | Code | Image


def to_markdown(blocks: list[Block]) -> str:
    parts = []
    for block in blocks:
        if isinstance(block, Heading):
            parts.append(f"{'#' * block.level} {block.text}")
        elif isinstance(block, Paragraph):
            parts.append(block.text)
        elif isinstance(block, Table):
            parts.append(markdown_table(block.header, block.rows))
        elif isinstance(block, Code):
            parts.append(f"```\n{block.text}\n```")
        else:
            parts.append(f"![{block.alt}]({block.path})")
    return "\n\n".join(parts) + "\n"


def to_html(blocks: list[Block], title: str, image: Callable[[str], bytes]) -> str:
    """One HTML file with every image embedded, its bytes from `image(path)`. Text the blocks
    hold as Markdown (backslash escapes, **bold**, `code`) is rendered; nothing else is HTML."""
    body = []
    for block in blocks:
        if isinstance(block, Heading):
            body.append(f"<h{block.level}>{html.escape(unescaped(block.text))}</h{block.level}>")
        elif isinstance(block, Paragraph):
            body.append(f"<p>{_inline(block.text)}</p>")
        elif isinstance(block, Table):
            body.append(html_table(block.header, [[unescaped(c) for c in row]
                                                  for row in block.rows]))
        elif isinstance(block, Code):
            body.append(f"<pre>{html.escape(block.text)}</pre>")
        else:
            data = base64.b64encode(image(block.path)).decode("ascii")
            body.append(f'<img alt="{html.escape(block.alt)}" src="data:image/png;base64,{data}">')
    return (
        "<!doctype html>\n<html lang=\"en\"><head><meta charset=\"utf-8\">"
        f"<title>{html.escape(title)}</title><style>{_STYLE}</style></head>\n<body>\n"
        + "\n".join(body) + "\n</body></html>\n"
    )


def _inline(text: str) -> str:
    """The two Markdown spans the report uses, **bold** and `code`, around text whose other
    Markdown characters are backslash-escaped (display_text.for_markdown)."""
    parts = re.split(r"(\*\*(?:[^*\\]|\\.)+?\*\*|`[^`]+`)", text)
    shown = []
    for part in parts:
        if part.startswith("**") and part.endswith("**") and len(part) > 4:
            shown.append(f"<strong>{html.escape(unescaped(part[2:-2]))}</strong>")
        elif part.startswith("`") and part.endswith("`") and len(part) > 2:
            shown.append(f"<code>{html.escape(part[1:-1])}</code>")
        else:
            shown.append(html.escape(unescaped(part)))
    return "".join(shown)


_STYLE = (
    "body{font-family:system-ui,sans-serif;max-width:1100px;margin:2em auto;padding:0 1em;"
    "color:#1f2328}table{border-collapse:collapse;margin:1em 0}td,th{border:1px solid #d0d7de;"
    "padding:4px 10px;text-align:right}th{background:#f6f8fa}pre{background:#f6f8fa;"
    "padding:1em;overflow-x:auto;font-size:13px}img{max-width:100%;display:block;margin:1em 0}"
)
