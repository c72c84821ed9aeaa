"""A mkdocs hook: pages cut from README.md, so the tutorial has one source (the README, whose tutorial a test runs).

``index.md`` is the README's opening (up to "How the pieces fit"); ``tutorial.md`` is "Writing a plugin" and "Write a
source". The cut is by second-level headings; a heading that disappears from the README fails the build.
"""

from __future__ import annotations

import re
from pathlib import Path

from mkdocs.structure.files import File, Files

README = Path(__file__).parents[1] / "README.md"
PAGES = {
    "index.md": (None, "## How the pieces fit"),
    "tutorial.md": ("## Writing a plugin", "## Tests"),
}


def _cut(text: str, start: str | None, end: str) -> str:
    begin = 0 if start is None else text.index(f"\n{start}\n") + 1
    return text[begin : text.index(f"\n{end}\n", begin)]


def _linked(markdown: str) -> str:
    """README links to repository files (which the site does not publish) become the file's path in code."""
    return re.sub(r"\[([^\]]+)\]\((?!https?://|#)([^)]+)\)", r"\1 (`\2`)", markdown)


def on_files(files: Files, config) -> Files:  # noqa: ANN001 - mkdocs' hook signature
    text = README.read_text()
    for name, (start, end) in PAGES.items():
        files.append(File.generated(config, name, content=_linked(_cut(text, start, end))))
    return files
