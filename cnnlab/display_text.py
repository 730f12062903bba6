"""Text from files cnnlab did not write (class names, a recipe's name and description, the
fields of a history), made safe where it is shown. Control characters are refused where the
text is read (an ANSI escape in a class name would drive the user's terminal; a bidi override
would hide what a line says); Markdown gets it escaped here; report.png draws a `$` as itself."""

from __future__ import annotations

import re

# C0 and C1 controls (ESC, CR, BEL, ...), DEL, line/paragraph separators, bidi overrides.
_CONTROL = re.compile(r"[\x00-\x08\x0b-\x1f\x7f-\x9f\u2028\u2029\u202a-\u202e\u2066-\u2069]")
_NEWLINE = re.compile(r"[\t\n]")
# What makes inline Markdown of plain text: emphasis, code, links and images, table cells,
# strikethrough (block markers such as `#` or `-` act only at a line's start, which this text
# never is).
_MARKDOWN = re.compile(r"([\\`*_\[\]!|~<>&])")
_ESCAPED = re.compile(r"\\([\\`*_\[\]!|~<>&])")


def control_character(text: str, lines: bool = False) -> str | None:
    """What makes `text` unsafe to show, or None: the first control character in it (tabs and
    newlines pass where `lines` allows them)."""
    found = _CONTROL.search(text) or (None if lines else _NEWLINE.search(text))
    return f"holds the control character U+{ord(found[0]):04X}" if found else None


def for_markdown(text: str) -> str:
    """`text` as literal Markdown: no emphasis, link, code span, table cell break or HTML tag
    in it takes effect (each such character backslash-escaped, as CommonMark allows)."""
    return _MARKDOWN.sub(r"\\\1", text.replace("\n", " "))


def for_code_span(text: str) -> str:
    """`text` inside a `code span`, where backslashes escape nothing: a backtick would end
    the span, so it is shown as a quote."""
    return text.replace("`", "'").replace("\n", " ")


def unescaped(markdown: str) -> str:
    """The text `for_markdown` escaped, for a writer of another format (HTML)."""
    return _ESCAPED.sub(r"\1", markdown)
