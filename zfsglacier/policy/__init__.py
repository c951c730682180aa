"""Decisions: what the next backup is based on (send_plan, chain), which chains the remote keeps
(retention), how long a chain's objects are locked and when a chain must end for it (chain_lock),
which local snapshots are held and pruned (local_snapshots), and the record of an
interrupted backup of several volumes (resume). They read the catalog and the local snapshots through
remote/ and zfs/; they move no bytes. May import remote/, zfs/, the core and the ground; never
commands/ or stream/."""
