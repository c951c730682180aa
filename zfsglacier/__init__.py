"""zfsglacier: back up OpenZFS datasets to any rclone remote and restore them verified.

The code map. Each layer imports only the layers below it (tests/unit/test_layers.py checks):

    cli.py        argparse subcommands; maps every typed error to its exit code, in one place
    commands/     one module per command (backup, restore, verify, prune, status, list): orchestration only
    stream/       the data path: the byte pumps, read-ahead/write-behind threads, ranged reads, volumes,
                  stall watch, upload sizing, progress              | policy/   decisions, no I/O of their
                                                                    |           own: send plan, chains,
                                                                    |           retention, chain locks,
                                                                    |           local snapshots, resume
                                                                    |           records
    remote/       rclone argv and answers, manifests, the index,    | zfs/      zfs argv and answers,
                  the catalog, leftovers, Glacier thaws, S3 Object  |           capabilities, delegation,
                  Lock (the bucket probe, locks read back)          |           stream size estimates
    config.py config_values.py proc.py signals.py         the config's schema and its value parsers; the
    lock.py background.py threads.py                      only module that starts processes; signals as
                                                          exceptions; locks; a call beside another; the
                                                          dataset a thread works for
    codec/  errors.py  names.py  units.py                 the ground: codecs, typed errors with exit
                                                          codes, name rules, sizes and durations

The two data paths (stream/pipeline.py follows each from end to end):

    backup:  zfs send --stdout--> [read-ahead thread] -> codec writer -> sha256 + counts -> [write-behind
             thread] -> rclone rcat --stdin--> the data object (cut into volumes past max_object_size);
             then the manifest, uploaded last: the commit; then the index, holds and pruning
    restore: rclone cat --offset --count, several ranges at once (stream/ranged_reads.py) -> in order,
             sha256 + counts -> codec reader -> [the last chunk held back until size and sha256 match]
             -> zfs receive --stdin; a chain of objects, full first, linked by guid

A failed or interrupted backup leaves nothing that looks like a backup: no manifest means no backup,
the new snapshot is destroyed (or kept, marked, for a resumable run of several volumes), and rclone is
killed before its stdin closes so that a half-written object is never completed.
"""

__version__ = "0.1.0"
