"""Test rig: real tools (zfs, zpool, rclone), file-backed pools, rclone remotes and test data.

Used by tests/conftest.py's fixtures; tests import it as `import rig` (tests/ is on sys.path), the
benchmarks as `from tests import rig`. Nothing here talks to anything but this machine: the S3
servers listen on 127.0.0.1 only.
"""

from .data import mutate, populate, seeded_random, tree_digest
from .pools import VDEV_SIZE, Pool, destroy_pool, file_pool, pool_exists
from .remotes import MotoServer, Remote, S3Server, cpu_seconds, free_port, local_remote, moto_server, s3_server
from .tools import POOL_PREFIX, CommandFailed, find_tool, in_ci, kernel_openzfs, need_tool, out, run, unavailable

__all__ = [
    "POOL_PREFIX",
    "VDEV_SIZE",
    "CommandFailed",
    "MotoServer",
    "Pool",
    "Remote",
    "S3Server",
    "cpu_seconds",
    "destroy_pool",
    "file_pool",
    "find_tool",
    "free_port",
    "in_ci",
    "kernel_openzfs",
    "local_remote",
    "moto_server",
    "mutate",
    "need_tool",
    "out",
    "pool_exists",
    "populate",
    "run",
    "s3_server",
    "seeded_random",
    "tree_digest",
    "unavailable",
]
