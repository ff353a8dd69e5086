"""LoadReport: everything a loader dropped, repaired, coerced or kept with a flag."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Literal

Action = Literal["dropped", "repaired", "coerced", "kept", "flagged"]
MAX_EXAMPLES = 5


@dataclass
class LoadEvent:
    """One kind of thing a loader did to records: how often, and the first record numbers."""

    reason: str
    action: Action
    description: str
    count: int = 0
    #: 1-based record numbers, or paths for events about files and folders (a skipped link)
    first_records: list[int | str] = field(default_factory=list)

    def to_dict(self) -> dict[str, Any]:
        return {"reason": self.reason, "action": self.action, "description": self.description,
                "count": self.count, "first_records": list(self.first_records)}


@dataclass
class LoadReport:
    """What loading one or more files did.

    ``n_records`` counts source records read; ``n_rows`` counts judgements (table rows)
    produced. Every record or field that was dropped, repaired, coerced or kept-but-flagged
    is counted in ``events`` by reason, with the first few 1-based record numbers.
    """

    sources: list[str] = field(default_factory=list)
    formats: list[str] = field(default_factory=list)
    n_records: int = 0
    n_rows: int = 0
    events: dict[str, LoadEvent] = field(default_factory=dict)

    def note(self, reason: str, record: int | str, action: Action, description: str) -> None:
        """Count one occurrence of ``reason`` at 1-based ``record`` (or at a path)."""
        ev = self.events.get(reason)
        if ev is None:
            ev = self.events[reason] = LoadEvent(reason, action, description)
        ev.count += 1
        if len(ev.first_records) < MAX_EXAMPLES:
            ev.first_records.append(record)

    def count(self, reason: str) -> int:
        """How often ``reason`` occurred (0 if never)."""
        ev = self.events.get(reason)
        return ev.count if ev else 0

    @property
    def n_dropped(self) -> int:
        """Number of records or judgements dropped."""
        return sum(e.count for e in self.events.values() if e.action == "dropped")

    def merge(self, other: LoadReport) -> None:
        """Add another report's counts into this one (for multi-file loads)."""
        self.sources += other.sources
        self.formats += other.formats
        self.n_records += other.n_records
        self.n_rows += other.n_rows
        for reason, ev in other.events.items():
            mine = self.events.get(reason)
            if mine is None:
                self.events[reason] = LoadEvent(ev.reason, ev.action, ev.description,
                                                ev.count, list(ev.first_records))
            else:
                mine.count += ev.count
                room = MAX_EXAMPLES - len(mine.first_records)
                mine.first_records += ev.first_records[:max(room, 0)]

    def to_dict(self) -> dict[str, Any]:
        return {"sources": list(self.sources), "formats": list(self.formats),
                "n_records": self.n_records, "n_rows": self.n_rows, "n_dropped": self.n_dropped,
                "events": [e.to_dict() for e in self.events.values()]}

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> LoadReport:
        rep = cls(list(d.get("sources", [])), list(d.get("formats", [])),
                  int(d.get("n_records", 0)), int(d.get("n_rows", 0)))
        for e in d.get("events", []):
            rep.events[e["reason"]] = LoadEvent(e["reason"], e["action"], e["description"],
                                                int(e["count"]), list(e["first_records"]))
        return rep

    def summary_lines(self) -> list[str]:
        """Human-readable lines, one per event."""
        return [f"{e.action:>8} {e.count:>7}  {e.reason}: {e.description} (first records: "
                f"{', '.join(map(str, e.first_records))})" for e in self.events.values()]
