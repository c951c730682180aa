"""The record of a dataset's restore drills (`verify --drill`), kept beside its backups:
`<dataset>/zfsglacier.drill.json`, rewritten by each drill. `zfsglacier status` reads it, on any host
that reads the remote, and warns once the last successful drill is older than [monitoring]
verify_warn_after. It is not a backup and no restore reads it; like the index, it is written unlocked.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass

from zfsglacier.remote import json_record

DRILL_NAME = "zfsglacier.drill.json"
FORMAT = "zfsglacier-drill"
FORMAT_VERSION = 1


@dataclass(frozen=True)
class DrillRecord:
    last_run: str  # ISO 8601, UTC: when the last drill finished
    success: bool  # it verified at least one backup, and found no problem
    last_success: str | None  # when the last successful drill finished (None: none yet)
    snapshot: str | None  # the newest backup of the chain it verified
    deep: bool  # the chain was received into a scratch dataset, too
    verified: int  # backups whose objects were read and checked
    skipped: int  # backups in cold storage, not thawed by a drill
    bytes_read: int
    seconds: float

    def to_json(self) -> bytes:
        return json_record.encode(FORMAT, FORMAT_VERSION, asdict(self))

    @classmethod
    def from_json(cls, data: bytes) -> DrillRecord:
        """ValueError when `data` is not a record this version reads."""
        doc = json_record.decode(data, FORMAT, FORMAT_VERSION, "drill record")
        try:
            record = cls(**{name: doc[name] for name in cls.__dataclass_fields__})
        except (KeyError, TypeError) as exc:
            raise ValueError(f"a field is missing ({exc})") from None
        if not isinstance(record.last_run, str) or not isinstance(record.success, bool) \
                or not (record.last_success is None or isinstance(record.last_success, str)):
            raise ValueError("last_run, success or last_success is not what a drill writes")
        return record
