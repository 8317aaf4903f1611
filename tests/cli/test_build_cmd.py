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
from tests.support.fake_tools import fake_clang, fake_strip, recorded_runs

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


def fake_toolchain(tmp_path: Path) -> Path:
    tools, record = tmp_path / "tools", tmp_path / "record"
    clang = fake_clang(tools, record)
    fake_strip(tools, record)
    return clang


def test_verbose_names_the_compiler_the_header_dirs_and_the_commands(tmp_path: Path, store_root: Path) -> None:
    clang = fake_toolchain(tmp_path)
    gadget = metadata_only(tmp_path)
    (gadget / "program.bpf.c").write_text("int x;\n")
    headers = tmp_path / "headers"
    (headers / "gadget" / "arm64").mkdir(parents=True)
    args = ["--store", str(store_root), "image", "build", str(gadget), "--clang", str(clang), "--include", str(headers)]
    runner = CliRunner(env={"SOURCE_DATE_EPOCH": "0"})
    quiet = runner.invoke(cli, args)
    assert quiet.exit_code == 0, quiet.output
    assert quiet.stderr.startswith("Successfully built @sha256:")
    verbose = runner.invoke(cli, [*args, "-v"])
    assert verbose.exit_code == 0, verbose.output
    lines = verbose.stderr.splitlines()
    strip = clang.parent / "llvm-strip-19"
    assert lines[0] == f"eBPF compiler: {clang} (clang 19); strip: {strip}"
    assert "eBPF compiler version: fakevendor clang version 19.1.7 (fake)" in lines
    assert lines[1] == f"gadget headers: {headers} (--include)"
    commands = [line for line in lines if line.startswith(f"$ {clang} ")]
    assert [f"-I {headers}/gadget/arm64/" in line for line in commands] == [False, True]
    assert all(f"-I {headers}/ " in line for line in commands)
    assert lines[-1] == quiet.stderr.strip()  # same image either way


@pytest.mark.parametrize(
    ("extra_args", "env", "expected"),
    [
        (["--clang", "/nonexistent/clang"], {}, "Error: --clang /nonexistent/clang: no such file\n"),
        (["--include", "/nonexistent/include"], {}, "Error: --include /nonexistent/include: not a directory\n"),
        ([], {"IG_SOURCE_PATH": "/nonexistent/ig"},
         "Error: IG_SOURCE_PATH=/nonexistent/ig: no include/gadget/ there; it must name an Inspektor Gadget "
         "source tree\n"),
    ],
)
def test_bad_tool_or_header_options_are_one_line_and_store_nothing(
    tmp_path: Path, store_root: Path, extra_args: list[str], env: dict[str, str], expected: str
) -> None:
    gadget = metadata_only(tmp_path)
    (gadget / "program.bpf.c").write_text("int x;\n")
    result = CliRunner(env=env).invoke(cli, ["--store", str(store_root), "image", "build", str(gadget), *extra_args])
    assert (result.exit_code, result.stderr) == (1, expected)
    assert not store_root.exists()


def test_relative_tool_and_include_paths_are_taken_from_where_the_user_stands(
    tmp_path: Path, store_root: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The compilers run inside the gadget directory; paths given relative to the user's directory still work."""
    fake_toolchain(tmp_path)
    gadget = metadata_only(tmp_path)
    (gadget / "program.bpf.c").write_text("int x;\n")
    (tmp_path / "headers" / "gadget" / "amd64").mkdir(parents=True)
    monkeypatch.chdir(tmp_path)
    result = CliRunner().invoke(cli, ["--store", str(store_root), "image", "build", "-v", "gadget",
                                      "--clang", "tools/clang-19", "--include", "headers"])
    assert result.exit_code == 0, result.output
    runs = recorded_runs(tmp_path / "record", "clang")
    assert len(runs) == 2
    for run_ in runs:
        assert run_.argv[0] == "-target" and run_.env["cwd"] == str(gadget.resolve())
        assert f"{tmp_path / 'headers'}/" in run_.argv
