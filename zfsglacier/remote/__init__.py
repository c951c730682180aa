"""What is on the remote and how to speak to it: rclone's argv and its answers (rclone), object
names and the manifest format (manifest), the index of manifests (manifest_index), the catalog a run
loads (catalog), what failed runs left (leftovers), and thawing objects in Glacier or Deep Archive
(thaw). May import the core and the ground; never zfs/ or a layer above."""
