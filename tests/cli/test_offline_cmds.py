import io
import json
import os
import stat
import subprocess
import sys
import tarfile
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from click.testing import CliRunner

from gadgetstore.cli.main import cli
from gadgetstore.engine import paths
from gadgetstore.engine.imagelist import created_ago, format_rows
from gadgetstore.engine.images import ImageRow
from gadgetstore.engine.store import Store
from tests.support.cli import run_in_store as run
from tests.support.igstore import tree
from tests.support.images import DEMO_IMAGE, DEMO_SHORT_NAME, ArchivedImage, make_gadget_image
from tests.support.journals import NOT_RECORDS, append_checksummed
from tests.support.special_files import FifoReader, char_device, is_dev_null


def test_import_list_tag_remove_cycle(tmp_path: Path, gadget_image: ArchivedImage) -> None:
    store = tmp_path / "s"
    digest, created = gadget_image.root.digest, gadget_image.created
    code, out, _ = run(store, "image", "import", str(gadget_image.path))
    assert code == 0
    assert out == f"Successfully imported images:\n  {DEMO_IMAGE}\n"
    code, out, _ = run(store, "image", "list")
    assert out == f"REPOSITORY TAG DIGEST CREATED\n{DEMO_SHORT_NAME} latest {digest} {created}\n"
    code, _, err = run(store, "image", "tag", DEMO_SHORT_NAME, "localhost:5000/mine:v1")
    assert code == 0 and err == f"Successfully tagged with localhost:5000/mine:v1@{digest}\n"
    code, out, _ = run(store, "image", "ls", "-o", "json")
    rows = json.loads(out)
    assert not out.endswith("\n"), "ig prints JSON without a trailing newline"
    assert [r["Repository"] for r in rows] == [DEMO_SHORT_NAME, "localhost:5000/mine"], "sorted by full reference"
    code, out, _ = run(store, "image", "list", "-o", "jsonpretty")
    assert out.startswith(f'[\n  {{\n    "Repository": "{DEMO_SHORT_NAME}"')
    code, _, err = run(store, "image", "rm", DEMO_SHORT_NAME)
    assert code == 0 and err == f"Successfully removed {DEMO_SHORT_NAME}\n"
    code, _, err = run(store, "image", "remove", "localhost:5000/mine:v1")
    assert code == 0
    assert run(store, "image", "list", "-o", "json")[1] == "[]"
    assert list((store / "blobs" / "sha256").iterdir()) == []


def test_ig_export_lists_with_igs_digest_and_date(tmp_path: Path, trace_open_tar: Path) -> None:
    """Compatibility with ig: its real export lists under its short name, digest and build date."""
    code, out, _ = run(tmp_path / "s", "image", "import", str(trace_open_tar))
    assert code == 0 and out == "Successfully imported images:\n  ghcr.io/inspektor-gadget/gadget/trace_open:latest\n"
    code, out, _ = run(tmp_path / "s", "image", "list")
    digest = "sha256:87c3ecca8d843f2e08382836cb0eff718fa5c56d786c73e2674d7e9db13a1ac7"
    assert out == f"REPOSITORY TAG DIGEST CREATED\ntrace_open latest {digest} 2024-05-15T18:45:32Z\n"


def test_export_names_the_file_as_typed(tmp_path: Path, gadget_tar: Path) -> None:
    """ig prints its DST_FILE argument as it is (export.go: ``Successfully exported images to %s``)."""
    run(tmp_path / "a", "image", "import", str(gadget_tar))
    typed = f"{tmp_path}/./out//x.tar"
    (tmp_path / "out").mkdir()
    code, _, err = run(tmp_path / "a", "image", "export", DEMO_SHORT_NAME, typed)
    assert code == 0 and err == f"Successfully exported images to {typed}\n"
    assert (tmp_path / "out" / "x.tar").is_file()


def test_export_import_json_output(tmp_path: Path, gadget_tar: Path) -> None:
    run(tmp_path / "a", "image", "import", str(gadget_tar))
    code, _, err = run(tmp_path / "a", "image", "export", DEMO_SHORT_NAME, str(tmp_path / "x.tar.zst"))
    assert code == 0 and err == f"Successfully exported images to {tmp_path / 'x.tar.zst'}\n"
    code, out, _ = run(tmp_path / "b", "image", "import", "-o", "json", str(tmp_path / "x.tar.zst"))
    assert json.loads(out) == [DEMO_IMAGE]


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["image", "remove", "nothere"], "Error: image 'nothere' not found in the store"),
        (["image", "tag", "nothere", "x"], "Error: image 'nothere' not found in the store"),
        (["image", "tag", "trace_open", "BAD NAME"], "Error: invalid reference"),
        (["image", "tag", "trace_open", "x.io/a:vé"], "Error: invalid reference format 'x.io/a:vé'"),
        (["image", "tag", "trace_open", "x.io/a:v1\n"], "Error: invalid reference format 'x.io/a:v1\\n'"),
        (["image", "remove", "trace_\u00f3pen"], "Error: invalid reference format"),
        (["image", "import", "/nonexistent.tar"], "Error: archive /nonexistent.tar does not exist"),
        (["image", "export", "nothere", "/tmp/never.tar"], "Error: image"),
    ],
)
def test_errors_are_one_line_without_traceback(tmp_path: Path, args: list[str], message: str) -> None:
    code, _, err = run(tmp_path / "s", *args)
    assert code == 1
    assert err.startswith(message) and err.count("\n") == 1


def test_bad_archive_error_is_one_line(tmp_path: Path) -> None:
    bad = tmp_path / "bad.tar"
    bad.write_bytes(b"not a tar at all" * 100)
    code, _, err = run(tmp_path / "s", "image", "import", str(bad))
    assert code == 1 and err.startswith("Error: archive is truncated or not a tar file") and err.count("\n") == 1


def test_archive_whose_index_json_is_nested_too_deeply_is_one_line(tmp_path: Path, gadget_image: ArchivedImage) -> None:
    """200,000 ``[`` (400 kB, far inside the size caps) is bad JSON like any other, not a traceback."""
    store = tmp_path / "s"
    assert run(store, "image", "import", str(gadget_image.path))[0] == 0
    before = {p: p.read_bytes() for p in sorted(store.rglob("*")) if p.is_file()}
    nested = tmp_path / "nested.tar"
    with tarfile.open(gadget_image.path) as src, tarfile.open(nested, "w") as dst:
        for info in src:
            data = b"[" * 200_000 + b"]" * 200_000 if info.name == "index.json" else src.extractfile(info).read()  # type: ignore[union-attr]
            info.size = len(data)
            dst.addfile(info, io.BytesIO(data))
    code, out, err = run(store, "image", "import", str(nested))
    assert (code, out, err) == (1, "", "Error: archive index.json is not an OCI image index\n")
    assert {p: p.read_bytes() for p in sorted(store.rglob("*")) if p.is_file()} == before


@pytest.mark.leaves_damaged_store
def test_fsck_and_gc_commands(tmp_path: Path, gadget_image: ArchivedImage) -> None:
    store = tmp_path / "s"
    run(store, "image", "import", str(gadget_image.path))
    code, out, _ = run(store, "fsck")
    assert code == 0 and f"checked {len(gadget_image.blobs)} blobs" in out and "no problems found" in out
    blob = store / "blobs" / "sha256" / gadget_image.layers["amd64"].digest.hex  # a leaf: gc need not read it
    blob.chmod(0o644)
    blob.write_bytes(b"tampered")
    code, out, _ = run(store, "fsck")
    assert code == 1 and f"damaged: blob sha256:{blob.name} is damaged" in out
    code, out, _ = run(store, "gc")
    assert code == 0 and out.startswith("removed 0 blobs")


@pytest.mark.leaves_damaged_store
def test_gc_refuses_when_a_manifest_it_must_read_is_damaged(tmp_path: Path, gadget_image: ArchivedImage) -> None:
    """gc cannot tell what is reachable through a damaged index, so it deletes nothing."""
    store = tmp_path / "s"
    run(store, "image", "import", str(gadget_image.path))
    index = store / "blobs" / "sha256" / gadget_image.root.digest.hex
    index.chmod(0o644)
    index.write_bytes(b"tampered")
    blobs = sorted(os.listdir(store / "blobs" / "sha256"))
    code, out, err = run(store, "gc")
    assert code == 1 and out == ""
    assert err == f"Error: blob {gadget_image.root.digest} is damaged: its content has another digest\n"
    assert sorted(os.listdir(store / "blobs" / "sha256")) == blobs


def test_columns_on_a_terminal_truncate_digest_and_humanize_time() -> None:
    now = datetime(2026, 1, 1, tzinfo=UTC)
    created = (now - timedelta(minutes=5)).isoformat().replace("+00:00", "Z")
    digest = "sha256:87c3ecca8d843f2e08382836cb0eff718fa5c56d786c73e2674d7e9db13a1ac7"
    text = format_rows([ImageRow("trace_open", "latest", digest, created)], tty=True, no_trunc=False, now=now,
                       screen_width=0)
    header, row = text.splitlines()
    assert header.split() == ["REPOSITORY", "TAG", "DIGEST", "CREATED"]
    assert row.split()[:3] == ["trace_open", "latest", "87c3ecca8d84"]
    assert row.endswith("5 minutes ago   "), "ig pads the last column too (tests/engine/test_imagelist.py)"


@pytest.mark.parametrize(
    ("delta", "text"),
    [
        (timedelta(seconds=0.5), "less than a second ago"),
        (timedelta(seconds=1), "1 second ago"),
        (timedelta(seconds=59), "59 seconds ago"),
        (timedelta(seconds=90), "about a minute ago"),
        (timedelta(minutes=59), "59 minutes ago"),
        (timedelta(minutes=90), "2 hours ago"),
        (timedelta(minutes=80), "about an hour ago"),
        (timedelta(hours=47), "47 hours ago"),
        (timedelta(days=13), "13 days ago"),
        (timedelta(days=20), "2 weeks ago"),
        (timedelta(days=90), "3 months ago"),
        (timedelta(days=800), "2 years ago"),
    ],
)
def test_human_durations_match_go_units(delta: timedelta, text: str) -> None:
    now = datetime(2026, 1, 1, tzinfo=UTC)
    assert created_ago((now - delta).isoformat(), now) == text
    assert created_ago("not a time", now) == ""


def test_store_location_precedence(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.setattr(paths.os, "geteuid", lambda: 0)
    assert paths.default_store_root() == Path("/var/lib/gadgetstore")
    monkeypatch.setattr(paths.os, "geteuid", lambda: 1000)
    assert paths.default_store_root() == tmp_path / "xdg-data" / "gadgetstore"
    monkeypatch.setenv("GADGETSTORE_ROOT", str(tmp_path / "env"))
    assert paths.default_store_root() == tmp_path / "env"


def test_store_option_beats_environment(monkeypatch: pytest.MonkeyPatch, tmp_path: Path, gadget_tar: Path) -> None:
    monkeypatch.setenv("GADGETSTORE_ROOT", str(tmp_path / "env"))
    CliRunner().invoke(cli, ["image", "import", str(gadget_tar)])
    assert (tmp_path / "env" / "index.journal").exists()
    assert DEMO_SHORT_NAME in CliRunner().invoke(cli, ["image", "list"]).stdout
    result = CliRunner().invoke(cli, ["--store", str(tmp_path / "opt"), "image", "list"])
    assert result.exit_code == 0 and DEMO_SHORT_NAME not in result.stdout


def test_damaged_journal_through_the_cli(tmp_path: Path, gadget_tar: Path) -> None:
    store = tmp_path / "s"
    run(store, "image", "import", str(gadget_tar))
    run(store, "image", "tag", DEMO_SHORT_NAME, "x.io/copy:1")
    journal = store / "index.journal"
    data = bytearray(journal.read_bytes())
    data[data.index(b"x.io/copy:1")] = ord("X")
    journal.write_bytes(bytes(data))
    code, _, err = run(store, "image", "list")
    assert code == 1 and "damaged" in err and "fsck --repair" in err and err.count("\n") == 1
    code, out, _ = run(store, "fsck")
    assert code == 1 and "damaged: index journal" in out
    code, out, _ = run(store, "fsck", "--repair")
    assert code == 0 and "repaired: rebuilt the index journal" in out and "no problems found" in out
    code, out, _ = run(store, "image", "list")
    assert code == 0 and DEMO_SHORT_NAME in out


CLI_RECORDS = ["unknown op", "untag without its ref", "op not an object", "ops not a list", "tag of a bad digest",
               "nested 100,000 deep"]


@pytest.mark.parametrize("case", CLI_RECORDS)
def test_a_checksummed_record_that_is_no_record_through_the_cli(tmp_path: Path, gadget_tar: Path, case: str) -> None:
    """A whole record the format does not define: the reading commands say so in one line and change
    nothing (no tail cut, no index.json rewritten); fsck --repair drops that record alone."""
    payload, why = NOT_RECORDS[case]
    store = tmp_path / "s"
    run(store, "image", "import", str(gadget_tar))
    journal = store / "index.journal"
    damage = f"corrupt record at byte {append_checksummed(journal, payload)} ({why})"
    before = tree(store)
    code, out, err = run(store, "image", "list")
    assert (code, out) == (1, "")
    assert err == f"Error: index journal {journal} is damaged ({damage}); run 'gadgetstore fsck --repair'\n"
    code, out, err = run(store, "fsck")
    assert (code, err) == (1, "") and [line for line in out.splitlines() if line.startswith("damaged: ")] == [
        f"damaged: index journal: {damage}"]
    assert tree(store) == before
    code, out, _ = run(store, "fsck", "--repair")
    assert code == 0 and "dropped 1" in out and out.endswith("no problems found\n")
    code, out, _ = run(store, "image", "list")
    assert code == 0 and DEMO_SHORT_NAME in out


def test_garbage_index_json_is_rewritten_from_the_journal(tmp_path: Path, gadget_image: ArchivedImage) -> None:
    store = tmp_path / "s"
    run(store, "image", "import", str(gadget_image.path))
    (store / "index.json").write_text("{not json")
    code, out, _ = run(store, "image", "list")
    assert code == 0 and DEMO_SHORT_NAME in out
    assert json.loads((store / "index.json").read_bytes())["manifests"][0]["digest"] == str(gadget_image.root.digest)


# -- the export's and import's files, named as tar -f names them ----------------------------------


@pytest.fixture
def demo_store(tmp_path: Path, gadget_tar: Path) -> Path:
    root = tmp_path / "store"
    assert run(root, "image", "import", str(gadget_tar))[0] == 0
    return root


@pytest.fixture
def out_dir(tmp_path: Path) -> Path:
    path = tmp_path / "out"
    path.mkdir()
    return path


@pytest.fixture
def archive(demo_store: Path, tmp_path: Path) -> bytes:
    """What an export to a new regular file holds: every other destination must get these bytes."""
    assert run(demo_store, "image", "export", "trace_demo", str(tmp_path / "reference.tar"))[0] == 0
    return (tmp_path / "reference.tar").read_bytes()


def test_export_to_a_device_writes_into_it(demo_store: Path, out_dir: Path) -> None:
    null = char_device(out_dir / "null")
    code, _, err = run(demo_store, "image", "export", "trace_demo", str(null))
    assert code == 0 and err == f"Successfully exported images to {null}\n"
    assert is_dev_null(null) and os.listdir(out_dir) == ["null"]


def test_export_to_a_fifo_gives_the_archive(demo_store: Path, out_dir: Path, archive: bytes) -> None:
    reader = FifoReader(out_dir / "pipe")
    assert run(demo_store, "image", "export", "trace_demo", str(out_dir / "pipe"))[0] == 0
    assert reader.join() == archive
    assert stat.S_ISFIFO(os.lstat(out_dir / "pipe").st_mode) and os.listdir(out_dir) == ["pipe"]


def test_export_to_dash_writes_stdout(demo_store: Path, archive: bytes) -> None:
    result = CliRunner().invoke(cli, ["--store", str(demo_store), "image", "export", "trace_demo", "-"])
    assert result.exit_code == 0 and result.stderr == "Successfully exported images to standard output\n"
    assert result.stdout_bytes == archive
    assert not os.path.exists("-")


def test_export_through_symlinks_writes_their_targets(demo_store: Path, out_dir: Path, archive: bytes) -> None:
    (out_dir / "real.tar").write_bytes(b"old")
    (out_dir / "link.tar").symlink_to("real.tar")
    (out_dir / "dangling.tar").symlink_to("new.tar")
    for name in ("link.tar", "dangling.tar"):
        code, _, err = run(demo_store, "image", "export", "trace_demo", str(out_dir / name))
        assert code == 0, err
    assert os.readlink(out_dir / "link.tar") == "real.tar" and os.readlink(out_dir / "dangling.tar") == "new.tar"
    assert (out_dir / "real.tar").read_bytes() == archive == (out_dir / "new.tar").read_bytes()
    assert sorted(os.listdir(out_dir)) == ["dangling.tar", "link.tar", "new.tar", "real.tar"]


@pytest.fixture
def read_only_dir(out_dir: Path) -> Iterator[Path]:
    """A read-only file system: as root, the only directory that refuses a new file."""
    if os.geteuid() != 0:
        pytest.skip("mounting a tmpfs needs root (CI runs as root)")
    mnt = out_dir / "ro"
    mnt.mkdir()
    subprocess.run(["mount", "-t", "tmpfs", "-o", "ro,size=64k", "tmpfs", str(mnt)], check=True)
    try:
        yield mnt
    finally:
        subprocess.run(["umount", "-l", str(mnt)], check=False)


@pytest.mark.parametrize(("name", "reason"), [
    ("", "it is a directory"),
    ("missing/x.tar", "No such file or directory"),
    ("ro/x.tar", "Read-only file system"),
])
def test_export_to_an_unwritable_path_is_one_line_naming_it(demo_store: Path, out_dir: Path, name: str,
                                                            reason: str, request: pytest.FixtureRequest) -> None:
    if name.startswith("ro/"):
        request.getfixturevalue("read_only_dir")
    path = out_dir / name
    before = sorted(out_dir.rglob("*"))
    code, out, err = run(demo_store, "image", "export", "trace_demo", str(path))
    assert (code, out, err) == (1, "", f"Error: cannot write {path}: {reason}\n")
    assert sorted(out_dir.rglob("*")) == before, "no temporary file left behind"


def test_export_to_a_pipe_closed_midway_is_one_line(tmp_path: Path) -> None:
    """A real process whose stdout reader goes away: exit 1, one line, nothing more at exit."""
    make_gadget_image(Store.open(tmp_path / "s"), "x.io/big:1", layer_size=2 * 1024 * 1024)
    command = [sys.executable, "-m", "gadgetstore.cli.main", "--store", str(tmp_path / "s"),
               "image", "export", "x.io/big:1", "-"]
    with subprocess.Popen(command, stdout=subprocess.PIPE, stderr=subprocess.PIPE) as proc:
        assert proc.stdout is not None and proc.stderr is not None
        assert len(proc.stdout.read(100)) == 100
        proc.stdout.close()
        err = proc.stderr.read()
    assert proc.returncode == 1 and err == b"Error: cannot write standard output: Broken pipe\n"


@pytest.mark.parametrize("name", ["a.tar", "a.tar.zst"])
def test_import_from_dash_reads_stdin(demo_store: Path, tmp_path: Path, name: str) -> None:
    assert run(demo_store, "image", "export", "trace_demo", str(tmp_path / name))[0] == 0
    result = CliRunner().invoke(cli, ["--store", str(tmp_path / "fresh"), "image", "import", "-"],
                                input=(tmp_path / name).read_bytes())
    assert result.exit_code == 0, result.stderr
    assert result.stdout == "Successfully imported images:\n  ghcr.io/inspektor-gadget/gadget/trace_demo:latest\n"


def test_import_of_a_directory_is_one_line(tmp_path: Path) -> None:
    code, _, err = run(tmp_path / "s", "image", "import", str(tmp_path))
    assert (code, err) == (1, f"Error: cannot read archive {tmp_path}: Is a directory\n")
