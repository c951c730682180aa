"""The small JSON records zfsglacier keeps beside the backups (the index, resume records, drill records):
their `format` and `version` first, then their fields. A record is read back only when both match."""

from __future__ import annotations

import json
from collections.abc import Mapping
from typing import Any


def encode(format_name: str, version: int, fields: Mapping[str, Any]) -> bytes:
    return (json.dumps({"format": format_name, "version": version, **fields}, indent=1) + "\n").encode()


def decode(data: bytes, format_name: str, version: int, what: str) -> dict[str, Any]:
    """The record's keys; ValueError, saying why, when `data` is not a version `version` `what`."""
    try:
        doc = json.loads(data)
    except (ValueError, UnicodeDecodeError) as exc:
        raise ValueError(f"not valid JSON ({exc})") from None
    if not isinstance(doc, dict) or doc.get("format") != format_name or doc.get("version") != version:
        raise ValueError(f"not a version {version} zfsglacier {what}")
    return doc
