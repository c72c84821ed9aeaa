"""Normalisation: what a body turns into before it is chunked, embedded and full-text indexed."""

from __future__ import annotations

import pytest

from pi_framework.pipeline.normalise import clean_text, html_to_text, markdown_to_text, normalise, to_str


def test_html_keeps_block_boundaries() -> None:
    html = "<h1>Title</h1><p>First paragraph.</p><p>Second <b>bold</b> one.</p><ul><li>one</li><li>two</li></ul>line<br>break"
    assert html_to_text(html) == "Title\n\nFirst paragraph.\n\nSecond bold one.\n\n- one\n- two\n\nline\nbreak"


def test_html_never_glues_paragraphs_like_description_stripped() -> None:
    assert "end.Next" not in html_to_text("<p>The end.</p><p>Next start</p>")
    assert html_to_text("<div>a</div><div>b</div>") == "a\n\nb"
    assert html_to_text("<table><tr><td>a</td><td>b</td></tr><tr><td>c</td></tr></table>") == "a b\nc"


def test_script_style_and_head_are_dropped() -> None:
    html = "<head><title>t</title><style>p{color:red}</style></head><p>kept</p><script>alert('x')</script><noscript>n</noscript>"
    assert html_to_text(html) == "kept"


def test_entities_are_decoded_and_nbsp_is_a_space() -> None:
    assert (
        html_to_text("<p>Tom&nbsp;&amp;&nbsp;Jerry &lt;3 &eacute;t&eacute; &#8364;5 &#x1F600;</p>") == "Tom & Jerry <3 été €5 😀"
    )


def test_mentions_and_links_stay_readable() -> None:
    html = (
        '<p>Ping <mention-component entity_name="user_mention" label="alice"></mention-component> about '
        '<a href="https://example.com/spec">the spec</a> and <a href="https://example.com/bare"></a></p>'
    )
    assert html_to_text(html) == "Ping @alice about the spec and https://example.com/bare"


def test_plane_mention_without_label_keeps_its_identifier() -> None:
    html = '<p>cc <mention-component entity_identifier="4c3a" entity_name="user_mention"></mention-component></p>'
    assert html_to_text(html) == "cc @4c3a"


@pytest.mark.parametrize("body", ["", "   \n\t ", "&nbsp;&nbsp;", "<p>&nbsp;</p><p> </p>", "<script>x()</script>"])
def test_blank_bodies_become_empty(body: str) -> None:
    assert html_to_text(body) == ""


def test_invalid_utf8_and_nul_characters_are_cleaned() -> None:
    assert to_str(b"caf\xc3\xa9 \xff\xfe!") == "café \ufffd\ufffd!"
    assert normalise(b"caf\xc3\xa9 \xff ok", "text") == "café ok"
    surrogate_escaped = b"bad \xff byte".decode("utf-8", "surrogateescape")
    assert normalise(surrogate_escaped, "html") == "bad byte"
    assert normalise("nul\x00here\x07", "text") == "nul here"
    assert normalise("lone \ud800 surrogate", "markdown") == "lone surrogate"


def test_deeply_nested_html_is_fine() -> None:
    depth = 50_000
    assert html_to_text("<div>" * depth + "deep" + "</div>" * depth) == "deep"
    assert html_to_text("<b>" * depth + "unclosed") == "unclosed"


def test_ten_megabytes_of_html() -> None:
    paragraph = "<p>" + "lorem ipsum dolor sit amet " * 20 + "</p>"
    text = html_to_text(paragraph * (10_000_000 // len(paragraph)))
    assert text.startswith("lorem ipsum") and len(text) > 9_000_000


def test_markdown_keeps_structure_drops_link_targets_and_html() -> None:
    markdown = "# Install\n\nSee [the guide](https://x/guide) ![diagram](d.png)<br/>\n<!-- hidden -->\n\n\n\n```\ncode\n```"
    assert markdown_to_text(markdown) == "# Install\n\nSee the guide diagram\n\n```\ncode\n```"


def test_clean_text_collapses_space_but_keeps_paragraphs() -> None:
    assert clean_text("a \u00a0\u2003 b\r\n\r\n\r\n\r\nc\u200b") == "a b\n\nc"
