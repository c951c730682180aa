"""Compression: one registry of codecs (registry) that drives the CLI's choices, config validation,
object suffixes, format detection and the round-trip test; the adaptive level (adaptive); the walk
over zstd frames that restores and verifies rely on (zstd_frames). The ground floor: imports nothing
else of zfsglacier, since the manifest format depends on it."""
