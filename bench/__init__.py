"""Codec-stage benchmark: in-process compression (the registry in zfsglacier.codec.registry) side by side with the
external tools it replaced (zstd, pigz, gzip), on one generated corpus or a saved stream.

Run it with `python -m bench`; the environment variables are described in bench.settings.
"""
