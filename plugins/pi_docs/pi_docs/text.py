"""Turn a documentation file's bytes into the text that is indexed.

MDX is Markdown with JSX: front matter (YAML between ``---`` lines) becomes metadata, ``import``/
``export`` statements and JSX/HTML tags are dropped (the text between tags is kept), fenced code
blocks are kept untouched, and headings stay Markdown headings so chunks get section titles.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from pathlib import PurePosixPath
from typing import Any

import yaml
from loguru import logger


class NotText(ValueError):
    """The file is binary: nothing to index."""


@dataclass
class ParsedDoc:
    title: str
    body: str
    body_format: str
    metadata: dict[str, Any] = field(default_factory=dict)


_FENCE = re.compile(r"^\s*(```|~~~)")
_ESM = re.compile(r"^(import|export)\s")
_TAG = re.compile(r"</?[A-Za-z][\w.:-]*(?:\s+(?:[^<>{}]|\{[^{}]*\})*)?/?>")
_JSX_COMMENT = re.compile(r"\{/\*.*?\*/\}", re.S)
_HTML_COMMENT = re.compile(r"<!--.*?-->", re.S)
_HEADING = re.compile(r"^#{1,6}\s+(.+?)\s*#*\s*$", re.M)


def decode(data: bytes, path: str) -> str:
    """UTF-8 (BOM tolerated); other 8-bit text is read as cp1252 with a warning; NUL bytes mean binary."""
    if b"\0" in data:
        raise NotText(f"{path}: binary content (NUL bytes)")
    try:
        return data.decode("utf-8-sig")
    except UnicodeDecodeError:
        logger.warning("docs {}: not valid UTF-8; read as cp1252", path)
        return data.decode("cp1252", errors="replace")


def split_front_matter(text: str, path: str) -> tuple[dict[str, Any], str]:
    """``(front matter, rest)``; broken front matter is logged and dropped, the body is still indexed."""
    if not text.startswith("---"):
        return {}, text
    lines = text.split("\n")
    if lines[0].strip() != "---":
        return {}, text
    for end in range(1, len(lines)):
        if lines[end].strip() in ("---", "..."):
            break
    else:
        logger.warning("docs {}: front matter is never closed; indexing the file as plain content", path)
        return {}, "\n".join(lines[1:])
    rest = "\n".join(lines[end + 1 :])
    try:
        data = yaml.safe_load("\n".join(lines[1:end]))
    except yaml.YAMLError as exc:
        logger.warning("docs {}: broken front matter ignored ({})", path, str(exc).replace("\n", " "))
        return {}, rest
    if data is None:
        return {}, rest
    if not isinstance(data, dict):
        logger.warning("docs {}: front matter is not a mapping; ignored", path)
        return {}, rest
    return data, rest


def strip_mdx(text: str) -> str:
    """Drop ESM statements, JSX/HTML tags and comments outside fenced code blocks."""
    out: list[str] = []
    in_fence: str | None = None
    in_esm = False
    for line in text.split("\n"):
        fence = _FENCE.match(line)
        if in_fence:
            out.append(line)
            if fence and fence.group(1) == in_fence:
                in_fence = None
            continue
        if fence:
            in_fence = fence.group(1)
            out.append(line)
            continue
        if in_esm or _ESM.match(line):
            # an import/export ends at a blank line (MDX's own rule for ESM blocks)
            in_esm = bool(line.strip())
            continue
        out.append(line)
    return _clean_prose("\n".join(out))


def _clean_prose(text: str) -> str:
    """Remove tags and comments from the parts of *text* outside code fences."""
    parts = re.split(r"(^\s*(?:```|~~~).*?^\s*(?:```|~~~)[^\n]*$)", text, flags=re.S | re.M)
    cleaned = []
    for index, part in enumerate(parts):
        if index % 2 == 0:
            part = _TAG.sub("", _HTML_COMMENT.sub("", _JSX_COMMENT.sub("", part)))
            part = re.sub(r"\n{3,}", "\n\n", "\n".join(line.rstrip() for line in part.split("\n")))
        cleaned.append(part)
    return "".join(cleaned).strip()


def parse_document(data: bytes, path: str) -> ParsedDoc:
    """Bytes of *path* → title, body and metadata. Raises :class:`NotText` for binary files."""
    text = decode(data, path).replace("\r\n", "\n")
    suffix = PurePosixPath(path).suffix.lower()
    if suffix == ".txt":
        return ParsedDoc(title=_fallback_title(path), body=text.strip(), body_format="text")
    front, rest = split_front_matter(text, path)
    body = strip_mdx(rest) if suffix == ".mdx" else _clean_prose(rest)
    heading = _HEADING.search(body)
    title = str(front.get("title") or (heading.group(1) if heading else "") or _fallback_title(path))
    metadata = {key: str(front[key]) for key in ("title", "description") if front.get(key)}
    return ParsedDoc(title=title, body=body, body_format="markdown", metadata=metadata)


def _fallback_title(path: str) -> str:
    return PurePosixPath(path).stem.replace("-", " ").replace("_", " ").strip() or path
