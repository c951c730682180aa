"""`zfsglacier verify --drill`: the scheduled restore drill (systemd/zfsglacier-verify.timer), which proves
every week that the newest backup of each dataset restores, and says so to monitoring.

The chain a restore of the newest backup needs is downloaded and checked as `verify` checks it (sizes,
sha256, every manifest read itself); with [verify] deep = yes it is also received into a scratch dataset
on [verify] scratch_pool (else the dataset's own pool), and destroyed after. A drill never thaws: a
backup in Glacier or Deep Archive is skipped, with why, and what thawing it for a full drill would
cost. A drill succeeds when it verified at least one backup and found nothing wrong.

The outcome goes to the drill record beside the backups (remote/drill_record.py), which `zfsglacier
status` reads ([monitoring] verify_warn_after), and to [monitoring] textfile (commands/metrics.py).
"""

from __future__ import annotations

import contextlib
import logging
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime

from zfsglacier.commands.metrics import record_drill
from zfsglacier.commands.restore import read_settings
from zfsglacier.commands.verify import check_backup, receive_into_scratch, to_verify
from zfsglacier.config import BackupConfig
from zfsglacier.errors import EXIT_INTEGRITY, EXIT_OK, SignalReceived, ZfsglacierError
from zfsglacier.remote import thaw
from zfsglacier.remote.catalog import Catalog, load_catalog
from zfsglacier.remote.drill_record import DRILL_NAME, DrillRecord
from zfsglacier.remote.manifest import Manifest
from zfsglacier.remote.rclone import Rclone, rclone_for
from zfsglacier.signals import step

log = logging.getLogger(__name__)


def _now() -> datetime:
    """The clock drills are stamped with (a seam for tests)."""
    return datetime.now(UTC)


@dataclass
class DrillResult:
    """What a drill did: its exit code, the chain it checked, what it verified and skipped."""

    code: int = EXIT_OK
    chain: list[Manifest] = field(default_factory=list)
    verified: int = 0  # backups whose objects were read and checked
    skipped: int = 0  # backups in cold storage
    read: int = 0  # bytes read from the remote
    deep: bool = False  # the chain was received into a scratch dataset


def drill(cfg: BackupConfig, *, echo: Callable[[str], None] = print, deep: bool = False,
          streams: int | None = None) -> int:
    """`deep`: --deep, which a drill also does when [verify] deep = yes. Returns the exit code: 0, or the
    first problem's."""
    started = time.monotonic()
    rclone = rclone_for(cfg)
    catalog: Catalog | None = None
    with step(f"drilling the restore of {cfg.dataset}"):
        try:
            catalog = load_catalog(cfg, rclone, read_manifests=True)
            result = _drill(cfg, rclone, catalog, echo, deep or cfg.verify.deep, streams)
        except SignalReceived:
            raise
        except ZfsglacierError as exc:
            _record(cfg, rclone, catalog, started, DrillResult(code=exc.exit_code))
            raise
        _record(cfg, rclone, catalog, started, result)
    return result.code


def _drill(cfg: BackupConfig, rclone: Rclone, catalog: Catalog, echo: Callable[[str], None], deep: bool,
           streams: int | None) -> DrillResult:
    reads = read_settings(cfg, rclone, streams)
    result = DrillResult(chain=to_verify(catalog, None, every=False))
    chain = result.chain
    frozen = thaw.frozen_objects(rclone, catalog, chain)
    cold = {name for f in frozen for name in _owners(chain, f)}
    result.skipped = len(cold)
    errors: list[ZfsglacierError] = []
    for manifest in chain:
        if manifest.snapshot in cold:
            echo(f"SKIPPED {manifest.snapshot}  in cold storage and not thawed: a drill never thaws")
            continue
        outcome = check_backup(rclone, catalog, manifest, reads)
        echo(outcome.line())
        result.verified += 1
        result.read += manifest.stored_bytes
        if outcome.error is not None:
            errors.append(outcome.error)
    for line in thaw.plan_lines(frozen, thaw.NO_WAIT):
        echo(f"# for a drill of the whole chain: {line}")
    if deep and not errors:
        if frozen:
            echo(f"SKIPPED deep: the chain of {chain[-1].snapshot} is not all readable without a thaw")
        else:
            scratch = receive_into_scratch(cfg, rclone, catalog, chain, reads)
            result.read += sum(m.stored_bytes for m in chain)
            result.deep = True
            echo(f"OK      chain of {len(chain)} backup(s) up to {chain[-1].snapshot} received into {scratch} "
                 "(destroyed again), every snapshot's guid matches")
    for problem in catalog.damaged:
        echo(f"FAILED  {problem}")
    if errors:
        result.code = errors[0].exit_code
    elif catalog.damaged:
        codes = [error.exit_code for error in catalog.unusable.values()]
        result.code = min(codes) if codes else EXIT_INTEGRITY
    return result


def _owners(chain: list[Manifest], frozen: thaw.Frozen) -> list[str]:
    return [m.snapshot for m in chain if frozen.volume in m.parts]


def _record(cfg: BackupConfig, rclone: Rclone, catalog: Catalog | None, started: float, result: DrillResult) -> None:
    """The drill's outcome: in the record beside the backups and in the textfile. Failing to write either is
    a warning: the drill's own outcome is what counts."""
    finished, seconds = _now(), time.monotonic() - started
    success = result.code == EXIT_OK and result.verified > 0
    if result.code == EXIT_OK and not result.verified:
        log.warning("%s: the drill verified no backup (all are in cold storage): it does not count as a success",
                    cfg.dataset)
    record_drill(cfg.monitoring.textfile, cfg.dataset, success=success, finished=finished, seconds=seconds,
                 bytes_read=result.read)
    if catalog is None:
        return
    previous = _previous(rclone, catalog)
    record = DrillRecord(finished.isoformat(timespec="seconds"), success,
                         finished.isoformat(timespec="seconds") if success else (previous.last_success
                                                                                 if previous else None),
                         result.chain[-1].snapshot if result.chain else None, result.deep, result.verified,
                         result.skipped, result.read, round(seconds, 1))
    try:
        rclone.write(catalog.path(DRILL_NAME), record.to_json())
    except ZfsglacierError as exc:
        log.warning("the drill's record %s was not written (status cannot see this drill): %s",
                    catalog.path(DRILL_NAME), exc)


def _previous(rclone: Rclone, catalog: Catalog) -> DrillRecord | None:
    if DRILL_NAME not in catalog.objects:
        return None
    with contextlib.suppress(ZfsglacierError, ValueError):
        return DrillRecord.from_json(rclone.read(catalog.path(DRILL_NAME)))
    return None
