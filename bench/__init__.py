"""zfsglacier's benchmarks (`make bench`), apart from the tests:

    python -m bench                  codec stage: in-process compression (zfsglacier.codec.registry) side by
                                     side with the external tools it replaced (zstd, pigz, gzip): bench/codec/
    python -m bench.e2e              end to end: zfsglacier backup, restore and verify against the shell
                                     pipelines, each stage alone, on local, S3 and modelled-WAN remotes: bench/e2e/
    python -m bench.adaptive         level = auto against fixed levels
    python -m bench.rss              the zfsglacier process's peak memory
    python -m bench.catalog          list and restore planning with 1,000 backups
    python -m bench.send_compressed  zfs send -c under compression (OpenZFS only)
    python -m bench.wan --check      the WAN model's proxy against its model (bench/wan_check.py)

Shared: settings (the environment variables), corpus (generated input), machine and provenance (what was
measured, on what), chart. The test rig (file-backed pools, `rclone serve s3`) comes from tests/rig.
"""
