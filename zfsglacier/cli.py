"""Command line: argparse subcommands, one function per command, and the one place where
errors become exit codes. Tracebacks only with --debug."""

from __future__ import annotations

import argparse
import contextlib
import faulthandler
import json
import logging
import signal
import sys
from collections.abc import Sequence
from datetime import UTC, datetime
from pathlib import Path

from zfsglacier import __version__, config, config_values, threads
from zfsglacier.commands import datasets, side_by_side, status, status_verdict
from zfsglacier.commands.backup import backup
from zfsglacier.commands.backup_tree import backup_tree
from zfsglacier.commands.drill import drill
from zfsglacier.commands.list_backups import as_records, as_table
from zfsglacier.commands.prune import prune
from zfsglacier.commands.restore import restore
from zfsglacier.commands.verify import verify
from zfsglacier.config import DEFAULT_CONFIG_PATH, BackupConfig, load_config
from zfsglacier.errors import EXIT_CODES, EXIT_INTEGRITY, EXIT_INTERNAL, EXIT_OK, EXIT_USAGE, ZfsglacierError
from zfsglacier.remote import object_lock, thaw
from zfsglacier.remote.catalog import Catalog, load_catalog
from zfsglacier.remote.catalogs import load_catalogs
from zfsglacier.remote.object_lock import stamp
from zfsglacier.remote.rclone import rclone_for
from zfsglacier.signals import signals_as_exceptions
from zfsglacier.stream import progress

log = logging.getLogger("zfsglacier")


def _exit_codes_epilog() -> str:
    return "exit codes:\n" + "\n".join(f"  {code:>3}  {text}" for code, text in EXIT_CODES.items())


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="zfsglacier",
        description="Back up OpenZFS datasets to any rclone remote, and restore them verified.",
        epilog=_exit_codes_epilog(),
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("--version", action="version", version=f"%(prog)s {__version__}")
    parser.add_argument("--debug", action="store_true", help="log every command run; tracebacks on errors")
    parser.add_argument("-q", "--quiet", action="store_true", help="only warnings and errors")
    parser.add_argument("--progress-interval", type=_seconds, default=progress.LOG_INTERVAL, metavar="SECONDS",
                        help="without a terminal, log a progress line this often (default "
                             f"{progress.LOG_INTERVAL:g}); on a terminal a progress bar is shown instead")
    commands = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")

    def command(name: str, help_text: str, dataset_help: str | None) -> argparse.ArgumentParser:
        sub = commands.add_parser(name, help=help_text, description=help_text)
        sub.add_argument("--config", type=Path, default=DEFAULT_CONFIG_PATH, metavar="FILE",
                         help=f"config file (default {DEFAULT_CONFIG_PATH})")
        if dataset_help:
            sub.add_argument("--dataset", metavar="POOL/NAME", help=dataset_help)
        return sub

    every = "only this one of the config's datasets (default: every one)"

    sub = command("backup", "Snapshot each dataset and send it (full or incremental) to the remote.", None)
    sub.add_argument("--full", action="store_true", help="send a full stream even if an incremental is possible")
    sub.add_argument("--dry-run", action="store_true", help="print the commands that would run; change nothing")

    sub = command("restore", "Restore a backup chain from the remote into a dataset.",
                  "the backed-up dataset to restore (needed when the config has several)")
    sub.add_argument("--target-dataset", required=True, metavar="POOL/NAME",
                     help="dataset to receive into (must not exist unless --force)")
    sub.add_argument("--snapshot", metavar="NAME",
                     help="restore up to this snapshot (default: the newest backup)")
    sub.add_argument("--yes", action="store_true", help="do not ask for confirmation")
    sub.add_argument("--force", action="store_true",
                     help="overwrite an existing target dataset (zfs receive -F)")
    sub.add_argument("--keep-mountpoint", action="store_true",
                     help="also set the backed-up dataset's mountpoint on the target (by default the target mounts "
                          "below its parent, never over the live dataset)")
    as_of_argument(sub, "restore")
    thaw_arguments(sub, "restore")
    streams_argument(sub)
    sub.add_argument("--dry-run", action="store_true",
                     help="show the plan and print the commands that would run; change nothing")

    sub = command("prune", "Delete the backup chains [retention] no longer keeps, and leftovers of failed runs.",
                  every)
    sub.add_argument("--dry-run", action="store_true", help="print what would be deleted; change nothing")

    sub = command("list", "List the committed backups on the remote.", every)
    sub.add_argument("--json", action="store_true", help="print a JSON array")
    as_of_argument(sub, "list")

    sub = command("verify", "Download backups and check them against their manifests (size, sha256).", every)
    which = sub.add_mutually_exclusive_group()
    which.add_argument("--snapshot", metavar="NAME",
                       help="the chain a restore of this snapshot needs (default: of the newest backup)")
    which.add_argument("--all", action="store_true", help="every committed backup")
    which.add_argument("--drill", action="store_true",
                       help="the scheduled restore drill (systemd/zfsglacier-verify.timer): the newest chain, --deep "
                            "when [verify] deep = yes, never a thaw (cold objects are skipped), the outcome recorded "
                            "for status and [monitoring] textfile")
    sub.add_argument("--deep", action="store_true",
                     help="also receive the chain into a throwaway dataset in the same pool, then destroy it")
    sub.add_argument("--yes", action="store_true",
                     help="objects in Glacier or Deep Archive: request their (billed) thaw without asking")
    as_of_argument(sub, "verify")
    thaw_arguments(sub, "verify")
    streams_argument(sub)

    command("status", "Monitoring check (a Nagios/Icinga plugin): the age of the newest backup against [monitoring] "
                      "warn_after and crit_after, one line on stdout. Its exit codes are the plugins': 0 OK, "
                      "1 WARNING, 2 CRITICAL, 3 UNKNOWN (the remote cannot be read, or the config is bad).", every)
    return parser


def thaw_arguments(sub: argparse.ArgumentParser, command: str) -> None:
    sub.add_argument("--wait", action="store_true",
                     help=f"objects in Glacier or Deep Archive: wait for their thaw, then {command} (else exit 9)")
    sub.add_argument("--thaw-priority", choices=thaw.PRIORITIES, default=thaw.DEFAULT_PRIORITY,
                     help=f"thaw priority for cold objects (default {thaw.DEFAULT_PRIORITY}; Bulk is cheaper "
                          "and slower)")
    sub.add_argument("--thaw-days", type=_days, default=thaw.DEFAULT_DAYS, metavar="N",
                     help=f"days a thawed copy stays readable (default {thaw.DEFAULT_DAYS})")


def as_of_argument(sub: argparse.ArgumentParser, command: str) -> None:
    sub.add_argument("--as-of", type=_as_of, metavar="TIME",
                     help=f"{command} the backups as the remote held them at TIME (a versioned S3 bucket: after an "
                          "attack, the objects deleted or overwritten since): 2026-11-30, '2026-11-30 04:00' "
                          "(this host's time zone) or 2026-11-30T04:00Z")


def _as_of(text: str) -> str:
    """A time in the past, as RFC 3339 in UTC (what rclone's --s3-version-at is given)."""
    try:
        moment = datetime.fromisoformat(text.strip())
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r}: expected a date or a time such as 2026-11-30, "
                                         "'2026-11-30 04:00' or 2026-11-30T04:00Z") from None
    moment = moment.astimezone(UTC)  # a time without an offset is this host's local time
    if moment > datetime.now(UTC):
        raise argparse.ArgumentTypeError(f"{text!r}: is in the future ({stamp(moment)})")
    return stamp(moment)


def streams_argument(sub: argparse.ArgumentParser) -> None:
    sub.add_argument("--streams", type=_streams, metavar="N",
                     help="read each object as N ranges at once, each on its own connection (default [restore] "
                          f"streams, {config.DEFAULT_RESTORE_STREAMS}; 1: one stream per object)")


def _streams(text: str) -> int:
    if not text.isdigit() or not 1 <= int(text) <= config_values.MAX_RESTORE_STREAMS:
        raise argparse.ArgumentTypeError(f"{text!r}: expected a whole number, 1 to {config_values.MAX_RESTORE_STREAMS}")
    return int(text)


def _thaw_options(args: argparse.Namespace) -> thaw.ThawOptions:
    return thaw.ThawOptions(args.thaw_priority, args.thaw_days, args.wait)


def _days(text: str) -> int:
    if not text.isdigit() or not 1 <= int(text) <= 365:
        raise argparse.ArgumentTypeError(f"{text!r}: expected a whole number of days, 1 to 365")
    return int(text)


def _seconds(text: str) -> float:
    try:
        seconds = float(text)
    except ValueError:
        seconds = -1.0
    if not 0 < seconds <= 86400:
        raise argparse.ArgumentTypeError(f"{text!r}: expected a number of seconds, more than 0, at most 86400")
    return seconds


def _ask(prompt: str) -> str | None:
    if not sys.stdin.isatty():
        return None
    try:
        return input(prompt)
    except EOFError:
        return None


def _targets(cfg: BackupConfig, args: argparse.Namespace) -> list[BackupConfig]:
    """The datasets a command covers: --dataset, else every one the config backs up."""
    if args.dataset is not None:
        return [datasets.choose(cfg, args.dataset)]
    return datasets.remote_targets(cfg, rclone_for(cfg, getattr(args, "as_of", None)))


def _list(cfg: BackupConfig, json_output: bool, several: bool,
          loaded: Catalog | ZfsglacierError) -> tuple[int, list[dict[str, object]], str]:
    if isinstance(loaded, ZfsglacierError):
        raise loaded
    catalog = loaded
    # The same code verify gives: 5 for a damaged manifest, 8 for a committed one gone missing.
    codes = [error.exit_code for error in catalog.unusable.values()]
    code = min(codes) if codes else EXIT_INTEGRITY if catalog.damaged else EXIT_OK
    table = f"{cfg.dataset}:\n{as_table(catalog)}\n" if several else as_table(catalog)
    return code, as_records(catalog) if json_output else [], table


def _run(args: argparse.Namespace) -> int:
    if args.command == "status":  # loads the config itself: a bad one is UNKNOWN (3) here, not 2 (CRITICAL)
        return status.run(args.config, dataset=args.dataset)
    cfg = load_config(args.config)
    if args.command == "backup":
        def back_up(one: BackupConfig) -> int:
            backup(one, full=args.full, dry_run=args.dry_run)
            return EXIT_OK

        if cfg.recursive and cfg.atomic:
            codes = [backup_tree(top, tree, full=args.full, dry_run=args.dry_run)
                     for top, tree in datasets.local_trees(cfg)]
            return next((code for code in codes if code != EXIT_OK), EXIT_OK)
        targets = datasets.local_targets(cfg)
        if args.dry_run and cfg.parallel > 1 and len(targets) > 1:
            print(f"# a real run backs up {side_by_side.describe(cfg, len(targets))}")
        return datasets.run_each(targets, back_up, 1 if args.dry_run else cfg.parallel)
    if args.command == "restore":
        restore(datasets.choose(cfg, args.dataset), args.target_dataset, snapshot=args.snapshot, yes=args.yes,
                force=args.force,
                thaw_options=_thaw_options(args),
                confirm=_ask, echo=lambda line: print(line, file=sys.stdout if args.dry_run else sys.stderr),
                dry_run=args.dry_run, streams=args.streams, as_of=args.as_of, keep_mountpoint=args.keep_mountpoint)
        return EXIT_OK
    if args.command == "list":
        rclone = rclone_for(cfg, args.as_of)
        if args.as_of is not None:
            object_lock.check_as_of(rclone, cfg.remote, args.as_of)
        targets = _targets(cfg, args)
        catalogs = load_catalogs(targets, datasets.configured(cfg), rclone) if len(targets) > 1 else {}
        records: list[dict[str, object]] = []

        def list_one(one: BackupConfig) -> int:
            loaded = catalogs[one.dataset] if one.dataset in catalogs else load_catalog(one, rclone)
            code, found, table = _list(one, args.json, len(targets) > 1, loaded)
            records.extend(found)
            if not args.json:
                print(table)
            return code

        code = datasets.run_each(targets, list_one)
        if args.json:
            print(json.dumps(records, indent=2))
        return code
    if args.command == "prune":
        def prune_one(one: BackupConfig) -> int:
            prune(one, dry_run=args.dry_run)
            return EXIT_OK

        return datasets.run_each(_targets(cfg, args), prune_one)
    if args.command == "verify" and args.drill:
        return datasets.run_each(_targets(cfg, args), lambda one: drill(one, deep=args.deep, streams=args.streams))
    if args.command == "verify":
        return datasets.run_each(_targets(cfg, args), lambda one: verify(
            one, snapshot=args.snapshot, every=args.all, deep=args.deep, yes=args.yes, confirm=_ask,
            thaw_options=_thaw_options(args), streams=args.streams, as_of=args.as_of))
    raise AssertionError(f"unhandled command {args.command}")


def _dataset_prefix(record: logging.LogRecord) -> bool:
    """Lines of datasets backed up side by side start with the dataset's name (threads.py)."""
    record.dataset = threads.prefix()
    return True


def _setup_logging(debug: bool, quiet: bool) -> None:
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(logging.Formatter("zfsglacier: %(dataset)s%(message)s"))
    handler.addFilter(_dataset_prefix)
    root = logging.getLogger("zfsglacier")
    root.handlers[:] = [handler]
    root.propagate = False
    root.setLevel(logging.DEBUG if debug else logging.WARNING if quiet else logging.INFO)


def _stacks_on_sigusr1() -> None:
    """`kill -USR1 <pid>` prints where every thread of a run that seems stuck is, to stderr (the journal).
    Only where stderr is a file descriptor (not under a test's capture)."""
    with contextlib.suppress(AttributeError, OSError, ValueError):  # io.UnsupportedOperation is an OSError
        faulthandler.register(signal.SIGUSR1, file=sys.stderr.fileno(), all_threads=True)


def _command_of(parser: argparse.ArgumentParser, argv: Sequence[str]) -> str | None:
    """The subcommand an argument list names, past the global options (for when argparse gave up)."""
    with_value = {option for action in parser._actions if action.nargs != 0 and action.option_strings
                  for option in action.option_strings}
    words = iter(argv)
    for word in words:
        if word in with_value:
            next(words, None)
        elif not word.startswith("-"):
            return word
    return None


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    try:
        args = parser.parse_args(argv)
    except SystemExit as exc:  # argparse: --help, --version, or a usage error (2)
        code = exc.code if isinstance(exc.code, int) else EXIT_INTERNAL
        if code == EXIT_USAGE and _command_of(parser, sys.argv[1:] if argv is None else argv) == "status":
            # A monitoring system reads 2 as CRITICAL and shows stdout: a mistyped check is UNKNOWN, said there.
            print(f"{status_verdict.PLUGIN_NAME} UNKNOWN - the command line was refused "
                  "(see above, or zfsglacier status --help)")
            return status_verdict.UNKNOWN
        return code
    _setup_logging(args.debug, args.quiet)
    _stacks_on_sigusr1()
    progress.set_log_interval(args.progress_interval)
    try:
        with signals_as_exceptions():
            return _run(args)
    except ZfsglacierError as exc:
        if args.debug:
            log.exception("error")
        log.error("error: %s", exc)
        return exc.exit_code
    except Exception as exc:
        log.error("internal error: %s: %s (run with --debug for the traceback and report it)",
                  type(exc).__name__, exc)
        if args.debug:
            log.exception("traceback")
        return EXIT_INTERNAL


def cli() -> int:
    return main(sys.argv[1:])
