"""ig's header search (walk-up, IG_SOURCE_PATH, --include, per-arch directories) and the libbpf
compatibility header, compiled with the real clang on the project's own sources (build_sources/)."""

from __future__ import annotations

import io
import shutil
import subprocess
from pathlib import Path

import pytest
from elftools.elf.elffile import ELFFile

from gadgetstore.engine.build import BuildRequest, clang_command, compile_gadget
from gadgetstore.engine.buildspec import BuildError
from gadgetstore.engine.gadget_headers import (
    COMPAT_INCLUDE,
    ORIGIN_OPTION,
    ORIGIN_WALK_UP,
    SYSTEM_HEADER_DIRS,
    find_header_search,
    find_libbpf,
    read_libbpf_version,
)
from gadgetstore.engine.toolchain import find_clang
from tests.support.fake_tools import fake_clang, fake_strip
from tests.support.gadget_trees import (
    ARCH_MARKS,
    copy_gadget,
    make_decoy_tree,
    make_tree,
    rodata_marks,
    section_names,
)

HAVE_TOOLCHAIN = (
    (shutil.which("clang") is not None or any(shutil.which(f"clang-{n}") for n in range(14, 30)))
    and Path("/usr/include/bpf/bpf_tracing.h").is_file()
)
needs_clang = pytest.mark.skipif(
    not HAVE_TOOLCHAIN, reason="needs clang, llvm and libbpf-dev (apt-get install clang-19 llvm-19 libbpf-dev)"
)


def build_marks(request: BuildRequest, log: list[str] | None = None) -> dict[str, tuple[int, int]]:
    compiled = compile_gadget(request, (log if log is not None else []).append)
    marks = {}
    for arch, layers in compiled.layers.items():
        assert layers.ebpf is not None
        marks[arch] = rodata_marks(layers.ebpf)
    return marks


def expected_marks(tree_mark: int) -> dict[str, tuple[int, int]]:
    return {arch: (arch_mark, tree_mark) for arch, arch_mark in ARCH_MARKS.items()}


# -- where headers come from --------------------------------------------------------------------


@needs_clang
def test_walk_up_finds_the_tree_above_the_gadget_without_git(tmp_path: Path) -> None:
    tree = make_tree(tmp_path / "exported-ig", 1)
    gadget = copy_gadget("headers_probe", tree / "gadgets" / "probe")
    assert not list(tree.rglob(".git"))  # an exported tree: only include/gadget/ marks it
    log: list[str] = []
    assert build_marks(BuildRequest(gadget), log) == expected_marks(1)
    assert f"gadget headers: {tree.resolve() / 'include'} ({ORIGIN_WALK_UP})" in log


@needs_clang
def test_the_nearest_tree_wins(tmp_path: Path) -> None:
    outer = make_decoy_tree(tmp_path / "outer")
    inner = make_tree(outer / "vendor" / "ig", 2)
    gadget = copy_gadget("headers_probe", inner / "gadgets" / "probe")
    assert build_marks(BuildRequest(gadget)) == expected_marks(2)


@needs_clang
def test_ig_source_path_wins_over_the_tree_around_the_gadget(tmp_path: Path) -> None:
    decoy = make_decoy_tree(tmp_path / "decoy")
    gadget = copy_gadget("headers_probe", decoy / "gadgets" / "probe")
    checkout = make_tree(tmp_path / "ig", 3)
    assert build_marks(BuildRequest(gadget, ig_source_path=str(checkout))) == expected_marks(3)


@needs_clang
def test_include_dirs_come_first_in_order_and_the_tree_stays_behind_them(tmp_path: Path) -> None:
    tree = make_tree(tmp_path / "ig", 1)
    (tree / "include" / "gadget" / "only_in_tree.h").write_text("#define ONLY_IN_TREE 1\n")
    gadget = copy_gadget("headers_probe", tree / "gadgets" / "probe")
    source = gadget / "program.bpf.c"
    source.write_text("#include <gadget/only_in_tree.h>\n" + source.read_text())
    # --include DIR plays /usr/include's role: DIR/gadget/tree.h and DIR/gadget/<arch>/vmlinux.h
    first, second = make_tree(tmp_path / "first", 4) / "include", make_tree(tmp_path / "second", 5) / "include"
    log: list[str] = []
    assert build_marks(BuildRequest(gadget, include_dirs=(first, second)), log) == expected_marks(4)
    assert log.index(f"gadget headers: {first} ({ORIGIN_OPTION})") < log.index(
        f"gadget headers: {tree.resolve() / 'include'} ({ORIGIN_WALK_UP})"
    )


def test_installed_headers_only_when_nothing_else_gives_any(tmp_path: Path) -> None:
    system = tmp_path / "usr-include"
    (system / "gadget" / "amd64").mkdir(parents=True)
    gadget = tmp_path / "lonely" / "gadget"
    gadget.mkdir(parents=True)
    search = find_header_search(gadget, (), None, system_include=system)
    assert search.include_dirs("amd64") == (system / "gadget" / "amd64",)
    assert search.include_dirs("arm64") == ()  # directories that do not exist are left out
    extra = tmp_path / "extra"
    extra.mkdir()
    assert find_header_search(gadget, (extra,), None, system_include=system).include_dirs("amd64") == (extra,)
    checkout = make_tree(tmp_path / "ig", 1)
    assert find_header_search(gadget, (), str(checkout), system_include=system).include_dirs("arm64") == (
        checkout / "include", checkout / "include" / "gadget" / "arm64"
    )


@pytest.mark.parametrize(
    ("include", "ig_source", "expected"),
    [
        ("nowhere", None, "--include {tmp}/nowhere: not a directory"),
        (None, "plain", "IG_SOURCE_PATH={tmp}/plain: no include/gadget/ there; it must name an Inspektor Gadget "
                        "source tree"),
    ],
)
def test_a_bad_include_or_ig_source_path_is_one_line(
    tmp_path: Path, include: str | None, ig_source: str | None, expected: str
) -> None:
    (tmp_path / "plain").mkdir()
    with pytest.raises(BuildError) as error:
        find_header_search(
            tmp_path,
            (tmp_path / include,) if include else (),
            str(tmp_path / ig_source) if ig_source else None,
        )
    assert str(error.value) == expected.format(tmp=tmp_path)


@needs_clang
def test_missing_ig_headers_say_where_they_are_looked_for(tmp_path: Path) -> None:
    gadget = copy_gadget("headers_probe", tmp_path / "lonely")
    source = gadget / "program.bpf.c"
    source.write_text(source.read_text().replace("<vmlinux.h>", "<gadget/tree.h>", 1))
    with pytest.raises(BuildError) as error:
        compile_gadget(BuildRequest(gadget))
    assert str(error.value).endswith(
        "(hint: Inspektor Gadget's headers were not found: build inside an ig checkout, set IG_SOURCE_PATH, "
        "or pass --include DIR)"
    )


# -- libbpf compatibility ---------------------------------------------------------------------


def sixth_argument_offsets(elf_bytes: bytes, section_name: str) -> set[int]:
    """Offsets of the 64-bit loads from the context register (r1) in one program section."""
    elf = ELFFile(io.BytesIO(elf_bytes))
    section = elf.get_section_by_name(section_name)
    assert section is not None
    code = section.data()
    offsets = set()
    for start in range(0, len(code), 8):
        opcode, registers = code[start], code[start + 1]
        if opcode == 0x79 and registers >> 4 == 1:  # BPF_LDX | BPF_MEM | BPF_DW, source register r1
            offsets.add(int.from_bytes(code[start + 2:start + 4], "little", signed=True))
    return offsets


@needs_clang
def test_libbpf_1_2_macros_compile_with_the_installed_libbpf(tmp_path: Path) -> None:
    tree = make_tree(tmp_path / "ig", 1)
    gadget = copy_gadget("probe6", tree / "gadgets" / "probe6")
    log: list[str] = []
    compiled = compile_gadget(BuildRequest(gadget, output_dir=tmp_path / "out"), log.append)
    installed = find_libbpf(SYSTEM_HEADER_DIRS)
    assert installed is not None
    compile_lines = [line for line in log if line.startswith("$ ") and " -target bpf " in line]
    assert len(compile_lines) == 2
    assert all((str(COMPAT_INCLUDE) in line) == installed.needs_compat for line in compile_lines)
    for arch, sixth_register_offset in (("amd64", 64), ("arm64", 40)):  # r9 / regs[5]
        elf = compiled.layers[arch].ebpf
        assert elf is not None
        assert {"uprobe/libc:malloc", "uretprobe/libc:malloc", "kprobe/six_argument_function",
                "kprobe/__x64_sys_mmap"} <= section_names(elf)
        assert sixth_argument_offsets(elf, "kprobe/six_argument_function") == {sixth_register_offset}
    if installed.needs_compat:  # the same source with the old headers alone does not compile
        clang = find_clang()
        command = clang_command(clang.path, "program.bpf.c", "amd64", tmp_path / "bare.o",
                                (tree / "include", tree / "include" / "gadget" / "amd64"))
        bare = subprocess.run(command, cwd=gadget, capture_output=True, text=True, check=False)
        assert bare.returncode != 0 and "BPF_UPROBE" in bare.stderr


def test_the_compat_header_only_for_libbpf_older_than_1_2(tmp_path: Path) -> None:
    tools, record = tmp_path / "tools", tmp_path / "record"
    clang = fake_clang(tools, record)
    fake_strip(tools, record)
    tree = make_tree(tmp_path / "ig", 1)
    gadget = copy_gadget("headers_probe", tree / "gadgets" / "probe")
    compat_flag = f"-I {COMPAT_INCLUDE}/"
    for version, expect_compat in (((1, 1), True), ((1, 3), False), (None, True)):
        libbpf = tmp_path / f"libbpf-{version}"
        (libbpf / "bpf").mkdir(parents=True)
        (libbpf / "bpf" / "bpf_tracing.h").write_text("/* stand-in */\n")
        if version is not None:
            (libbpf / "bpf" / "libbpf_version.h").write_text(
                f"#define LIBBPF_MAJOR_VERSION {version[0]}\n#define LIBBPF_MINOR_VERSION {version[1]}\n"
            )
        log: list[str] = []
        compile_gadget(BuildRequest(gadget, include_dirs=(libbpf,), clang=str(clang)), log.append)
        clang_lines = [line for line in log if line.startswith(f"$ {clang} ")]
        assert [compat_flag in line for line in clang_lines] == [expect_compat, expect_compat], version


def test_libbpf_version_is_read_from_the_first_bpf_tracing_on_the_path(tmp_path: Path) -> None:
    for name, minor in (("a", None), ("b", 3), ("c", 1)):
        (tmp_path / name / "bpf").mkdir(parents=True)
        if minor is not None:
            (tmp_path / name / "bpf" / "bpf_tracing.h").write_text("\n")
            (tmp_path / name / "bpf" / "libbpf_version.h").write_text(
                f"#define LIBBPF_MAJOR_VERSION 1\n# define  LIBBPF_MINOR_VERSION  {minor}\n"
            )
    found = find_libbpf([tmp_path / "a", tmp_path / "b", tmp_path / "c"])
    assert found is not None and (found.directory, found.version, found.needs_compat) == (tmp_path / "b", (1, 3), False)
    assert read_libbpf_version(tmp_path / "a" / "bpf" / "libbpf_version.h") is None
