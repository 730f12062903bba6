"""HTML tables: one writer for the report page and the notebook views of the inspect tables
(Jupyter shows an object's `_repr_html_`), so a table reads the same wherever it is shown."""

from __future__ import annotations

import html


def html_table(header: list[str], rows: list[list[str]]) -> str:
    head = "".join(f"<th>{html.escape(h)}</th>" for h in header)
    body = "".join("<tr>" + "".join(f"<td>{html.escape(c)}</td>" for c in row) + "</tr>"
                   for row in rows)
    return f"<table><thead><tr>{head}</tr></thead><tbody>{body}</tbody></table>"


def html_lines(lines: list[str]) -> str:
    """Lines of text under a table (totals, warnings), each its own paragraph."""
    return "".join(f"<p>{html.escape(line)}</p>" for line in lines if line)
