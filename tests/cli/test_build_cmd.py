"""``gadgetstore image build`` end to end through click, against a temporary store."""

from __future__ import annotations

import json
import shutil
from pathlib import Path
from typing import Any

import pytest
from click.testing import CliRunner, Result

from gadgetstore.cli.main import cli
from gadgetstore.engine import mediatypes as mt
from gadgetstore.engine.digest import Digest
from gadgetstore.engine.store import Store

EXAMPLE = Path(__file__).resolve().parents[2] / "examples" / "trace_demo"
HAVE_TOOLCHAIN = (
    shutil.which("clang") is not None
    and shutil.which("llvm-strip") is not None
    and Path("/usr/include/bpf/bpf_helpers.h").is_file()
)
needs_clang = pytest.mark.skipif(
    not HAVE_TOOLCHAIN, reason="needs clang, llvm and libbpf-dev (apt-get install clang llvm libbpf-dev)"
)


def run(store_root: Path, *args: str, epoch: str | None = "1700000000") -> Result:
    env = {"SOURCE_DATE_EPOCH": epoch} if epoch is not None else {}
    return CliRunner(env=env).invoke(cli, ["--store", str(store_root), *args])


def read_json(store_root: Path, digest: str) -> dict[str, Any]:
    data: dict[str, Any] = json.loads(Store.open(store_root).blobs.read(Digest.parse(digest)))
    return data


def built_digest(result: Result) -> str:
    assert result.exit_code == 0, result.output
    last = result.stderr.strip().splitlines()[-1]
    assert last.startswith("Successfully built ")
    return last.rsplit("@", 1)[1]


def metadata_only(tmp_path: Path, metadata: bytes | None = b"name: meta only\n") -> Path:
    gadget = tmp_path / "gadget"
    gadget.mkdir()
    if metadata is not None:
        (gadget / "gadget.yaml").write_bytes(metadata)
    else:
        (gadget / "prebuilt.wasm").write_bytes(b"\x00asm\x01\x00\x00\x00")
        (gadget / "build.yaml").write_text("wasm: prebuilt.wasm\n")
    return gadget


def test_metadata_only_gadget_has_no_layers(tmp_path: Path, store_root: Path) -> None:
    result = run(store_root, "image", "build", str(metadata_only(tmp_path)), "-t", "meta:v1")
    digest = built_digest(result)
    assert result.stdout == ""
    assert result.stderr == f"Successfully built ghcr.io/inspektor-gadget/gadget/meta:v1@{digest}\n"
    index = read_json(store_root, digest)
    manifest = read_json(store_root, index["manifests"][0]["digest"])
    assert manifest["layers"] == []
    assert manifest["config"]["mediaType"] == mt.GADGET_CONFIG
    assert manifest["annotations"]["org.opencontainers.image.title"] == "meta only"
    assert manifest["annotations"]["org.opencontainers.image.created"] == "2023-11-14T22:13:20Z"
    assert Store.open(store_root).tags() == ["ghcr.io/inspektor-gadget/gadget/meta:v1"]


def test_without_gadget_yaml_the_config_is_empty_with_data(tmp_path: Path, store_root: Path) -> None:
    digest = built_digest(run(store_root, "image", "build", str(metadata_only(tmp_path, None))))
    index = read_json(store_root, digest)
    manifest = read_json(store_root, index["manifests"][1]["digest"])
    assert manifest["config"] == {
        "mediaType": mt.OCI_EMPTY,
        "digest": "sha256:44136fa355b3678a1146ad16f7e8649e94fb4fc21fe77e8310c060f61caaff8a",
        "size": 2,
        "annotations": {"org.opencontainers.image.created": "2023-11-14T22:13:20Z"},
        "data": "e30=",
    }
    assert [layer["mediaType"] for layer in manifest["layers"]] == [mt.GADGET_WASM]


def test_untagged_build_prints_only_the_digest_and_survives_gc(tmp_path: Path, store_root: Path) -> None:
    result = run(store_root, "image", "build", str(metadata_only(tmp_path)))
    digest = built_digest(result)
    assert result.stderr == f"Successfully built @{digest}\n"
    store = Store.open(store_root)
    assert store.tags() == []
    store.gc()
    assert store.blobs.has(Digest.parse(digest))


def test_untagged_build_is_usable_by_digest_listed_with_all_and_removable(tmp_path: Path, store_root: Path) -> None:
    digest = built_digest(run(store_root, "image", "build", str(metadata_only(tmp_path))))
    listed = run(store_root, "image", "list", "--all")
    assert listed.stdout == f"REPOSITORY TAG DIGEST CREATED\n<none> <none> {digest} 2023-11-14T22:13:20Z\n"
    assert run(store_root, "image", "list").stdout == "REPOSITORY TAG DIGEST CREATED\n", "ig lists tags only"
    shown = run(store_root, "image", "inspect", digest[len("sha256:"):][:12], "--extra-info", "oci.metadata")
    assert (shown.exit_code, shown.stdout) == (0, '{\n  "name": "meta only"\n}\n')
    removed = run(store_root, "image", "remove", digest)
    assert (removed.exit_code, removed.stderr) == (0, f"Successfully removed {digest}\n")
    assert list(Store.open(store_root).blobs.iter_digests()) == []


def test_build_file_flag_and_bad_inputs(tmp_path: Path, store_root: Path) -> None:
    gadget = metadata_only(tmp_path)
    (tmp_path / "other.yaml").write_text("ebpfsource: missing.bpf.c\n")
    result = run(store_root, "image", "build", str(gadget), "-f", str(tmp_path / "other.yaml"))
    assert result.exit_code == 1
    assert result.stderr.startswith("Error: source file 'missing.bpf.c' not found")
    result = run(store_root, "image", "build", str(gadget), "-t", "Bad:Name:x")
    assert result.exit_code == 1 and result.stderr.startswith("Error: invalid reference")
    result = run(store_root, "image", "build", str(gadget), epoch="soon")
    assert result.exit_code == 1 and "invalid SOURCE_DATE_EPOCH" in result.stderr


def test_local_time_without_source_date_epoch(tmp_path: Path, store_root: Path) -> None:
    digest = built_digest(run(store_root, "image", "build", str(metadata_only(tmp_path)), epoch=None))
    created = read_json(store_root, digest)["annotations"]["org.opencontainers.image.created"]
    assert len(created) in (20, 25) and (created.endswith("Z") or created[19] in "+-")


@needs_clang
def test_example_builds_reproducibly_and_is_listed(tmp_path: Path, store_root: Path) -> None:
    out = tmp_path / "out"
    first = built_digest(run(store_root, "image", "build", str(EXAMPLE), "-t", "trace_demo:v1", "-o", str(out)))
    again = built_digest(run(store_root, "image", "build", str(EXAMPLE), "-t", "trace_demo:v1"))
    later = built_digest(run(store_root, "image", "build", str(EXAMPLE), "-t", "trace_demo:v2", epoch="1700000060"))
    assert first == again != later
    assert sorted(p.name for p in out.iterdir()) == ["amd64.bpf.o", "arm64.bpf.o"]

    listed = run(store_root, "image", "list", "--no-trunc")
    assert listed.exit_code == 0, listed.output
    lines = listed.stdout.splitlines()
    assert f"trace_demo v1 {first} 2023-11-14T22:13:20Z" in lines
    assert f"trace_demo v2 {later} 2023-11-14T22:14:20Z" in lines

    manifest = read_json(store_root, read_json(store_root, first)["manifests"][0]["digest"])
    assert [layer["mediaType"] for layer in manifest["layers"]] == [mt.GADGET_EBPF]
    assert manifest["annotations"]["io.inspektor-gadget.builder.version"].startswith("gadgetstore ")


@needs_clang
def test_compile_error_exits_nonzero_with_clang_message_and_stores_nothing(tmp_path: Path, store_root: Path) -> None:
    gadget = tmp_path / "broken"
    gadget.mkdir()
    (gadget / "program.bpf.c").write_text("int f(void) { return nope; }\n")
    result = run(store_root, "image", "build", str(gadget), "-t", "broken")
    assert result.exit_code != 0
    assert result.stderr.startswith("Error: clang compile for amd64 failed")
    assert "use of undeclared identifier 'nope'" in result.stderr
    assert not store_root.exists()  # the store is opened only after compiling succeeded
