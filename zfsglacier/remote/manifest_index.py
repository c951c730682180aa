"""The catalog index: every committed manifest of a dataset's directory, copied into one object.

Reading a thousand manifests one by one takes a thousand requests; the index lets `list`, chain
resolution and restore planning cost one listing and one read. The manifests stay the truth: an
index entry is used only for a manifest object the listing shows, with exactly the entry's size,
and the index is rewritten after each commit (never before: it only ever copies committed
manifests). A missing, stale or unreadable index only makes loading slower.

One thing the index decides: a data object whose manifest object is gone is kept (and reported)
while the index holds that manifest, since it was committed; the rewrite keeps such entries.
"""

from __future__ import annotations

from zfsglacier.remote import json_record

INDEX_NAME = "zfsglacier.index.json"
FORMAT = "zfsglacier-index"
FORMAT_VERSION = 1


def encode(manifests: dict[str, bytes]) -> bytes:
    """`manifests`: manifest object name -> the object's exact bytes. A manifest that is not UTF-8
    (JSON may be UTF-16 too; zfsglacier never writes one) is left out and read from its object."""
    texts = {}
    for name, data in sorted(manifests.items()):
        try:
            texts[name] = data.decode("utf-8")
        except UnicodeDecodeError:
            continue
    return json_record.encode(FORMAT, FORMAT_VERSION, {"manifests": texts})


def decode(data: bytes) -> dict[str, bytes]:
    """The entries of an index; ValueError when it is not one this version reads."""
    entries = json_record.decode(data, FORMAT, FORMAT_VERSION, "index").get("manifests")
    if not isinstance(entries, dict) or not all(isinstance(v, str) for v in entries.values()):
        raise ValueError("its manifests are not a map of names to texts")
    return {str(name): text.encode() for name, text in entries.items()}


def usable_entries(entries: dict[str, bytes], listed_sizes: dict[str, int]) -> dict[str, bytes]:
    """Entries whose manifest object is on the remote with the same size; the rest must be read."""
    return {name: data for name, data in entries.items() if listed_sizes.get(name) == len(data)}
