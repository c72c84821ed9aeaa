"""Names in the PI database's ``sync_states`` that no source may take (the registry refuses a source named like one).

A source's cursor is the row ``(source name, workspace)``; the rows below belong to others, so a source of the same
name would read and overwrite them (see :mod:`pi_framework.sync.state` for who owns which rows). A plugin reserves the
names of rows it keeps (from before ``plugin:<name>`` existed) with the ``register_state_names`` hook.
"""

from __future__ import annotations

#: ``{"at": iso}``: when every id of the workspace was last compared with the ledger
RECONCILE = "reconcile"
#: ``{"since": iso, "pending": n, "path": ...}``: the workspace has had pending work since then
PENDING = "pending-work"
#: ``{document id: {"source", "attempts", "reason"[, "retry_at"]}}``: documents a live sync could not index: retried
#: from the cursor next tick, then parked (``retry_at``) and retried with backoff
RETRIES = "document-retries"
#: ``{"logged_at": iso, "errors": {stage: {"error", "since", "at", "workspace"}}}`` per source (scope: the source's name):
#: the last error of a source that raised at run time, per stage (``tick``, ``live_sync``, ``reconcile``), until that
#: stage works again (:mod:`pi_framework.sync.isolation`)
SOURCE_ERRORS = "source-errors"
#: the sync machinery's own rows
RESERVED = frozenset({RECONCILE, PENDING, RETRIES, SOURCE_ERRORS})
#: prefix of a plugin's own rows: ``plugin:<plugin name>``
PLUGIN_PREFIX = "plugin:"
