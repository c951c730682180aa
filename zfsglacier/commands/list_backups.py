"""`zfsglacier list`: the committed backups of the configured dataset, as a table or JSON."""

from __future__ import annotations

from zfsglacier.codec.registry import NO_COMPRESSION
from zfsglacier.remote.catalog import Catalog
from zfsglacier.remote.manifest import Manifest
from zfsglacier.units import human_bytes


def as_records(catalog: Catalog) -> list[dict[str, object]]:
    return [
        {
            "dataset": m.dataset,
            "snapshot": m.snapshot,
            "guid": m.guid,
            "kind": m.kind,
            "base": m.base,
            "raw_bytes": m.raw_bytes,
            "stored_bytes": m.stored_bytes,
            "compressor": m.compressor,
            "level": m.level,
            "send_flags": list(m.send_flags),
            "raw_send": m.raw,
            "sha256": m.sha256,
            "storage_class": m.storage_class,
            "lock_mode": m.lock_mode,
            "lock_until": m.lock_until,
            "properties": m.property_map if m.properties is not None else None,
            "created": m.created,
            "object": catalog.path(m.object),
            "volumes": [{"object": catalog.path(v.object), "stored_bytes": v.stored_bytes, "sha256": v.sha256}
                        for v in m.parts],
        }
        for m in catalog.manifests
    ]


def compression(m: Manifest) -> str:
    if m.raw:
        return "none (raw encrypted send)"
    return m.compressor if m.compressor == NO_COMPRESSION else f"{m.compressor} {m.level}"


def as_table(catalog: Catalog) -> str:
    locks = any(m.lock_mode for m in catalog.manifests)  # a column only where a backup is locked
    header = ("SNAPSHOT", "KIND", "BASE", "RAW", "STORED", "RATIO", "COMPRESSION", "CREATED",
              *(("LOCKED UNTIL",) if locks else ()))
    rows = [header]
    for m in catalog.manifests:
        ratio = f"{m.raw_bytes / m.stored_bytes:.2f}" if m.stored_bytes else "-"
        lock = f"{m.lock_until} ({m.lock_mode})" if m.lock_mode else "-"
        rows.append((m.snapshot, m.kind, m.base or "-", human_bytes(m.raw_bytes),
                     human_bytes(m.stored_bytes), ratio, compression(m), m.created, *((lock,) if locks else ())))
    if len(rows) == 1:
        return f"no committed backups in {catalog.directory}"
    widths = [max(len(row[i]) for row in rows) for i in range(len(header))]
    return "\n".join("  ".join(cell.ljust(w) for cell, w in zip(row, widths, strict=True)).rstrip()
                     for row in rows)
