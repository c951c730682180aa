"""The volumes of one backup: their names, how each is uploaded (part size, storage class, check flags)
and the partial record that lets an interrupted backup resume after the ones stored."""

from __future__ import annotations

import logging

from zfsglacier.config import BackupConfig
from zfsglacier.policy import resume
from zfsglacier.policy.send_plan import Plan
from zfsglacier.remote.catalog import Catalog
from zfsglacier.remote.manifest import Volume, partial_name, volume_name
from zfsglacier.remote.rclone import Rclone
from zfsglacier.stream.pipeline import VolumeTarget
from zfsglacier.stream.upload_sizing import UploadSizing, size_upload
from zfsglacier.units import human_bytes
from zfsglacier.zfs import cmd as zfs

log = logging.getLogger(__name__)

MIN_SIZE_CLASSES = frozenset({"STANDARD_IA", "ONEZONE_IA", "GLACIER_IR"})
MIN_BILLED_BYTES = 128 * 1024


def upload_sizing(cfg: BackupConfig, expected: int | None) -> UploadSizing:
    return size_upload(expected, cfg.max_upload_parts, cfg.upload_concurrency, cfg.upload_memory)


def data_storage_class(configured: str | None, expected_bytes: int | None) -> str | None:
    """[rclone] storage_class for a data object, except a stream known to be smaller than the minimum its
    class bills, which stays in the bucket's default class."""
    if configured in MIN_SIZE_CLASSES and expected_bytes is not None and expected_bytes < MIN_BILLED_BYTES:
        log.info("storing the %d-byte stream in the default storage class, not %s (which bills %d KiB at least)",
                 expected_bytes, configured, MIN_BILLED_BYTES // 1024)
        return None
    return configured


class BackupVolumes:
    """The volumes of one backup: how to upload them, and which the resume record holds."""

    def __init__(self, cfg: BackupConfig, rclone: Rclone, catalog: Catalog, plan: Plan, expected: int | None) -> None:
        self._cfg, self._rclone, self._catalog, self._plan = cfg, rclone, catalog, plan
        self.limit = cfg.max_object_size
        self.recorded: list[Volume] = list(plan.resumed.volumes) if plan.resumed else []
        self.record = partial_name(plan.short_name)
        volume_bytes = expected if self.limit is None or expected is None else min(expected, self.limit)
        self.sizing = upload_sizing(cfg, volume_bytes)
        self.storage_class = data_storage_class(cfg.storage_class, expected)

    def target(self, stored: tuple[Volume, ...]) -> VolumeTarget:
        flags = [*self.sizing.rclone_flags(), *self._rclone.unused_check_flags(self._cfg.remote, self.sizing.multipart)]

        def rcat_argv(name: str) -> list[str]:
            return self._rclone.rcat_argv(self._catalog.path(name), self.storage_class, flags, self._plan.lock)

        resumable = resume.can_resume(self._plan.level, self.limit)
        return VolumeTarget(rcat_argv, self.name, self.limit, stored, self._write_record if resumable else None)

    def name(self, number: int) -> str:
        return volume_name(self._plan.object_name, number)

    def _write_record(self, volumes: list[Volume]) -> None:
        plan, short = self._plan, self._plan.short_name
        snapshot = next(s for s in zfs.list_snapshots(self._cfg.dataset) if s.short_name == short)
        record = resume.PartialBackup(
            self._cfg.dataset, short, snapshot.guid, plan.base.short_name if plan.base else None,
            plan.base.guid if plan.base else None, plan.send_flags, plan.compressor, int(plan.level),
            self.limit or 0, plan.object_name, tuple(volumes))
        self._rclone.write(self._catalog.path(self.record), record.to_json())
        self.recorded = list(volumes)
        log.info("%s: volume %d stored (%s in all so far)", plan.snapshot, len(volumes),
                 human_bytes(record.stored_bytes))

    def forget(self) -> list[str]:
        """The stored volumes and the record are of no use any more: their names, to delete."""
        names = [v.object for v in self.recorded] + [self.record]
        self.recorded = []
        return names
