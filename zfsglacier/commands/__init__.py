"""One module per command: backup, restore, verify, prune, status, list (list_backups), with what
they share above the mechanisms (datasets: which datasets a config covers; metrics: the Prometheus
textfile a run writes). Orchestration only: the bytes move in stream/, decisions are made in policy/,
the remote and zfs are spoken to through remote/ and zfs/. May import every layer below; cli.py
imports these."""
