"""Turn chat messages into documents, index them, and delete chats.

One code path serves the ``index_chat_message`` task (a batch of one) and ``pi chats-backfill``
(batches of hundreds, so embeddings are computed in batches too).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import asdict, dataclass, field
from datetime import datetime
from typing import Any

from loguru import logger

from pi_chats import backlog, ids, rekey, store
from pi_chats.payloads import ChatMessage
from pi_chats.settings import chats_settings
from pi_framework.api import Database, Document, Indexer, Settings, get_database, get_settings

SOURCE = "chats"
KIND = "chats"
#: how often a title is re-checked after indexing when another worker changed it meanwhile
TITLE_RECHECKS = 3


@dataclass
class ChatStats:
    """What one call did: messages received and refused, documents (messages and titles) written or unchanged.

    ``titles`` counts the chat title documents submitted (a chat's title changed, or its title message came again).
    """

    messages: int = 0
    rejected: int = 0
    dropped_deleted: int = 0
    titles: int = 0
    indexed: int = 0
    unchanged: int = 0
    chunks_embedded: int = 0
    failed: dict[str, str] = field(default_factory=dict)

    def add(self, other: ChatStats) -> None:
        for name, value in asdict(other).items():
            if name == "failed":
                self.failed.update(value)
            else:
                setattr(self, name, getattr(self, name) + value)

    def as_dict(self) -> dict[str, Any]:
        return {**asdict(self), "failed": len(self.failed)}


class ChatIndex:
    """Index and delete chats through the framework's pipeline; remember titles and tombstones in the PI database."""

    def __init__(
        self, indexer: Indexer | None = None, database: Database | None = None, settings: Settings | None = None
    ) -> None:
        self.settings = settings or get_settings()
        self.database = database or get_database(self.settings)
        self.indexer = indexer or Indexer(database=self.database, settings=self.settings)

    # ------------------------------------------------------------------ documents
    def _document(self, doc_id: str, chat: store.ChatView, body: str, updated_at: datetime | None, **metadata: Any) -> Document:
        """A private document of *chat*, titled with the chat's title (so every message hit names its chat).

        Message text is read as Markdown (what assistants write): links and images index as their text.
        """
        return Document(
            id=doc_id,
            source=SOURCE,
            kind=KIND,
            workspace_id=chat.workspace_id,
            title=chat.title,
            body=body,
            body_format="markdown",
            updated_at=updated_at,
            owner_id=chat.user_id,
            embed=chats_settings().PI_CHATS_SEMANTIC,
            metadata={"chat_id": chat.chat_id, "title": chat.title, **metadata},
        )

    def message_document(self, message: ChatMessage, chat: store.ChatView) -> Document:
        return self._document(
            message.document_id,
            chat,
            message.text,
            message.created_at,
            message_id=message.message_id,
            role=message.role,
            created_at=message.created_at.isoformat(),
        )

    def title_document(self, chat: store.ChatView) -> Document:
        """The chat itself, found by its title (its body is empty: the chunk is the title)."""
        return self._document(ids.document_id(chat.workspace_id, chat.chat_id), chat, "", None)

    # ------------------------------------------------------------------ indexing
    def record_chats(self, messages: Sequence[ChatMessage]) -> None:
        """Record owners and titles of *messages* without indexing (first pass of a backfill)."""
        with self.database.session() as session:
            store.admit(session, messages)

    def index_messages(self, messages: Sequence[ChatMessage]) -> ChatStats:
        """Index *messages* (any chats, any order, duplicates allowed) and the titles they change."""
        unique = list({(m.workspace_id, m.document_id): m for m in reversed(messages)}.values())[::-1]
        stats = ChatStats(messages=len(messages), unchanged=len(messages) - len(unique))
        with self.database.session() as session:
            admission = store.admit(session, unique)
        for doc_id, reason in admission.rejected.items():
            logger.error("index_chat_message rejected {}: {}", doc_id, reason)
        if admission.dropped:
            logger.info(
                "chats: {} message(s) of deleted chats dropped: {}", len(admission.dropped), ", ".join(admission.dropped[:5])
            )
        stats.rejected, stats.dropped_deleted = len(admission.rejected), len(admission.dropped)
        documents = [self.message_document(message, chat) for message, chat in admission.accepted]
        documents += [self.title_document(chat) for chat in admission.retitled.values()]
        if not documents:
            return stats
        result = self.indexer.index(documents)
        stats.titles = len(admission.retitled)
        stats.indexed, stats.chunks_embedded = result.documents_indexed, result.chunks_embedded
        stats.unchanged += result.documents_unchanged
        stats.failed.update(result.failed)
        self._settle({m.document_id: chat.key for m, chat in admission.accepted}, admission.retitled)
        return stats

    def _settle(self, written: dict[str, store.ChatKey], retitled: dict[store.ChatKey, store.ChatView]) -> None:
        """Repair what a concurrent worker changed while this one was writing to the sinks.

        A chat deleted meanwhile loses the messages written here (its ``delete_chat`` could not see
        them yet); a title changed meanwhile is written again. Every worker commits a title to the
        database before writing it to the sinks and re-reads it after, so the last sink write of a
        title document is always followed by a re-read that sees the final title: the index ends with
        the title the database holds, whatever order the workers finished in.
        """
        keys = sorted(set(written.values()) | set(retitled))
        for _ in range(TITLE_RECHECKS):
            with self.database.session() as session:
                current = store.read(session, keys)
            deleted = {key for key, chat in current.items() if chat.deleted}
            orphans = [doc_id for doc_id, key in written.items() if key in deleted]
            orphans += [ids.document_id(workspace_id, chat_id) for workspace_id, chat_id in deleted & set(retitled)]
            if orphans:
                self.indexer.delete_documents(orphans)
            stale = [
                chat
                for key, chat in current.items()
                if key in retitled and not chat.deleted and chat.title != retitled[key].title
            ]
            if not stale:
                return
            # forced: the ledger may already hold the right title while the sink holds ours (another worker's
            # sink write came before ours but its ledger write after), so "unchanged" cannot be trusted here
            self.indexer.ledger.remove_documents([ids.document_id(chat.workspace_id, chat.chat_id) for chat in stale])
            self.indexer.index([self.title_document(chat) for chat in stale])
            retitled = {chat.key: chat for chat in stale}
            written, keys = {}, [chat.key for chat in stale]

    def ensure_rekeyed(self, *, force: bool = False) -> rekey.RekeyStats | None:
        """Re-key documents of the first version (ids without the workspace) unless done; see :mod:`pi_chats.rekey`."""
        return rekey.ensure_rekeyed(self.database, self.indexer.sinks, self.settings, force=force)

    def retry_pending(self) -> dict[str, int]:
        """One pass over what the index refused earlier: parked messages, then deletions not yet purged.

        It first resumes the re-keying of first-version documents if a worker start did not finish it.
        """
        try:
            self.ensure_rekeyed()
        except Exception as exc:  # noqa: BLE001 - the retry pass goes on; the next one resumes the re-keying
            logger.warning("chats: re-keying document ids stopped ({}: {}); the next pass resumes it", type(exc).__name__, exc)
        messages = backlog.parked(self.database)
        counts = {"parked_retried": len(messages), "parked_indexed": 0, "deletions_finished": 0}
        if messages:
            failed = self.index_messages(messages).failed
            backlog.settle(self.database, messages, failed)
            counts["parked_indexed"] = sum(message.document_id not in failed for message in messages)
        with self.database.session() as session:
            unfinished = store.unpurged(session, backlog.BATCH)
        for workspace_id, chat_id in unfinished:
            self.delete_chat(workspace_id, chat_id)
            counts["deletions_finished"] += 1
        return counts

    # ------------------------------------------------------------------ deletion
    def delete_chat(self, workspace_id: str, chat_id: str) -> int:
        """Remove a chat's title, messages and parked messages; later deliveries of its messages are dropped.

        The tombstone is committed first: if a sink cannot delete now, the periodic retry pass finds the
        chat not yet purged and deletes it again.
        """
        with self.database.session() as session:
            store.tombstone(session, workspace_id, chat_id)
            backlog.forget_chat(session, workspace_id, chat_id)
        doc_ids = self._indexed_ids(workspace_id, chat_id)
        removed = self.indexer.delete_documents(doc_ids) if doc_ids else 0
        with self.database.session() as session:
            store.mark_purged(session, workspace_id, chat_id)
        return removed

    def _indexed_ids(self, workspace_id: str, chat_id: str) -> list[str]:
        """The ledger's documents of one chat (its title and every message), in *workspace_id* only.

        First-version ids (``chats:<chat>[:<message>]``, recorded under this workspace) are included, with their
        new twins: until the upgrade (:mod:`pi_chats.rekey`) has re-keyed them, a chat may be indexed under both.
        """
        found = self.indexer.ledger.find_ids(
            workspace_id,
            SOURCE,
            ids=[ids.document_id(workspace_id, chat_id), ids.legacy_document_id(chat_id)],
            prefixes=[ids.messages_prefix(workspace_id, chat_id), ids.legacy_messages_prefix(chat_id)],
        )
        twins = [ids.document_id(workspace_id, *legacy) for doc_id in found if (legacy := ids.parse_legacy(doc_id))]
        return list(dict.fromkeys([*found, *twins]))
