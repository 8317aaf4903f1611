import json
import subprocess
import sys
from collections.abc import Callable
from datetime import UTC, datetime
from pathlib import Path

import pytest
import yaml
from click.testing import CliRunner

from gadgetstore.cli.main import cli
from gadgetstore.engine import analysiscache, imageinspect
from gadgetstore.engine.analysis import datasources as datasources_mod
from gadgetstore.engine.archive import import_archive
from gadgetstore.engine.build import commit_image, parse_tag
from gadgetstore.engine.buildspec import ArchLayers, plan_image
from gadgetstore.engine.descriptor import Descriptor
from gadgetstore.engine.digest import Digest
from gadgetstore.engine.fsck import fsck
from gadgetstore.engine.images import host_arch, host_manifest
from gadgetstore.engine.store import Store
from tests.support.igstore import tree
from tests.support.images import DEMO_EPOCH, DEMO_IMAGE, DEMO_SHORT_NAME, DEMO_SOURCES, ArchivedImage

DEMO_CREATED = datetime.fromtimestamp(int(DEMO_EPOCH), UTC).strftime("%Y-%m-%dT%H:%M:%SZ")
"""The build's SOURCE_DATE_EPOCH, as the image's creation time."""


@pytest.fixture
def imported(tmp_path: Path, gadget_tar: Path) -> Path:
    root = tmp_path / "s"
    assert import_archive(Store.open(root), gadget_tar) == [DEMO_IMAGE]
    return root


def inspect(root: Path, *args: str, image: str = DEMO_SHORT_NAME) -> tuple[int, str, str]:
    result = CliRunner().invoke(cli, ["--store", str(root), "image", "inspect", image, *args])
    assert "Traceback" not in result.stdout + result.stderr
    return result.exit_code, result.stdout, result.stderr


def test_default_output_lists_every_key_with_content_type(imported: Path) -> None:
    code, out, _ = inspect(imported)
    assert code == 0 and out.endswith("}\n")
    data = json.loads(out)
    assert list(data) == sorted(data)
    for key in ("oci.manifest", "oci.metadata", "oci.digest", "oci.created", "oci.repository", "oci.tag",
                "ebpf.sections", "ebpf.maps", "ebpf.programs", "ebpf.variables", "ebpf.flowchart", "ebpf.sequence"):
        assert key in data, key
    assert data["oci.repository"] == {"content": DEMO_SHORT_NAME, "contentType": "text/plain"}
    config = (DEMO_SOURCES / "gadget.yaml").read_bytes()  # ig names the config blob: gadget.yaml as built
    assert data["oci.digest"]["content"] == str(Digest.of_bytes(config))
    assert data["ebpf.flowchart"]["contentType"] == "text/mermaid"
    code, compact, _ = inspect(imported, "-o", "json")
    assert json.loads(compact) == data and compact.count("\n") == 1
    assert "--\\u003e" in compact, "Go's encoding/json escapes > in mermaid arrows"
    code, as_yaml, _ = inspect(imported, "-o", "yaml")
    assert yaml.safe_load(as_yaml) == data


def test_extra_info_values_are_decoded_by_content_type(imported: Path, gadget_image: ArchivedImage) -> None:
    _, out, _ = inspect(imported, "--extra-info", "oci.created")
    assert out == f"{DEMO_CREATED}\n"
    _, out, _ = inspect(imported, "--extra-info", "ebpf.maps", "-o", "json")
    assert {m["Name"]: m["Type"] for m in json.loads(out)} == {"events": "RingBuf", "openat_calls": "PerCPUArray"}
    _, out, _ = inspect(imported, "--extra-info", "oci.metadata", "--jsonpath", ".name")
    assert out == "trace demo\n", "string results of --jsonpath are printed raw"
    _, out, _ = inspect(imported, "--extra-info", "oci.manifest", "--jsonpath", ".layers[*].size", "-o", "json")
    assert json.loads(out) == [gadget_image.layers[host_arch()].size]
    _, out, _ = inspect(imported, "--extra-info", "ebpf.flowchart")
    assert out.startswith("flowchart LR\n")


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--extra-info", "nope"], "Error: extra info 'nope' not found"),
        (["--extra-info", "oci.manifest", "--jsonpath", ".nothing"], "Error: path '.nothing' not found"),
        (["--extra-info", "oci.created", "--jsonpath", ".x"], "Error: --jsonpath needs a JSON or YAML value"),
    ],
)
def test_inspect_errors_are_one_line(imported: Path, args: list[str], message: str) -> None:
    code, _, err = inspect(imported, *args)
    assert code == 1 and err.startswith(message) and err.count("\n") == 1


def test_analysis_is_cached_by_layer_digest(imported: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    store = Store.open(imported)
    manifest = host_manifest(store, store.resolve(DEMO_IMAGE), "amd64")
    first = imageinspect.image_extra_info(store, DEMO_SHORT_NAME, manifest)
    layer = manifest.layer("application/vnd.gadget.ebpf.program.v1+binary")
    assert layer is not None and imageinspect.cache_path(store, layer.digest).is_file()

    def must_not_run(_: bytes) -> dict[str, tuple[str, bytes]]:
        raise AssertionError("analysis should come from the cache")

    monkeypatch.setitem(imageinspect.ANALYZERS, "application/vnd.gadget.ebpf.program.v1+binary", must_not_run)
    assert imageinspect.image_extra_info(store, DEMO_SHORT_NAME, manifest) == first


def test_cache_files_nested_too_deeply_are_recomputed(imported: Path) -> None:
    """A damaged cache costs a recomputation: JSON 200,000 ``[`` deep in an extra-info header or a
    datasources entry reads as not ours, as other bad JSON does."""
    args = [["--extra-info", "ebpf.maps"], ["--show-datasources"], ["--extra-info", "ebpf.programs"]]
    fresh = [inspect(imported, *a) for a in args]
    assert all(code == 0 for code, _, _ in fresh)
    store = Store.open(imported)
    manifest = host_manifest(store, store.resolve(DEMO_IMAGE), "amd64")
    layer = manifest.layer("application/vnd.gadget.ebpf.program.v1+binary")
    assert layer is not None
    nested = b"[" * 200_000 + b"]" * 200_000
    extra, datasources = imageinspect.cache_path(store, layer.digest), \
        imageinspect.cache_path(store, manifest.desc.digest, ".datasources.json")
    assert extra.is_file() and datasources.is_file()
    analysiscache.save_entry(extra, b"gadgetstore-extra-info 1\n" + nested + b"\n")  # whole, as written
    analysiscache.save_entry(datasources, nested)
    assert [inspect(imported, *a) for a in args] == fresh


def test_gc_prunes_cache_of_removed_layers(imported: Path) -> None:
    store = Store.open(imported)
    manifest = host_manifest(store, store.resolve(DEMO_IMAGE), "amd64")
    imageinspect.image_extra_info(store, DEMO_SHORT_NAME, manifest)
    imageinspect.image_datasources(store, manifest)
    assert imageinspect.image_entries(store, DEMO_SHORT_NAME, manifest)["ebpf.maps"].rendering(pretty=True)
    assert {path.suffix for path in store.analysis_dir.rglob("*.*")} == {".extra", ".json", ".jsonpretty"}
    store.remove_image(DEMO_IMAGE)
    store.gc()
    assert not [path for path in store.analysis_dir.rglob("*") if path.is_file()]


def test_reading_commands_write_nothing_into_gadgetstores_own_store(imported: Path, tmp_path: Path) -> None:
    """The rule a store shared with ig follows holds for gadgetstore's own: the analyses inspect
    computes (and caches) go to the cache home, not into the store."""
    before = tree(imported)
    runner = CliRunner()
    for args in (["image", "list"], ["image", "inspect", DEMO_SHORT_NAME],
                 ["image", "inspect", DEMO_SHORT_NAME, "--extra-info", "ebpf.maps"],
                 ["image", "inspect", DEMO_SHORT_NAME, "--show-datasources"],
                 ["image", "export", DEMO_SHORT_NAME, "-"], ["fsck"]):
        result = runner.invoke(cli, ["--store", str(imported), *args])
        assert result.exit_code == 0, (args, result.stderr)
        assert tree(imported) == before, f"{args} changed the store"
    cached = {path.suffix for path in (tmp_path / "xdg-cache").rglob("*") if path.is_file()}
    assert {".extra", ".json"} <= cached, "the analyses are cached outside the store"


def test_fsck_creates_no_lock_file_in_a_store_that_has_none(imported: Path) -> None:
    """A reading command writes nothing, also where the index lock file went missing."""
    (imported / "index.json.lock").unlink()
    before = tree(imported)
    result = CliRunner().invoke(cli, ["--store", str(imported), "fsck"])
    assert result.exit_code == 0, result.stderr
    assert tree(imported) == before


def test_a_cache_directory_that_is_a_symlink_is_skipped_not_an_error(imported: Path, tmp_path: Path) -> None:
    """The cache is only a cache: one the command cannot use costs a recomputation, and nothing is
    written through the symlink."""
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    Store.open(imported).analysis_dir.parent.mkdir(parents=True)
    Store.open(imported).analysis_dir.symlink_to(elsewhere)
    for _ in range(2):  # the second run finds no cache either
        code, out, err = inspect(imported, "--extra-info", "ebpf.maps")
        assert code == 0, err
        assert json.loads(out)
    assert not list(elsewhere.iterdir())


def _zero_filled(data: bytes) -> bytes:
    return bytes(len(data))


def _truncated(data: bytes) -> bytes:
    return data[:len(data) // 2]


def _tail_zero_filled(data: bytes) -> bytes:
    half = len(data) // 2
    return data[:half] + bytes(len(data) - half)


@pytest.mark.parametrize("damage", [_zero_filled, _truncated, _tail_zero_filled])
@pytest.mark.parametrize(("args", "suffix"), [
    ([], ".extra"),
    (["--extra-info", "ebpf.maps", "-o", "json"], ".extra.ebpf.maps.json"),
    (["--extra-info", "ebpf.programs", "-o", "jsonpretty"], ".extra.ebpf.programs.jsonpretty"),
    (["--show-datasources", "-o", "json"], ".datasources.json"),
])
def test_a_cache_entry_damaged_by_a_crash_is_a_miss_and_is_written_again(
        imported: Path, args: list[str], suffix: str, damage: Callable[[bytes], bytes]) -> None:
    """Entries are written without fsync, so after a crash one may be short or hold zeros where its
    bytes were: inspect then computes the answer again (never prints the damage) and replaces it."""
    code, fresh, err = inspect(imported, *args)
    assert code == 0, err
    [entry] = Store.open(imported).analysis_dir.rglob(f"*{suffix}")
    whole = entry.read_bytes()
    entry.write_bytes(damage(whole))
    code, out, err = inspect(imported, *args)
    assert code == 0, err
    assert out == fresh
    assert entry.read_bytes() == whole, "the damaged entry is written again"


@pytest.mark.parametrize("linked", ["analysis", "analysis/v3"])
def test_gc_deletes_nothing_through_a_symlink_in_the_cache(imported: Path, tmp_path: Path, linked: str) -> None:
    """gc drops cache files that name no blob: never files outside the cache a symlink leads to."""
    elsewhere = tmp_path / "elsewhere"
    (elsewhere / "v3" / "sha256").mkdir(parents=True)
    kept = [elsewhere / "v3" / "sha256" / "notes.txt", elsewhere / "sha256" / "notes.txt"]
    for path in kept:
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(b"mine")
    store = Store.open(imported)
    link = store.analysis_dir.parent / linked
    link.parent.mkdir(parents=True, exist_ok=True)
    link.symlink_to(elsewhere)
    assert store.gc().removed_cache_entries == 0
    assert all(path.read_bytes() == b"mine" for path in kept)


def test_gc_removes_the_analysis_directory_a_store_no_longer_uses(imported: Path) -> None:
    legacy = imported / "analysis" / "v2" / "sha256"
    legacy.mkdir(parents=True)
    (legacy / f"{'a' * 64}.extra").write_bytes(b"cached")
    report = Store.open(imported).gc()
    assert report.removed_cache_entries == 1 and not (imported / "analysis").exists()
    assert fsck(Store.open(imported)).clean


def test_missing_image_is_pulled_first(tmp_path: Path, gadget_tar: Path, anon_registry) -> None:  # type: ignore[no-untyped-def]
    """ig's default ``--pull missing``: inspect fetches an image the store does not have yet."""
    image = anon_registry.ref("gadgets/trace_demo", "v1")
    src = tmp_path / "src"
    runner = CliRunner()
    assert runner.invoke(cli, ["--store", str(src), "image", "import", str(gadget_tar)]).exit_code == 0
    assert runner.invoke(cli, ["--store", str(src), "image", "tag", DEMO_SHORT_NAME, image]).exit_code == 0
    pushed = runner.invoke(cli, ["--store", str(src), "image", "push", "--insecure-registries", anon_registry.host,
                                 image])
    assert pushed.exit_code == 0, pushed.stderr
    dst = tmp_path / "dst"
    never = runner.invoke(cli, ["--store", str(dst), "image", "inspect", image, "--pull", "never"])
    assert never.exit_code == 1 and "not found in the store" in never.stderr
    result = runner.invoke(cli, ["--store", str(dst), "image", "inspect", image, "--insecure-registries",
                                 anon_registry.host, "--extra-info", "oci.created"])
    assert result.exit_code == 0, result.stderr
    assert result.stdout == f"{DEMO_CREATED}\n"
    assert Store.open(dst).lookup(image) is not None


def test_show_datasources_reads_fields_from_the_ebpf_layer(imported: Path) -> None:
    """The ``open`` tracer and its fields come from the BTF; gadget.yaml adds their annotations."""
    code, out, err = inspect(imported, "--show-datasources", "--arch", "amd64", "-o", "json")
    assert code == 0, err
    (source,) = json.loads(out)
    assert list(source) == ["name", "type", "fields"] and source["name"] == "open" and source["type"] == 1
    assert [f["fullName"] for f in source["fields"]] == ["timestamp_raw", "pid", "uid", "dfd", "flags_raw", "comm",
                                                       "fname"]
    fname = source["fields"][-1]
    # struct event: u64, 4 x 32 bits, char comm[16], then char fname[DEMO_PATH_MAX = 128]
    assert (fname["index"], fname["offs"], fname["size"], fname["kind"]) == (6, 40, 128, 13)
    assert fname["annotations"]["columns.width"] == "32"
    _, names, _ = inspect(imported, "--show-datasources", "--arch", "amd64", "--jsonpath", "[0].fields[1].name")
    assert names == "pid\n"


def test_ig_export_inspects_as_ig_shows_it(tmp_path: Path, trace_open_tar: Path) -> None:
    """Compatibility with ig: the oci.* keys and the BTF data source of ig's own trace_open export."""
    root = tmp_path / "s"
    import_archive(Store.open(root), trace_open_tar)
    _, out, _ = inspect(root, "-o", "json", image="trace_open")
    data = json.loads(out)
    assert data["oci.repository"]["content"] == "trace_open"
    assert data["oci.digest"]["content"] == "sha256:4326d8996b54290ca8e8422cf7119ccb7822650ae40837805f5ff867250ca2fe"
    assert data["oci.created"]["content"] == "2024-05-15T18:45:32Z"
    _, out, _ = inspect(root, "--extra-info", "oci.metadata", "--jsonpath", ".name", image="trace_open")
    assert out == "trace open\n"
    _, out, _ = inspect(root, "--extra-info", "oci.manifest", "--jsonpath", ".layers[*].size", "--arch", "amd64",
                        "-o", "json", image="trace_open")
    assert json.loads(out) == [88760]
    # trace_open's gadget.yaml declares no datasources: the ``open`` tracer comes from the BTF alone,
    # and its gadget_mntns_id field gets localmanager's container enrichment.
    code, out, err = inspect(root, "--show-datasources", "--arch", "amd64", "-o", "json", image="trace_open")
    assert code == 0, err
    (source,) = json.loads(out)
    assert [f["fullName"] for f in source["fields"]][:11] == ["timestamp", "pid", "uid", "gid", "mntns_id", "err",
                                                            "fd", "flags", "mode", "comm", "fname"]
    assert [f["fullName"] for f in source["fields"]][11:13] == ["k8s", "k8s.node"]
    fname = source["fields"][10]
    assert (fname["index"], fname["offs"], fname["size"], fname["kind"]) == (10, 62, 255, 13)


def _store_gadget(root: Path, image: str, elves: dict[str, bytes], metadata: bytes) -> Store:
    """The suite's ELF layers under another gadget.yaml, laid out as ig builds an image."""
    store = Store.open(root)
    plan = plan_image({arch: ArchLayers(ebpf=elf) for arch, elf in elves.items()}, metadata, DEMO_CREATED, "test")
    commit_image(store, plan, parse_tag(image))
    return store


def test_show_datasources_come_from_the_cache_by_manifest(imported: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    code, first, err = inspect(imported, "--show-datasources", "-o", "json")
    assert code == 0, err

    def must_not_run(*_: object) -> list[object]:
        raise AssertionError("data sources should come from the cache")

    monkeypatch.setattr(datasources_mod, "gadget_datasources", must_not_run)
    assert inspect(imported, "--show-datasources", "-o", "json") == (0, first, "")
    store = Store.open(imported)
    manifest = host_manifest(store, store.resolve(DEMO_IMAGE), None)
    assert imageinspect.cache_path(store, manifest.desc.digest, ".datasources.json").is_file()


@pytest.mark.parametrize("damage", [b"", b"gadgetstore-extra-info 1\n[[\"ebpf.maps\",\"x\",99,0]]\n{}",
                                    b"gadgetstore-extra-info 1\nnot json\n", b"\x7fELF garbage"])
def test_damaged_cache_entries_are_analysed_again(imported: Path, damage: bytes) -> None:
    """A cache file that is not one we wrote whole (torn, truncated, foreign) is a miss, then rewritten."""
    _, expected, _ = inspect(imported, "-o", "json")
    _, expected_sources, _ = inspect(imported, "--show-datasources", "-o", "json")
    cache = Store.open(imported).analysis_dir
    for path in cache.rglob("*.*"):
        path.write_bytes(damage)
    assert inspect(imported, "-o", "json") == (0, expected, "")
    assert inspect(imported, "--show-datasources", "-o", "json") == (0, expected_sources, "")
    assert all(path.read_bytes() != damage for path in cache.rglob("*.*"))


def test_extra_info_json_is_printed_as_go_remarshals_it(imported: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """ig unmarshals JSON extra info into Go maps before printing it, so object keys come out sorted."""
    _, out, _ = inspect(imported, "--extra-info", "ebpf.variables", "-o", "json")
    assert out.startswith('[{"Map":'), "Map, Name, Offset, Size: sorted, not the struct's order"
    _, manifest, _ = inspect(imported, "--extra-info", "oci.manifest")
    assert list(json.loads(manifest)) == ["annotations", "artifactType", "config", "layers", "schemaVersion"]
    assert manifest.startswith('{\n  "annotations": {\n')
    _, programs, _ = inspect(imported, "--extra-info", "ebpf.programs")

    def must_not_run(_: str) -> object:
        raise AssertionError("the rendering should come from the cache")

    monkeypatch.setattr(imageinspect, "go_unmarshal", must_not_run)
    assert inspect(imported, "--extra-info", "ebpf.programs") == (0, programs, "")
    assert programs.startswith('[\n  {\n    "Section": ')


def test_invalid_gadget_yaml_is_one_line_for_show_datasources(tmp_path: Path, gadget_image: ArchivedImage) -> None:
    """ig refuses a gadget whose gadget.yaml does not parse (viper's ReadConfig fails); so do we, in one line."""
    store = Store.open(tmp_path / "s")
    config = b"datasources: [open\n  x: {"
    layer = gadget_image.elves[host_arch()]
    manifest = json.dumps({
        "schemaVersion": 2, "artifactType": "application/vnd.gadget.v1+binary",
        "config": {"mediaType": "application/vnd.gadget.config.v1+yaml", "digest": str(store.blobs.put(config)),
                   "size": len(config)},
        "layers": [{"mediaType": "application/vnd.gadget.ebpf.program.v1+binary", "digest": str(store.blobs.put(layer)),
                    "size": len(layer)}]}).encode()
    with store.transaction() as txn:
        txn.tag("localhost/broken:v1", Descriptor("application/vnd.oci.image.manifest.v1+json",
                                                  store.blobs.put(manifest), len(manifest)))
    code, out, err = inspect(tmp_path / "s", "--show-datasources", image="localhost/broken:v1")
    assert code == 1 and out == "" and err.count("\n") == 1, err
    assert err.startswith("Error: gadget.yaml sha256:") and "is not valid YAML: " in err
    assert not list(store.analysis_dir.rglob("*.datasources.json"))
    _store_gadget(tmp_path / "s", "localhost/two:v1", gadget_image.elves, b"name: first\n---\n[not, a, map]\n")
    assert inspect(tmp_path / "s", "--show-datasources", image="localhost/two:v1")[0] == 0, \
        "only the first document counts, as with Go's YAML decoder"


def test_show_datasources_lists_no_gadget_yaml_only_source(tmp_path: Path, gadget_image: ArchivedImage) -> None:
    metadata = (DEMO_SOURCES / "gadget.yaml").read_bytes() + b"  ghost:\n    annotations:\n      x: y\n"
    assert b"\ndatasources:\n  open:\n" in metadata
    _store_gadget(tmp_path / "s", "localhost/ghost:v1", gadget_image.elves, metadata)
    code, out, err = inspect(tmp_path / "s", "--show-datasources", "--jsonpath", "[*].name", "-o", "json",
                             image="localhost/ghost:v1")
    assert (code, json.loads(out)) == (0, ["open"]), err


_MODULES_AFTER_INSPECT = """
import sys
from gadgetstore.cli.main import cli
try:
    cli(["--store", sys.argv[1], "image", "inspect", sys.argv[2], *sys.argv[3:]], prog_name="gadgetstore")
except SystemExit as stop:
    assert not stop.code, stop.code
loaded = [name for name in sys.modules if name.startswith(("elftools", "yaml", "jsonpath_ng", "trio",
                                                           "gadgetstore.engine.analysis."))]
print(sorted(set(loaded) - {"gadgetstore.engine.analysis.entries"}), file=sys.stderr)  # a type alias
"""


@pytest.mark.parametrize("args", [[], ["--extra-info", "ebpf.programs"], ["--show-datasources"]])
def test_warm_inspect_loads_no_analysis_code(imported: Path, args: list[str]) -> None:
    """Start-up is most of a warm inspect: the ELF/BTF analysers, YAML and JSONPath stay unloaded."""
    command = [sys.executable, "-c", _MODULES_AFTER_INSPECT, str(imported), DEMO_SHORT_NAME, *args]
    subprocess.run(command, check=True, capture_output=True)
    warm = subprocess.run(command, check=True, capture_output=True, text=True)
    assert warm.stderr.strip() == "[]"
