"""Several datasets in one config: `[zfs] dataset` may list several (one per line), and with
`[zfs] recursive = yes` every filesystem and volume below each is backed up too, each with its own
chain, snapshots, lock and remote folder (`<bucket>/<dataset>/`), so that any one restores alone.

A command over several datasets runs them one after another (a backup with `[run] parallel = N`: up to
N at once, side_by_side.py). A failure in one is reported on its own line and the others still run; the
exit code is the first failure's, in the datasets' order. A signal stops them all.
"""

from __future__ import annotations

import dataclasses
import logging
from collections.abc import Callable
from typing import TypeVar

from zfsglacier import names
from zfsglacier.commands import side_by_side
from zfsglacier.config import BackupConfig
from zfsglacier.errors import EXIT_CODES, EXIT_OK, SignalReceived, UsageError, ZfsglacierError
from zfsglacier.remote.rclone import Rclone
from zfsglacier.zfs import cmd as zfs

log = logging.getLogger(__name__)
T = TypeVar("T")


def configured(cfg: BackupConfig) -> tuple[str, ...]:
    return cfg.datasets or (cfg.dataset,)


def for_dataset(cfg: BackupConfig, dataset: str) -> BackupConfig:
    """The config of one dataset: the same settings, its own name (so its own lock, chain and folder)."""
    return dataclasses.replace(cfg, dataset=dataset, datasets=())


def _unique(items: list[str]) -> list[str]:
    return list(dict.fromkeys(items))


def local_targets(cfg: BackupConfig) -> list[BackupConfig]:
    """What a backup covers: the configured datasets and, with `recursive`, every one below them."""
    found: list[str] = []
    for top in configured(cfg):
        found += zfs.list_tree(top) if cfg.recursive else [top]
    return [for_dataset(cfg, name) for name in _unique(found)]


def remote_targets(cfg: BackupConfig, rclone: Rclone) -> list[BackupConfig]:
    """What list, verify, prune and status cover: the configured datasets and, with `recursive`, every
    dataset below them that has a folder on the remote (also one since destroyed locally)."""
    found: list[str] = []
    for top in configured(cfg):
        found.append(top)
        if cfg.recursive:
            base = dataclasses.replace(cfg, dataset=top).remote_dir
            found += [f"{top}/{sub}" for sub in rclone.list_subdirs(base)
                      if names.dataset_problem(f"{top}/{sub}") is None]
    return [for_dataset(cfg, name) for name in _unique(found)]


def choose(cfg: BackupConfig, dataset: str | None) -> BackupConfig:
    """The one dataset a restore acts on: `--dataset`, needed when the config covers several."""
    tops = configured(cfg)
    if dataset is None:
        if len(tops) == 1:
            return for_dataset(cfg, tops[0])
        raise UsageError(f"the config backs up {len(tops)} datasets: choose one with --dataset "
                         f"({', '.join(tops)})")
    if dataset in tops or (cfg.recursive and any(dataset.startswith(f"{top}/") for top in tops)):
        return for_dataset(cfg, dataset)
    what = "nor below one of them ([zfs] recursive = yes)" if cfg.recursive else "([zfs] dataset)"
    raise UsageError(f"--dataset {dataset!r}: not a dataset this config backs up {what}: {', '.join(tops)}")


def local_trees(cfg: BackupConfig) -> list[tuple[str, list[BackupConfig]]]:
    """With `recursive`: each configured dataset and the datasets of its tree (one not in an earlier tree)."""
    seen: set[str] = set()
    trees = []
    for top in configured(cfg):
        tree = [name for name in zfs.list_tree(top) if name not in seen]
        seen |= set(tree)
        if tree:
            trees.append((top, [for_dataset(cfg, name) for name in tree]))
    return trees


def run_each(targets: list[BackupConfig], action: Callable[[BackupConfig], int], parallel: int = 1) -> int:
    """Run `action` for each dataset, up to `parallel` at once (side_by_side.py); returns the first non-zero
    exit code in the datasets' order, else 0. With one dataset, its error is raised as it is (one error
    line, as ever)."""
    if len(targets) == 1:
        return action(targets[0])
    if parallel > 1:
        return _side_by_side(targets, action, parallel)
    failed: list[tuple[str, int]] = []
    for target in targets:
        try:
            code = action(target)
        except SignalReceived:
            raise
        except ZfsglacierError as exc:
            log.error("error: %s: %s", target.dataset, exc)
            code = exc.exit_code
        if code != EXIT_OK:
            failed.append((target.dataset, code))
    return summarize(failed, len(targets))


def _side_by_side(targets: list[BackupConfig], action: Callable[[BackupConfig], int], parallel: int) -> int:
    log.info("%s", side_by_side.describe(targets[0], len(targets)))
    codes: dict[str, int] = {}

    def one(target: BackupConfig, ways: int) -> None:
        codes[target.dataset] = action(side_by_side.shared(target, ways))

    outcomes = side_by_side.run(targets, one, parallel, lambda target: target.dataset)
    return summarize(failures(outcomes, lambda target: target.dataset, codes), len(targets))


def failures(outcomes: side_by_side.Outcomes[T], name: Callable[[T], str],
             codes: dict[str, int] | None = None) -> list[tuple[str, int]]:
    """The failed items of a run side by side, in their order, each error logged as a run one by one logs it.
    An error that is not zfsglacier's own (a bug) is raised as it is."""
    failed = []
    for item, error in zip(outcomes.items, outcomes.errors, strict=True):
        if error is None:
            code = (codes or {}).get(name(item), EXIT_OK)
        elif isinstance(error, ZfsglacierError):
            log.error("error: %s: %s", name(item), error)
            code = error.exit_code
        else:
            raise error
        if code != EXIT_OK:
            failed.append((name(item), code))
    return failed


def summarize(failed: list[tuple[str, int]], total: int) -> int:
    """The last line of a run over several datasets, when some failed; the first failure's exit code."""
    if not failed:
        return EXIT_OK
    listed = ", ".join(f"{name} (exit {code}: {EXIT_CODES.get(code, 'failed')})" for name, code in failed)
    log.error("error: %d of %d datasets failed: %s", len(failed), total, listed)
    return failed[0][1]
