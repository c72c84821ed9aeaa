"""Hostile input costs linear time: normalising and chunking pathological bodies vs prose of the same size.

    python bench/hostile_input.py                     # 10 KB, 100 KB and 1 MB, HTML and Markdown
    python bench/hostile_input.py --sizes 10000 100000 --formats markdown --only 'link*'
    python bench/hostile_input.py --timeout 60        # per case; a case slower than this prints "timeout"

For each size, format and input: the CPU time (best of 3 up to 100 KB, of 1 above; CPU time because other
processes on a shared machine make wall time noisy) of ``Indexer.chunks_of`` (the size cap, normalise,
chunk with the real all-MiniLM-L6-v2 tokenizer, hash: exactly what the indexer runs for a document) on
prose of that size and on the pathological input, and their ratio. Each case runs in a fresh subprocess with a timeout, because a
catastrophic regex cannot be interrupted (this is how the "before" figures were taken). Sizes are the body
*before* the ``PI_MAX_DOCUMENT_CHARS`` cap (default 1,000,000 characters), so 1 MB shows the cap at work.

``corpus(size)`` is also the corpus of ``tests/test_hostile_input.py``.
"""

from __future__ import annotations

import argparse
import fnmatch
import json
import os
import random
import subprocess
import sys
import tempfile
import time

os.environ.setdefault("HF_HUB_OFFLINE", "1")

_WORDS = (
    "login page button crash error timeout upload file attachment editor cycle module project state label priority "
    "assignee comment description workspace member invite email notification webhook api token integration github "
    "the a to of and in for on with when after before is are was should must can not does it this that we"
).split()


def _repeat(unit: str, size: int) -> str:
    return (unit * (size // len(unit) + 1))[:size]


def prose(size: int, seed: int = 3) -> str:
    """Plain sentences in paragraphs, *size* characters: the baseline every hostile input is compared with."""
    rng = random.Random(seed)
    parts: list[str] = []
    length = 0
    while length < size:
        sentences = [" ".join(rng.choices(_WORDS, k=rng.randint(8, 20))).capitalize() + "." for _ in range(rng.randint(2, 5))]
        paragraph = " ".join(sentences) + "\n\n"
        parts.append(paragraph)
        length += len(paragraph)
    return "".join(parts)[:size]


def _nested(opening: str, closing: str, middle: str, size: int) -> str:
    depth = max(1, (size - len(middle)) // (len(opening) + len(closing)))
    return opening * depth + middle + closing * depth


def _deep_list(size: int) -> str:
    """Each item one level deeper than the one before, until *size* characters."""
    lines: list[str] = []
    length = depth = 0
    while length < size:
        lines.append("  " * depth + "- item\n")
        length += len(lines[-1])
        depth += 1
    return "".join(lines)[:size]


def _mixed(size: int, seed: int = 5) -> str:
    """Random pieces of every hostile input below, glued together."""
    rng = random.Random(seed)
    pieces = [
        "[a](", "![a](", "[", "]", "(", ")", "<a", "<", "</", "<!--", "-->", "<!", "<?", "&#", "&", "#", "# a ", "\n#",
        "*", "_", "`", "```", "~", "|", "!", ">", "> ", "\n", " ", "\t", "- ", "  ", "a", '="', "'", "\\",
    ]  # fmt: skip
    parts: list[str] = []
    length = 0
    while length < size:
        piece = rng.choice(pieces) * rng.randint(1, 40)
        parts.append(piece)
        length += len(piece)
    return "".join(parts)[:size]


def corpus(size: int) -> dict[str, str]:
    """Pathological bodies of about *size* characters, by name (each is fed as HTML and as Markdown)."""
    inputs = {
        "link [a](": _repeat("[a](", size),
        "image ![a](": _repeat("![a](", size),
        "link [a](b": _repeat("[a](b", size),
        "link [a](b c": _repeat("[a](b c", size),
        "link []( ": _repeat("[](", size),
        "nested brackets": _nested("[", "]", "a", size),
        "nested links": _nested("[", "](x)", "a", size),
        "nested parens": _nested("(", ")", "a", size),
        "open tag <a": _repeat("<a", size),
        "open tag <a b": _repeat("<a b", size),
        "open tag <a b=": _repeat("<a b=", size),
        "open attr <a b='": _repeat("<a b='", size),
        "quoted > in open tags": "<a " + _repeat("b='><a ' ", size - 6) + "c='",
        "unclosed quote then >": _repeat('<a b="><a b=c>', size),
        "end tag </a": _repeat("</a", size),
        "tag <a/": _repeat("<a/", size),
        "comment <!--": _repeat("<!--", size),
        "decl <!": _repeat("<!", size),
        "pi <?": _repeat("<?", size),
        "cdata <![CDATA[": _repeat("<![CDATA[", size),
        "charref &#": _repeat("&#", size),
        "charref &#111…": "&#" + "1" * (size - 2),
        "charref &#x000…41": "&#x" + "0" * (size - 5) + "41",
        "entity &a": _repeat("&a", size),
        "script unclosed": "<script>" + _repeat("<a", size - 8),
        "heading # a#…#b": "# a" + "#" * (size - 4) + "b",
        "heading # a then spaces": "# a" + " " * (size - 4) + "b",
        "headings # a\\n": _repeat("# a\n", size),
        "heading spaces #\\t": "#" + _repeat(" \t", size - 2) + "x",
        "fences ```\\n~~~": _repeat("```\n~~~\n~~~\n", size),
        "fence unclosed + headings": "```\n" + _repeat("# a\n", size - 4),
        "fences in headings": _repeat("```\n# a\n", size),
        "deep list": _deep_list(size),
        "deep quote": _repeat(">", size - 1) + "a",
        "quotes > ": _repeat("> ", size),
        "deep html": _nested("<div>", "</div>", "deep", size),
        "deep html unclosed": _repeat("<b>", size),
        "nested html links": _nested('<a href="x">t', "</a>", "", size),
        "table |": _repeat("|", size),
        "table | a |\\n": _repeat("| a |\n", size),
        "emphasis *_": _repeat("*_", size),
        "code `": _repeat("`", size),
        "blank lines \\n \\n": _repeat("\n \n", size),
        "spaces and tabs": _repeat(" \t", size),
        "control chars": _repeat("\x00\x07\u200b\ufeff", size),
        "combining marks": "a" + _repeat("\u0301\u0316", size - 1),
        "tibetan vowel signs": _repeat("\u0f73", size),
        "one word": "a" * size,
        "mixed": _mixed(size),
    }
    for char in "#<[*`(!|_~>&]":
        inputs[f"run of {char}"] = char * size
    return inputs


FORMATS = ("html", "markdown")


def _indexer(data_dir: str):  # noqa: ANN202 - an Indexer, imported lazily
    from pi_framework.embedding import FastEmbedder
    from pi_framework.pipeline.indexer import Indexer
    from pi_framework.settings import load_settings

    settings = load_settings(PI_DATA_DIR=data_dir, PI_DATABASE_URL=f"sqlite:///{data_dir}/pi.sqlite")
    return Indexer(sinks=[], embedder=FastEmbedder(settings), settings=settings)


def timed(indexer, name: str, body: str, body_format: str, repeat: int = 1) -> float:  # noqa: ANN001
    """Best of *repeat* runs of ``indexer.chunks_of`` on one document (CPU seconds of this process)."""
    from pi_framework.contract.documents import Document

    document = Document(
        id=f"bench:{name}", source="bench", kind="bench", workspace_id="w", title=name, body=body, body_format=body_format
    )
    best = float("inf")
    for _ in range(repeat):
        started = time.process_time()
        indexer.chunks_of(document)
        best = min(best, time.process_time() - started)
    return max(best, 1e-6)


def _worker(data_dir: str) -> None:
    """Subprocess: read ``[name, size, format]`` lines from stdin, answer each with the seconds it took."""
    from loguru import logger

    logger.remove()
    indexer = _indexer(data_dir)
    for line in sys.stdin:
        name, size, body_format = json.loads(line)
        body = prose(size) if name == "prose" else corpus(size)[name]
        try:
            answer: float | str = timed(indexer, name, body, body_format, repeat=3 if size <= 100_000 else 1)
        except Exception as exc:  # noqa: BLE001 - reported, like a timeout (the code before issue 11 raised some)
            answer = f"{type(exc).__name__}: {str(exc)[:60]}"
        print(json.dumps(answer), flush=True)


class _Runner:
    """One warm subprocess (model loaded once); restarted after a timeout."""

    def __init__(self, data_dir: str, timeout: float) -> None:
        self.data_dir, self.timeout, self.process = data_dir, timeout, None

    def run(self, name: str, size: int, body_format: str) -> float | str | None:
        """CPU seconds, an error message, or ``None`` after a timeout."""
        import selectors

        if self.process is None:
            self.process = subprocess.Popen(
                [sys.executable, __file__, "--worker", self.data_dir],
                stdin=subprocess.PIPE,
                stdout=subprocess.PIPE,
                text=True,
            )
        self.process.stdin.write(json.dumps([name, size, body_format]) + "\n")
        self.process.stdin.flush()
        selector = selectors.DefaultSelector()
        selector.register(self.process.stdout, selectors.EVENT_READ)
        if not selector.select(self.timeout + (120 if name == "prose" else 0)):
            self.close()
            return None
        answer = self.process.stdout.readline()
        if not answer:  # the worker died
            self.close()
            return "worker died"
        return json.loads(answer)

    def close(self) -> None:
        if self.process is not None:
            self.process.kill()
            self.process.wait()
            self.process = None


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--sizes", type=int, nargs="+", default=[10_000, 100_000, 1_000_000])
    parser.add_argument("--formats", nargs="+", choices=FORMATS, default=list(FORMATS))
    parser.add_argument("--only", default="*", help="glob on input names")
    parser.add_argument("--timeout", type=float, default=60.0, help="seconds per case before it is reported as timeout")
    parser.add_argument("--worker", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.worker:
        _worker(args.worker)
        return
    with tempfile.TemporaryDirectory() as data_dir:
        runner = _Runner(data_dir, args.timeout)
        worst: tuple[float, str] = (0.0, "")
        try:
            for size in args.sizes:
                names = [name for name in corpus(1_000) if fnmatch.fnmatch(name, args.only)]
                for body_format in args.formats:
                    baseline = runner.run("prose", size, body_format) or float("nan")
                    print(f"\n{size:>9,} chars {body_format:<8}  prose {baseline * 1000:9.1f} ms")
                    for name in names:
                        seconds = runner.run(name, size, body_format)
                        if seconds is None or isinstance(seconds, str):
                            failure = seconds or f"timeout (> {args.timeout:.0f} s)"
                            print(f"  {name:<28} {failure}", flush=True)
                            worst = max(worst, (float("inf"), f"{name} {size} {body_format}"))
                            continue
                        ratio = seconds / baseline
                        worst = max(worst, (ratio, f"{name} {size} {body_format}"))
                        print(f"  {name:<28} {seconds * 1000:9.1f} ms  {ratio:6.2f}x", flush=True)
        finally:
            runner.close()
        print(f"\nworst ratio: {worst[0]:.2f}x ({worst[1]})")


if __name__ == "__main__":
    main()
