"""config.ini texts for tests: a minimal good config, rendered, and the same with one key set."""

from __future__ import annotations

MINIMAL = {"zfs": {"dataset": "tank/data"}, "rclone": {"remote": "r", "bucket_name": "b"}}


def render(sections: dict[str, dict[str, str]]) -> str:
    return "".join(f"[{s}]\n" + "".join(f"{k} = {v}\n" for k, v in keys.items()) for s, keys in sections.items())


def with_value(section: str, key: str, value: str, base: dict[str, dict[str, str]] = MINIMAL) -> str:
    """`base` rendered, with `[section] key = value` added or replaced."""
    sections = {s: dict(keys) for s, keys in base.items()}
    sections.setdefault(section, {})[key] = value
    return render(sections)
