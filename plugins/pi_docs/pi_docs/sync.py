"""The docs sync: per configured repository, bring the index to the branch's latest commit with few API calls.

Per repository (see the plugin README for the full story):

1. ``head`` with the stored ETag: a 304 (or the stored SHA) ends the run for that repository.
2. No stored SHA (or ``full``): list the commit's tree, index every doc file, delete indexed docs of
   the repository that are no longer in it.
3. Otherwise the files changed between the stored SHA and the new one (compare API; a diff of the
   two trees when the comparison may be incomplete).
4. Deletions first, then the changed files, fetched one by one and streamed into the indexer.
5. The new SHA and ETag are stored only once every change went through the indexer, so an
   interrupted run (or one that hit a rate limit or an HTTP error) is simply redone by the next one;
   the indexer skips content it already has. Files the indexer refused are stored as ``pending``
   and fetched again by every later run until they go through (they do not hold back the SHA).
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterable, Iterator
from dataclasses import asdict, dataclass, field
from typing import Any

from loguru import logger

from pi_docs import metrics as docs_metrics
from pi_docs.backends import Backend, GitHubBackend, Head, LocalGitBackend, html_url_for
from pi_docs.github import GitHubClient, GitHubError, NotFound
from pi_docs.repos import RepoSpec, RepoSpecError, parse_repo_spec
from pi_docs.settings import DocsSettings, docs_settings
from pi_docs.text import NotText, parse_document
from pi_framework.api import Database, Document, Indexer, PluginState, Settings, get_database

SOURCE = "docs"
#: per repository entry (scope :attr:`RepoSpec.scope`): its synced SHA and ETag, files pending, its last error
STATE = PluginState.reserved(SOURCE)
Progress = Callable[[RepoSpec, int, int], None]


@dataclass
class RepoResult:
    """What one run did to one repository (logged, returned by the task, printed by ``pi feed-docs``)."""

    repo: str
    status: str = "unchanged"  # unchanged | synced | failed
    mode: str = "none"  # none (304 or same SHA) | full | compare | tree-diff | retry (failed files only)
    sha: str | None = None
    added: int = 0
    updated: int = 0
    removed: int = 0
    unchanged: int = 0
    skipped: int = 0
    failed: dict[str, str] = field(default_factory=dict)
    api_calls: int = 0
    seconds: float = 0.0
    error: str | None = None

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)


@dataclass
class _Plan:
    mode: str
    index: list[str]
    delete: set[str]
    new: set[str]


class DocsSync:
    """Runs the sync for a list of repositories; one repository's failure never stops the others."""

    def __init__(
        self,
        settings: Settings,
        indexer: Indexer | None = None,
        database: Database | None = None,
        client: GitHubClient | None = None,
        progress: Progress | None = None,
        docs: DocsSettings | None = None,
    ) -> None:
        self.settings = settings
        self.docs = docs or docs_settings()
        self.database = database or get_database(settings)
        self._indexer = indexer
        self.client = client or make_client(self.docs)
        self.progress = progress

    @property
    def indexer(self) -> Indexer:
        """Built on first use: a run that ends at the 304 never loads sinks or the embedder."""
        if self._indexer is None:
            self._indexer = Indexer(database=self.database, settings=self.settings)
        return self._indexer

    # ------------------------------------------------------------------ entry points
    def run(self, repos: Iterable[RepoSpec | str] | None = None, full: bool = False) -> list[RepoResult]:
        started, calls = time.monotonic(), self.client.calls
        results = []
        for entry in repos if repos is not None else self.docs.PI_DOCS_REPOS:
            try:
                spec = parse_repo_spec(entry) if isinstance(entry, str) else entry
            except RepoSpecError as exc:
                logger.error("docs: {}", exc)
                results.append(RepoResult(repo=str(entry), status="failed", error=str(exc)))
                continue
            results.append(self.sync_repo(spec, full=full))
        logger.info(
            "docs sync: {} repositories ({} synced, {} unchanged, {} failed), {} API calls, {:.2f}s",
            len(results),
            sum(r.status == "synced" for r in results),
            sum(r.status == "unchanged" for r in results),
            sum(r.status == "failed" for r in results),
            self.client.calls - calls,
            time.monotonic() - started,
        )
        return results

    def sync_repo(self, spec: RepoSpec, full: bool = False) -> RepoResult:
        backend = self.backend(spec)
        result = RepoResult(repo=str(spec))
        started, calls = time.monotonic(), backend.calls
        try:
            self._sync(spec, backend, full, result)
        except GitHubError as exc:
            result.status, result.error = "failed", str(exc)
        except Exception as exc:  # noqa: BLE001 - one repository's failure must not stop the others
            logger.exception("docs {}: unexpected error", spec)
            result.status, result.error = "failed", f"{type(exc).__name__}: {exc}"
        finally:
            result.api_calls = backend.calls - calls
            result.seconds = round(time.monotonic() - started, 3)
        docs_metrics.docs_synced(str(spec), result.status)
        if result.status == "failed":
            logger.error("docs {}: sync failed after {} API calls: {}", spec, result.api_calls, result.error)
            self._record_failure(spec, result.error or "")
        else:
            logger.info(
                "docs {}: {} mode={} sha={} added={} updated={} removed={} unchanged={} skipped={} api_calls={} in {:.2f}s",
                spec, result.status, result.mode, (result.sha or "")[:12], result.added, result.updated, result.removed,
                result.unchanged, result.skipped, result.api_calls, result.seconds,
            )  # fmt: skip
        return result

    def backend(self, spec: RepoSpec) -> Backend:
        if spec.is_local:
            return LocalGitBackend(spec)
        return GitHubBackend(spec, self.client, html_url_for(self.docs.PI_GITHUB_API_URL))

    # ------------------------------------------------------------------ one repository
    def _sync(self, spec: RepoSpec, backend: Backend, full: bool, result: RepoResult) -> None:
        state = {} if full else self.load_state(spec)
        base, pending = state.get("sha"), list(state.get("pending", []))
        # files that failed last time are retried even when the branch did not move: no conditional request then
        head = backend.head(state.get("etag") if base and not pending else None)
        if head is None:
            result.sha = base
            return
        result.sha = head.sha
        if base == head.sha and not pending:
            if head.etag != state.get("etag"):
                self.save_state(spec, head)
            return
        if base == head.sha:
            plan = _Plan("retry", sorted(pending), set(), set())
        else:
            plan = self._plan(spec, backend, base, head.sha)
            if plan.mode != "full":
                plan.index = sorted(set(plan.index) | {path for path in pending if path not in plan.delete})
        result.mode = plan.mode
        removed = self.indexer.delete_documents([spec.document_id(path) for path in sorted(plan.delete)]) if plan.delete else 0
        skipped: list[str] = []
        stats = self.indexer.index(self._documents(spec, backend, head.sha, plan.index, skipped))
        if skipped:
            # a file that turned binary must not stay searchable with its old text
            removed += self.indexer.delete_documents([spec.document_id(path) for path in skipped])
        result.removed = removed
        result.skipped = len(skipped)
        result.unchanged = stats.documents_unchanged
        result.failed = dict(stats.failed)
        failed_paths = [path for path in plan.index if _refused(spec.document_id(path), result.failed)]
        result.added = len([p for p in plan.new if p not in skipped and p not in failed_paths])
        result.updated = max(0, stats.documents_indexed - result.added)
        # the SHA moves on only now that every change is in the index; files the indexer refused are kept to retry
        self.save_state(spec, head, pending=failed_paths)
        result.status = "synced"
        if result.failed:
            result.status = "failed"
            result.error = f"{len(result.failed)} document(s) not indexed, retried next run"
            for doc_id, reason in result.failed.items():
                logger.error("docs {}: {} not indexed: {}", spec, doc_id, reason)

    def _plan(self, spec: RepoSpec, backend: Backend, base: str | None, head: str) -> _Plan:
        if base is not None:
            try:
                changes = backend.changes(base, head)
            except NotFound:
                logger.warning("docs {}: last synced commit {} is gone; full feed", spec, base[:12])
            else:
                if changes is not None:
                    return self._plan_from_changes(spec, changes)
                return self._plan_from_trees(spec, dict(backend.files(base)), dict(backend.files(head)))
        files = [path for path, _ in backend.files(head) if spec.wants(path)]
        known = set(self._indexed_paths(spec))
        return _Plan("full", sorted(files), known - set(files), set(files) - known)

    @staticmethod
    def _plan_from_changes(spec: RepoSpec, changes: Iterable[Any]) -> _Plan:
        index: set[str] = set()
        delete: set[str] = set()
        new: set[str] = set()
        for change in changes:
            if change.status == "removed":
                delete.add(change.path)
                continue
            if change.status == "renamed" and change.previous:
                delete.add(change.previous)
            if change.status in ("added", "copied", "renamed"):
                new.add(change.path)
            if change.status != "unchanged":
                index.add(change.path)
        index = {path for path in index if spec.wants(path)}
        return _Plan("compare", sorted(index), {path for path in delete if spec.wants(path)} - index, new & index)

    @staticmethod
    def _plan_from_trees(spec: RepoSpec, old: dict[str, str], new: dict[str, str]) -> _Plan:
        index = sorted(path for path, blob in new.items() if spec.wants(path) and old.get(path) != blob)
        delete = {path for path in old if spec.wants(path) and path not in new}
        return _Plan("tree-diff", index, delete, {path for path in index if path not in old})

    def _indexed_paths(self, spec: RepoSpec) -> Iterator[str]:
        start = len(spec.document_id(""))
        for doc_id in self.indexer.indexed_ids(None, SOURCE):
            if doc_id.startswith(spec.id_prefix) and spec.wants(doc_id[start:]):
                yield doc_id[start:]

    def _documents(self, spec: RepoSpec, backend: Backend, sha: str, paths: list[str], skipped: list[str]) -> Iterator[Document]:
        for done, path in enumerate(paths, 1):
            try:
                parsed = parse_document(backend.read(sha, path), path)
            except NotText as exc:
                logger.warning("docs {}: {} skipped: {}", spec, spec.document_id(path), exc)
                skipped.append(path)
                continue
            finally:
                if self.progress is not None:
                    self.progress(spec, done, len(paths))
            yield Document(
                id=spec.document_id(path),
                source=SOURCE,
                kind=SOURCE,
                workspace_id=None,
                title=parsed.title,
                body=parsed.body,
                body_format=parsed.body_format,  # type: ignore[arg-type]
                url=backend.url(path),
                metadata={**parsed.metadata, "repository": spec.name, "path": path},
            )

    # ------------------------------------------------------------------ state
    def load_state(self, spec: RepoSpec) -> dict[str, Any]:
        return STATE.load(spec.scope) or {}

    def _record_failure(self, spec: RepoSpec, error: str) -> None:
        """Keep the last error beside the cursor (for ``pi health``); the SHA is left as it was."""
        failure = {"last_error": error, "failed_at": time.time()}
        try:
            STATE.update(spec.scope, lambda cursor: {**(cursor or {}), **failure})
        except Exception as exc:  # noqa: BLE001 - the failure itself is already logged
            logger.warning("docs {}: could not record the failure: {}", spec, exc)

    def prune(self, specs: Iterable[RepoSpec]) -> int:
        """Delete indexed docs that no entry of *specs* covers (a repository or prefix removed from the configuration)."""
        specs = list(specs)
        stale = [
            doc_id
            for doc_id in self.indexer.indexed_ids(None, SOURCE)
            if not any(
                doc_id.startswith(spec.document_id("")) and spec.wants(doc_id[len(spec.document_id("")) :]) for spec in specs
            )
        ]
        removed = self.indexer.delete_documents(stale) if stale else 0
        logger.info("docs: pruned {} document(s) of repositories no longer configured", removed)
        return removed

    def save_state(self, spec: RepoSpec, head: Head, pending: list[str] | None = None) -> None:
        """Record *head* as synced; *pending* files (refused by the indexer) are retried by the next run."""
        STATE.save(spec.scope, {"sha": head.sha, "etag": head.etag, "pending": pending or [], "synced_at": time.time()})


def _refused(document_id: str, failed: dict[str, str]) -> bool:
    """Did the indexer refuse *document_id*? It may report an over-long id cut short, so match by prefix."""
    return any(document_id.startswith(key) for key in failed)


def make_client(settings: DocsSettings) -> GitHubClient:
    token = settings.GITHUB_TOKEN.get_secret_value() if settings.GITHUB_TOKEN else None
    return GitHubClient(
        settings.PI_GITHUB_API_URL,
        settings.PI_GITHUB_RAW_URL,
        token,
        timeout=settings.PI_GITHUB_TIMEOUT,
        retries=settings.PI_GITHUB_RETRIES,
        backoff=settings.PI_GITHUB_BACKOFF,
        max_wait=settings.PI_GITHUB_MAX_WAIT,
    )
