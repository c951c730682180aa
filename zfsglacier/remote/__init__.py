"""What is on the remote and how to speak to it: rclone's calls (rclone) and their argv (rclone_argv),
what it prints (rclone_output), what its complaints mean, redacted (rclone_errors), what its config
says of a remote (rclone_config); object names and the manifest format (manifest), the index of
manifests (manifest_index), the catalog a run loads (catalog), and many at once (catalogs), what failed
runs left (leftovers), thawing objects in Glacier or Deep Archive (thaw), S3 Object Lock: the bucket
probe and the locks read back (object_lock), the drill record (drill_record), and the small JSON records
kept beside the backups (json_record). May import the core and the ground; never zfs/ or a layer above."""
