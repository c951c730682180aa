import sys

from zfsglacier.cli import cli

sys.exit(cli())
