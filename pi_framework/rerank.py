"""An optional re-ranker: a cross-encoder scores (query, chunk) pairs of the fused top candidates, offline.

Off unless ``PI_RERANKER_PATH`` names a cross-encoder exported to ONNX: a folder holding ``model.onnx`` and the
``tokenizer.json`` of its tokenizer (as sentence-transformers' ``cross-encoder/ms-marco-MiniLM-L-6-v2`` exports), or
the ``.onnx`` file itself with ``tokenizer.json`` beside it. Nothing is ever downloaded: production workers may be
offline, and no package on PyPI ships such weights today (see ``bench/retrieval.py`` and the README's Performance
section for what was measured and why it is not on by default).

A re-ranker that cannot load (missing file, not an ONNX model, onnxruntime refusing it) logs **one** warning per
process and search goes on with fusion alone; so does one that fails while scoring (one warning, then fusion).
"""

from __future__ import annotations

import threading
from collections.abc import Sequence
from pathlib import Path
from typing import Protocol

import numpy as np
from loguru import logger

from pi_framework.settings import Settings, get_settings

#: the longest (query, chunk) pair scored, in tokens; a chunk is at most one embedding window (256 tokens) anyway
MAX_PAIR_TOKENS = 320


class Reranker(Protocol):
    name: str

    def score(self, query: str, passages: Sequence[str]) -> np.ndarray:
        """One relevance score per passage (higher is better)."""
        ...


class CrossEncoderReranker:
    """A cross-encoder in ONNX run by onnxruntime, with its ``tokenizer.json`` (Hugging Face tokenizers)."""

    def __init__(self, path: Path, threads: int | None = None, max_tokens: int = MAX_PAIR_TOKENS) -> None:
        import onnxruntime
        from tokenizers import Tokenizer

        path = Path(path)
        model = path / "model.onnx" if path.is_dir() else path
        tokenizer_file = model.parent / "tokenizer.json"
        if not model.is_file():
            raise FileNotFoundError(f"no ONNX model at {model}")
        if not tokenizer_file.is_file():
            raise FileNotFoundError(f"no tokenizer.json beside {model}")
        self.name = str(model)
        options = onnxruntime.SessionOptions()
        options.add_session_config_entry("session.intra_op.allow_spinning", "0")  # see embedding.py: share the CPU
        options.enable_mem_pattern = False
        if threads:
            options.intra_op_num_threads = threads
        self._session = onnxruntime.InferenceSession(str(model), options, providers=["CPUExecutionProvider"])
        self._inputs = {node.name for node in self._session.get_inputs()}
        tokenizer = Tokenizer.from_file(str(tokenizer_file))
        tokenizer.enable_truncation(max_length=max_tokens, strategy="only_second")
        tokenizer.enable_padding()
        self._tokenizer = tokenizer

    def score(self, query: str, passages: Sequence[str]) -> np.ndarray:
        if not passages:
            return np.zeros(0, dtype=np.float32)
        encoded = self._tokenizer.encode_batch([(query, passage) for passage in passages])
        feeds = {
            "input_ids": np.array([item.ids for item in encoded], dtype=np.int64),
            "attention_mask": np.array([item.attention_mask for item in encoded], dtype=np.int64),
            "token_type_ids": np.array([item.type_ids for item in encoded], dtype=np.int64),
        }
        logits = np.asarray(self._session.run(None, {name: value for name, value in feeds.items() if name in self._inputs})[0])
        logits = logits.reshape(len(passages), -1)
        # one logit (MS MARCO cross-encoders) is the score; with two classes, the "relevant" one
        return logits[:, -1].astype(np.float32)


_lock = threading.Lock()
_loaded: dict[str, Reranker | None] = {}
#: a re-ranker set by code (benchmarks, tests), used instead of the configured one; see :func:`use`
_override: list[Reranker | None] = []


def use(reranker: Reranker | None) -> None:
    """Use *reranker* in this process instead of the one ``PI_RERANKER_PATH`` names (``None``: back to the setting)."""
    _override[:] = [] if reranker is None else [reranker]


def reset() -> None:
    """Forget the loaded re-ranker (and a failure to load it, so it warns again), and any :func:`use`."""
    with _lock:
        _loaded.clear()
        _override.clear()


def get_reranker(settings: Settings | None = None) -> Reranker | None:
    """The configured re-ranker, loaded once per process; ``None`` when none is configured or it cannot load (warned
    once)."""
    if _override:
        return _override[0]
    settings = settings or get_settings()
    path = settings.PI_RERANKER_PATH
    if path is None:
        return None
    key = str(path)
    with _lock:
        if key not in _loaded:
            try:
                _loaded[key] = CrossEncoderReranker(path, threads=settings.PI_EMBEDDING_THREADS)
                logger.info("rerank: loaded cross-encoder {}", key)
            except Exception as exc:  # noqa: BLE001 - any failure to load means fusion alone, said once
                _loaded[key] = None
                logger.warning(
                    "rerank: PI_RERANKER_PATH={} cannot be loaded ({}: {}); search uses fusion alone",
                    key,
                    type(exc).__name__,
                    exc,
                )
        return _loaded[key]


def disable_after_failure(reranker: Reranker, exc: Exception) -> None:
    """A re-ranker that failed while scoring: warn once, and search uses fusion alone from now on in this process."""
    with _lock:
        for key, loaded in list(_loaded.items()):
            if loaded is reranker:
                _loaded[key] = None
        if _override and _override[0] is reranker:
            _override.clear()
    logger.warning("rerank: {} failed ({}: {}); search uses fusion alone", reranker.name, type(exc).__name__, exc)
