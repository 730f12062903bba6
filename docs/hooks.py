"""MkDocs hook: the top-level documents (README, BENCHMARKS, ...) become pages of the site as
they are, their links rewritten from the repository's layout to the site's."""

from __future__ import annotations

import re
from pathlib import Path

from mkdocs.structure.files import File

ROOT = Path(__file__).resolve().parents[1]
# repository file -> its page in the site
PAGES = {"README.md": "index.md", "BENCHMARKS.md": "benchmarks/index.md",
         "RELIABILITY.md": "RELIABILITY.md", "CONTRIBUTING.md": "CONTRIBUTING.md",
         "CHANGELOG.md": "CHANGELOG.md"}
LINK = re.compile(r"\]\(([^)\s#]+)(#[^)]*)?\)")


def on_files(files, config):
    for source, page in PAGES.items():
        files.append(File.generated(config, page, content=(ROOT / source).read_text("utf-8")))
    return files


def on_page_markdown(markdown, page, config, files):
    if page.file.src_uri not in PAGES.values():
        return markdown
    depth = page.file.src_uri.count("/")

    def site_link(match: re.Match) -> str:
        target, anchor = match[1], match[2] or ""
        if "://" in target:
            return match[0]
        site = PAGES.get(target) or target.removeprefix("docs/")
        return f"]({'../' * depth}{site}{anchor})"

    return LINK.sub(site_link, markdown)
