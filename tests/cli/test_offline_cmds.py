import json
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from click.testing import CliRunner

from gadgetstore.cli.listing import created_ago, format_rows
from gadgetstore.cli.main import cli
from gadgetstore.engine import paths
from gadgetstore.engine.images import ImageRow
from tests.support.cli import run_in_store as run

DIGEST = "sha256:87c3ecca8d843f2e08382836cb0eff718fa5c56d786c73e2674d7e9db13a1ac7"


def test_import_list_tag_remove_cycle(tmp_path: Path, trace_open_tar: Path) -> None:
    store = tmp_path / "s"
    code, out, _ = run(store, "image", "import", str(trace_open_tar))
    assert code == 0
    assert out == "Successfully imported images:\n  ghcr.io/inspektor-gadget/gadget/trace_open:latest\n"
    code, out, _ = run(store, "image", "list")
    assert out == f"REPOSITORY TAG DIGEST CREATED\ntrace_open latest {DIGEST} 2024-05-15T18:45:32Z\n"
    code, _, err = run(store, "image", "tag", "trace_open", "localhost:5000/mine:v1")
    assert code == 0 and err == f"Successfully tagged with localhost:5000/mine:v1@{DIGEST}\n"
    code, out, _ = run(store, "image", "ls", "-o", "json")
    rows = json.loads(out)
    assert not out.endswith("\n"), "ig prints JSON without a trailing newline"
    assert [r["Repository"] for r in rows] == ["trace_open", "localhost:5000/mine"], "sorted by full reference"
    code, out, _ = run(store, "image", "list", "-o", "jsonpretty")
    assert out.startswith('[\n  {\n    "Repository": "trace_open"')
    code, _, err = run(store, "image", "rm", "trace_open")
    assert code == 0 and err == "Successfully removed trace_open\n"
    code, _, err = run(store, "image", "remove", "localhost:5000/mine:v1")
    assert code == 0
    assert run(store, "image", "list", "-o", "json")[1] == "[]"
    assert list((store / "blobs" / "sha256").iterdir()) == []


def test_export_import_json_output(tmp_path: Path, trace_open_tar: Path) -> None:
    run(tmp_path / "a", "image", "import", str(trace_open_tar))
    code, _, err = run(tmp_path / "a", "image", "export", "trace_open", str(tmp_path / "x.tar.zst"))
    assert code == 0 and err == f"Successfully exported images to {tmp_path / 'x.tar.zst'}\n"
    code, out, _ = run(tmp_path / "b", "image", "import", "-o", "json", str(tmp_path / "x.tar.zst"))
    assert json.loads(out) == ["ghcr.io/inspektor-gadget/gadget/trace_open:latest"]


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


def test_fsck_and_gc_commands(tmp_path: Path, trace_open_tar: Path) -> None:
    store = tmp_path / "s"
    run(store, "image", "import", str(trace_open_tar))
    code, out, _ = run(store, "fsck")
    assert code == 0 and "checked 6 blobs" in out and "no problems found" in out
    blob = next((store / "blobs" / "sha256").iterdir())
    blob.chmod(0o644)
    blob.write_bytes(b"tampered")
    code, out, _ = run(store, "fsck")
    assert code == 1 and f"damaged: blob sha256:{blob.name} is damaged" in out
    code, out, _ = run(store, "gc")
    assert code == 0 and out.startswith("removed 0 blobs")


def test_columns_on_a_terminal_truncate_digest_and_humanize_time() -> None:
    now = datetime(2026, 1, 1, tzinfo=UTC)
    created = (now - timedelta(minutes=5)).isoformat().replace("+00:00", "Z")
    text = format_rows([ImageRow("trace_open", "latest", DIGEST, created)], tty=True, no_trunc=False, now=now)
    header, row = text.splitlines()
    assert header.split() == ["REPOSITORY", "TAG", "DIGEST", "CREATED"]
    assert row.split()[:3] == ["trace_open", "latest", "87c3ecca8d84"]
    assert row.endswith("5 minutes ago")


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


def test_store_option_beats_environment(monkeypatch: pytest.MonkeyPatch, tmp_path: Path,
                                        trace_open_tar: Path) -> None:
    monkeypatch.setenv("GADGETSTORE_ROOT", str(tmp_path / "env"))
    CliRunner().invoke(cli, ["image", "import", str(trace_open_tar)])
    assert (tmp_path / "env" / "index.journal").exists()
    result = CliRunner().invoke(cli, ["--store", str(tmp_path / "opt"), "image", "list"])
    assert result.exit_code == 0 and "trace_open" not in result.stdout


def test_damaged_journal_through_the_cli(tmp_path: Path, trace_open_tar: Path) -> None:
    store = tmp_path / "s"
    run(store, "image", "import", str(trace_open_tar))
    run(store, "image", "tag", "trace_open", "x.io/copy:1")
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
    assert code == 0 and "trace_open" in out


def test_garbage_index_json_is_rewritten_from_the_journal(tmp_path: Path, trace_open_tar: Path) -> None:
    store = tmp_path / "s"
    run(store, "image", "import", str(trace_open_tar))
    (store / "index.json").write_text("{not json")
    code, out, _ = run(store, "image", "list")
    assert code == 0 and "trace_open" in out
    assert json.loads((store / "index.json").read_bytes())["manifests"][0]["digest"] == DIGEST
