"""Repository specs and the Markdown/MDX → text conversion."""

from __future__ import annotations

import pytest
from pi_docs.repos import RepoSpecError, parse_repo_spec
from pi_docs.text import NotText, parse_document


@pytest.mark.parametrize(
    ("entry", "name", "branch", "prefix", "scope"),
    [
        ("makeplane/docs", "makeplane/docs", "HEAD", "", "makeplane/docs@HEAD"),
        ("makeplane/docs@master", "makeplane/docs", "master", "", "makeplane/docs@master"),
        ("makeplane/docs@v1.2:docs/en/", "makeplane/docs", "v1.2", "docs/en", "makeplane/docs@v1.2:docs/en"),
        ("makeplane/docs:content", "makeplane/docs", "HEAD", "content", "makeplane/docs@HEAD:content"),
        ("file:///srv/mirror/docs@main:guide", "/srv/mirror/docs", "main", "guide", "/srv/mirror/docs@main:guide"),
    ],
)
def test_repo_specs(entry, name, branch, prefix, scope):
    spec = parse_repo_spec(entry)
    assert (spec.name, spec.branch, spec.prefix, spec.scope) == (name, branch, prefix, scope)
    assert spec.document_id("a/b.md") == f"docs:{name}:a/b.md"


@pytest.mark.parametrize("entry", ["just-a-name", "a/b/c", "file://relative/path", "owner/repo@"])
def test_bad_repo_specs(entry):
    with pytest.raises(RepoSpecError, match="docs repository"):
        parse_repo_spec(entry)


def test_which_files_are_documentation():
    spec = parse_repo_spec("o/r:docs")
    assert spec.wants("docs/a.mdx") and spec.wants("docs/x/b.md") and spec.wants("docs/c.TXT")
    assert not spec.wants("docs/README.md") and not spec.wants("docs/x/contributing.md")
    assert not spec.wants("docsy/a.md") and not spec.wants("a.md") and not spec.wants("docs/a.py")


MDX = b"""---
title: Cycles
description: Plan work in time boxes
sidebar_position: 3
---
import { Callout } from "@/components/callout";
export const meta = {
  hidden: true,
};

# Cycles

<Callout type="info" onClick={() => go()}>Cycles are **time boxes**.</Callout>

{/* editors' note */}
<!-- html comment -->

## Create a cycle

```tsx
<Button onClick={create}>New cycle</Button>
import x from "y";
```

<Steps>
  <Step title="Open" />
  Open the project.
</Steps>
"""


def test_mdx_becomes_readable_markdown():
    parsed = parse_document(MDX, "docs/cycles.mdx")
    assert parsed.title == "Cycles" and parsed.body_format == "markdown"
    assert parsed.metadata == {"title": "Cycles", "description": "Plan work in time boxes"}
    body = parsed.body
    assert body.startswith("# Cycles") and "## Create a cycle" in body
    assert "Cycles are **time boxes**." in body and "Open the project." in body
    assert "import {" not in body and "export const" not in body and "hidden: true" not in body
    assert "<Callout" not in body and "editors' note" not in body and "html comment" not in body
    # code blocks are kept as they are, JSX and imports inside included
    assert '```tsx\n<Button onClick={create}>New cycle</Button>\nimport x from "y";\n```' in body


def test_broken_or_unclosed_front_matter_keeps_the_body():
    broken = parse_document(b"---\ntitle: [oops\n---\n# Real title\n\nbody text\n", "a.mdx")
    assert broken.title == "Real title" and broken.body == "# Real title\n\nbody text" and broken.metadata == {}
    unclosed = parse_document(b"---\ntitle: x\n# Heading\n", "b.md")
    assert "# Heading" in unclosed.body
    scalar = parse_document(b"---\njust a string\n---\ntext\n", "c-d_e.md")
    assert scalar.title == "c d e" and scalar.body == "text"


def test_text_files_binary_and_encodings():
    assert parse_document(b"\xef\xbb\xbfhello <b>world</b>\r\n", "n.txt").body == "hello <b>world</b>"
    assert parse_document("Café".encode("cp1252"), "n.txt").body == "Café"
    with pytest.raises(NotText):
        parse_document(b"GIF89a\x00\x01", "image.txt")


def test_html_url_from_api_url():
    from pi_docs.backends import html_url_for

    assert html_url_for("https://api.github.com") == "https://github.com"
    assert html_url_for("https://ghe.example.com/api/v3/") == "https://ghe.example.com"
