"""Stop words of text queries, shared by the sinks' BM25 sides (the indices keep every word).

Users ask in sentences ("how do I move a ticket to another project"): words like *how*, *do*, *a*, *to* match
nearly every chunk, so in an OR query they rank chunks by how often they say "to" rather than by the words that
carry the question. The embedded sink drops them from its FTS5 query; the OpenSearch sink from the text of its
``multi_match`` (its standard analyzer keeps them in the index and in queries otherwise).
"""

from __future__ import annotations

import re

#: dropped from text queries (not from the index) unless the query has nothing else
STOP_WORDS = frozenset(
    "a an and are as at be but by for from has have how i if in is it its my of on or our so that the their then there "
    "these this to was we what when where which who why will with you your".split()
)
#: a stop word standing alone: not part of ``A-12``, ``it's`` or ``a_b`` (a key, a contraction, an identifier)
_STANDALONE = re.compile(
    r"(?<![\w'’-])(?:" + "|".join(sorted(STOP_WORDS, key=len, reverse=True)) + r")(?![\w'’-])", re.IGNORECASE
)


def without_stop_words(text: str) -> str:
    """*text* with its standalone stop words blanked out, every other character kept (so an analyzer tokenizes the
    rest as before); *text* itself when nothing but stop words (or nothing) would remain."""
    kept = _STANDALONE.sub(" ", text)
    return " ".join(kept.split()) if re.search(r"\w", kept) else text
