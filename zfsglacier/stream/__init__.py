"""The data path: the pumps between zfs and rclone (pipeline), the threads that let reading, coding
and writing overlap (readahead), parallel ranged reads of one object (ranged_reads), streams cut into
volumes (volumes), the watch for a stage that stops moving (stall), rclone's part size and concurrency
within the memory allowed (upload_sizing), and progress. May import remote/ (object names, how to read
one), the core and the ground; never commands/ or policy/."""
