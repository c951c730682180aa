"""What failed or killed runs leave on the remote, and its removal: data objects without a manifest
(not backups) and unfinished multipart uploads (invisible in listings, billed). Run by every backup
and prune, under the dataset's lock."""

from __future__ import annotations

import logging
import re
from collections.abc import Collection

from zfsglacier import proc
from zfsglacier.errors import AccessDenied, ZfsglacierError
from zfsglacier.remote.catalog import Catalog
from zfsglacier.remote.manifest import snapshot_of_data_object, snapshot_of_partial
from zfsglacier.remote.rclone import Rclone

log = logging.getLogger(__name__)


def remove_orphans(rclone: Rclone, catalog: Catalog, keep: Collection[str] = ()) -> None:
    """Delete data objects without a manifest: what a failed or killed upload left (we hold the lock),
    and records of interrupted backups that will not be resumed. `keep`: the volumes and record of the
    backup this run resumes. A data object whose manifest went missing after its commit (the index
    proves it) is kept and reported."""
    kept_data = {name for gone in catalog.lost for name in gone.data_objects}
    records = [name for name in sorted(catalog.objects) if snapshot_of_partial(name) is not None]
    for name in catalog.orphans + records:
        path = catalog.path(name)
        if name in keep:
            continue
        if name in kept_data:
            # Its manifest is gone but was committed: deleting the data would lose a backup for good.
            log.warning("keeping %s: its manifest is missing, but the index shows that backup was committed; "
                        "run zfsglacier verify, then put the manifest back or delete the data by hand", path)
        else:
            record = name in records
            log.warning("removing %s: %s", path, "an interrupted backup's record" if record else
                        "a data object without a manifest is not a backup")
            try:
                rclone.delete(path, why="an interrupted backup's record" if record else "no manifest: not a backup")
            except AccessDenied as refused:
                log.warning("%s stays on the remote: %s", path, refused_delete(refused))


def refused_delete(refused: AccessDenied) -> str:
    """What to say of a delete the remote refused for want of permission (a backup-only credential)."""
    said = re.search(r"AccessDenied[^|]*", refused.stderr_tail)
    return (f"the remote refused to delete it ({said[0].strip() if said else refused.detail}): this credential may "
            "not delete; it is no backup (it has no manifest), and `zfsglacier prune` with a credential that may "
            "delete removes it")


def interrupted_backups(catalog: Catalog) -> set[str]:
    """The objects of interrupted backups that recorded volumes (and the records): left to the next backup,
    which resumes or removes them. Prune must not take them for orphans."""
    snapshots = {s for name in catalog.objects if (s := snapshot_of_partial(name)) is not None}
    objects = {name for name in catalog.objects
               if snapshot_of_data_object(name) in snapshots or snapshot_of_partial(name) in snapshots}
    for snapshot in sorted(snapshots):
        log.info("keeping the stored volumes of the interrupted backup of %s: the next backup resumes or removes "
                 "them", snapshot)
    return objects


def abort_unfinished_uploads(rclone: Rclone, catalog: Catalog) -> None:
    """A killed upload leaves an unfinished multipart upload on S3: invisible in listings, billed.
    Only uploads of this dataset's directory are touched, and we hold its lock: none is running.
    Failing to abort one is a warning: the backup itself does not depend on it."""
    try:
        aborted = rclone.abort_unfinished_uploads(catalog.directory)
        for key in aborted if not proc.dry_running() else []:
            log.warning("aborted the unfinished multipart upload of %s left by a failed or interrupted upload", key)
    except ZfsglacierError as exc:
        log.warning("unfinished multipart uploads in %s not aborted (the next backup tries again): %s",
                    catalog.directory, exc)
