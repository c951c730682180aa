"""Reading what zfs supports from its usage text: zfs-fuse's and OpenZFS's shapes."""

from __future__ import annotations

from zfsglacier.zfs.capabilities import ZfsTools, parse_usage, send_options
from zfsglacier.zfs.estimate import estimate_argv, parse_estimate

# As zfs-fuse (pool version 23) prints it, abridged.
ZFS_FUSE = """missing command
usage: zfs command args ...
where 'command' is one of the following:

\tcreate [-p] [-o property=value] ... <filesystem>
\tlist [-rH][-d max] [-o property[,...]] [-t type[,...]] [-s property] ...
\t    [-S property] ... [filesystem|volume|snapshot] ...

\tget [-rHp] [-d max] [-o "all" | field[,...]] [-s source[,...]]
\t    <"all" | property[,...]> [filesystem|volume|snapshot] ...
\tsend [-RDp] [-[iI] snapshot] <snapshot>
\treceive [-vnF] <filesystem|volume|snapshot>
\treceive [-vnF] -d <filesystem>

\thold [-r] <tag> <snapshot> ...
\tholds [-r] <snapshot> ...
\trelease [-r] <tag> <snapshot> ...

Each dataset is of the form: pool/[dataset/]*dataset[@name]
"""

# The shape of OpenZFS 2.x's usage (zfs_main.c), abridged.
OPENZFS = """usage: zfs command args ...
where 'command' is one of the following:

\tlist [-Hp] [-r|-d max] [-o property[,...]] [-s property]...
\t    [-S property]... [-t type[,...]] [filesystem|volume|snapshot] ...
\tsnapshot|snap [-r] [-o property=value] ... <filesystem|volume>@<snap> ...
\tsend [-DnPpRvLecwhb] [-[i|I] snapshot] <snapshot>
\tsend [-nvPLecw] [-i snapshot|bookmark] <filesystem|volume|snapshot>
\tsend [-nvPe] -t <receive_resume_token>
\treceive|recv [-vMnsFhu] [-o <property>=<value>] ... [-x <property>] ...
\t    <filesystem|volume|snapshot>
\treceive|recv -A <filesystem|volume>
\tbookmark <snapshot|bookmark> <newbookmark>
\thold [-r] <tag> <snapshot> ...
\trelease [-r] <tag> <snapshot> ...
"""


def test_zfs_fuse_has_holds_and_nothing_newer() -> None:
    tools = ZfsTools(parse_usage(ZFS_FUSE))
    assert tools.commands["send"] == {"R", "D", "p"}
    assert tools.commands["receive"] == {"v", "n", "F", "d"}
    assert tools.holds
    assert not tools.send_estimate and not tools.large_blocks and not tools.raw_send
    assert not tools.resumable_receive and not tools.bookmarks and not tools.parsable_list
    assert not tools.receive_unmounted and not tools.receive_properties
    assert tools.accepts("get", "p")  # continued lines and later groups count
    assert "missing" not in tools.commands and "Each" not in tools.commands


def test_openzfs_has_the_modern_send_and_receive() -> None:
    tools = ZfsTools(parse_usage(OPENZFS))
    assert tools.send_estimate and tools.large_blocks and tools.embedded_data
    assert tools.compressed_send and tools.raw_send
    assert tools.resumable_receive, "-s from the flag group, -A from the bare flag of its own line"
    assert tools.bookmarks and tools.holds and tools.parsable_list and tools.receive_unmounted
    assert tools.receive_properties, "-o from [-o <property>=<value>]"
    assert tools.commands["recv"] == tools.commands["receive"]  # aliases share the flags
    assert tools.accepts("send", "t") and not tools.accepts("send", "X")


def test_nothing_recognised_means_nothing_supported() -> None:
    tools = ZfsTools(parse_usage("zfs: command not found\n"))
    assert tools.commands == {}
    assert tools.describe() == "none of the optional features"


def test_send_options_are_the_stream_flags_zfs_lists() -> None:
    assert send_options(ZfsTools(parse_usage(OPENZFS))) == ["-L", "-e"]
    assert send_options(ZfsTools(parse_usage(ZFS_FUSE))) == []


def test_the_estimate_is_a_dry_run_of_the_same_send() -> None:
    assert estimate_argv("p/d@b", "p/d@a", ["-L", "-e"]) == ["zfs", "send", "-n", "-P", "-L", "-e", "-i", "p/d@a",
                                                             "p/d@b"]
    assert estimate_argv("p/d@a", None, []) == ["zfs", "send", "-n", "-P", "p/d@a"]


def test_the_size_line_of_a_dry_run_is_read() -> None:
    assert parse_estimate("full\tp/d@a\t1234\nsize\t1234\n") == 1234
    assert parse_estimate("incremental\ta\tp/d@b\t99\nsize\t99\n") == 99
    assert parse_estimate("nothing useful\n") is None
    assert parse_estimate("size\tunknown\n") is None


def test_the_settable_properties_are_read_from_zfs_gets_table() -> None:
    from zfsglacier.zfs.capabilities import parse_property_table
    table = ("missing property argument\nusage:\n\tget [-rHp] ...\n\nThe following properties are supported:\n\n"
             "\tPROPERTY       EDIT  INHERIT   VALUES\n\n"
             "\tavailable        NO       NO   <size>\n"
             "\tacltype         YES      YES   off | nfsv4 | posix\n"
             "\tvolmode         YES      YES   default | full | geom | dev | none\n"
             "\tcasesensitivity  NO      YES   sensitive | insensitive | mixed\n"
             "\tvolsize         YES       NO   <size>\n"
             "\nUser-defined properties can be specified by using a name containing a colon (:).\n")
    assert parse_property_table(table) == {"acltype", "volmode", "volsize"}
