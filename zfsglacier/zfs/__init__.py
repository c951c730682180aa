"""What zfs is asked and what its answers mean: argv builders and parsers (cmd), what the installed
zfs can do (capabilities), what a user given `zfs allow` may do (delegation), and a stream's size
before it is sent (estimate). Every zfs child starts through proc. May import the core and the
ground; never remote/ or a layer above."""
