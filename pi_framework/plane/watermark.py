"""Change detection on a table by its ``updated_at`` column, safe against late commits and clock skew.

A scan reads rows with ``updated_at > at - overlap`` (``at`` = the database's clock when the
previous scan started) in keyset pages ordered by ``(updated_at, id)``. Rows already seen with the
same ``updated_at`` are skipped, so the overlap costs a re-read of recent rows, never a re-index:

* *same timestamp*: many rows sharing one ``updated_at`` are paged by the id tie-break and
  told apart by id in ``seen``;
* *late commit*: a transaction that commits after a scan, with an ``updated_at`` taken before it,
  is still inside the overlap window on the next scan;
* *clock skew*: ``at`` is the database's clock, not the newest ``updated_at`` (an application server
  whose clock runs ahead cannot push the watermark past rows other servers are still writing);
  rows stamped in the future stay in ``seen`` until the window passes them.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any


@dataclass
class Watermark:
    at: datetime | None = None
    seen: dict[str, str] = field(default_factory=dict)

    @classmethod
    def load(cls, state: dict[str, Any] | None) -> Watermark:
        if not state or not state.get("at"):
            return cls()
        return cls(datetime.fromisoformat(state["at"]), dict(state.get("seen") or {}))

    def dump(self) -> dict[str, Any]:
        return {"at": self.at.isoformat() if self.at else None, "seen": self.seen}

    def lower_bound(self, overlap: timedelta) -> datetime | None:
        return None if self.at is None else self.at - overlap

    def is_new(self, row_id: str, updated_at: datetime) -> bool:
        return self.seen.get(row_id) != updated_at.isoformat()

    def advanced(self, scan_started_at: datetime, observed: dict[str, datetime], overlap: timedelta) -> Watermark:
        """The watermark after a scan that started at *scan_started_at* (database clock) and read *observed*."""
        floor = scan_started_at - overlap
        seen = {row_id: stamp for row_id, stamp in self.seen.items() if datetime.fromisoformat(stamp) > floor}
        seen.update({row_id: stamp.isoformat() for row_id, stamp in observed.items() if stamp > floor})
        return Watermark(scan_started_at, seen)
