"""The ``wasm.*`` keys of ig's own wasm gadgets, against wazero, the runtime ig reads them with.

Each gadget of ig's gadgets/Makefile with a ``wasm:`` entry is built with ig's builder command
(Go >= 1.26 for the Go ones, cargo with the wasm32-wasip1 target for the Rust one). The oracle is
tests_ig/wazero_oracle/main.go: it does what ig's wasm operator does (compile, list the ``ig``
imports, instantiate with ``_initialize``, call ``gadgetAPIVersion``) with the wazero version of
ig's go.mod; it is compiled inside the checkout through ``go build -overlay``, which leaves the
checkout untouched.
"""

from __future__ import annotations

import json
import os
import re
import shutil
from pathlib import Path

import pytest

from gadgetstore.engine.analysis.extrainfo import analyze_wasm
from tests_ig.oracle import ig_wasm_command, makefile_gadgets, run, wasm_source

IG_ROOT = Path(os.environ.get("IG_SOURCE", ".")).resolve()
WASM_GADGETS = [gadget for gadget in (makefile_gadgets(IG_ROOT) if os.environ.get("IG_SOURCE") else [])
                if wasm_source(IG_ROOT / "gadgets" / gadget) is not None]
ORACLE_SOURCE = Path(__file__).resolve().parent / "wazero_oracle" / "main.go"
ORACLE_PACKAGE = "gadgetstore_wazero_oracle"  # exists only in the overlay
MINIMUM_GO = (1, 26)


def go_version() -> tuple[int, int] | None:
    if shutil.which("go") is None:
        return None
    answer = run(["go", "env", "GOVERSION"], env={**os.environ, "GOTOOLCHAIN": "local"})
    match = re.match(r"go(\d+)\.(\d+)", answer.stdout.strip())
    return (int(match[1]), int(match[2])) if match else None


def has_rust_wasm_target() -> bool:
    if shutil.which("cargo") is None or shutil.which("rustc") is None:
        return False
    sysroot = run(["rustc", "--print", "sysroot"]).stdout.strip()
    return bool(sysroot) and (Path(sysroot) / "lib" / "rustlib" / "wasm32-wasip1").is_dir()


def require_toolchain(source: str) -> None:
    if source.endswith(".go"):
        found = go_version()
        if found is None or found < MINIMUM_GO:
            pytest.skip(f"Go >= {MINIMUM_GO[0]}.{MINIMUM_GO[1]} is needed (found {found})")
    elif not has_rust_wasm_target():
        pytest.skip("cargo with the wasm32-wasip1 target is needed")


@pytest.fixture(scope="session")
def wazero_oracle(tmp_path_factory: pytest.TempPathFactory) -> Path:
    found = go_version()
    if found is None or found < MINIMUM_GO:
        pytest.skip(f"the wazero oracle needs Go >= {MINIMUM_GO[0]}.{MINIMUM_GO[1]} (found {found})")
    workdir = tmp_path_factory.mktemp("wazero-oracle")
    overlay = workdir / "overlay.json"
    overlay.write_text(json.dumps({"Replace": {str(IG_ROOT / ORACLE_PACKAGE / "main.go"): str(ORACLE_SOURCE)}}))
    binary = workdir / "wazero_oracle"
    env = {key: value for key, value in os.environ.items() if key not in ("GOOS", "GOARCH")}
    built = run(["go", "build", "-overlay", str(overlay), "-o", str(binary), f"./{ORACLE_PACKAGE}"],
                cwd=IG_ROOT, env={**env, "CGO_ENABLED": "0", "GOTOOLCHAIN": "local"})
    assert built.returncode == 0, f"building the wazero oracle in {IG_ROOT}: {built.stderr[-2000:]}"
    return binary


@pytest.mark.parametrize("gadget", WASM_GADGETS)
def test_wasm_keys_match_what_ig_reads_with_wazero(gadget: str, tmp_path: Path, wazero_oracle: Path) -> None:
    gadget_dir = IG_ROOT / "gadgets" / gadget
    source = wasm_source(gadget_dir)
    assert source is not None
    require_toolchain(source)
    command, env, module = ig_wasm_command(gadget_dir, source, tmp_path)
    built = run(command, cwd=gadget_dir, env=env)
    assert built.returncode == 0, built.stderr[-3000:]
    answer = run([str(wazero_oracle), str(module)])
    assert answer.returncode == 0, answer.stderr
    expected = json.loads(answer.stdout)
    assert expected["gadgetAPIVersion"] == 1
    info = analyze_wasm(module.read_bytes())
    assert info == {
        "wasm.upcalls": ("application/json", json.dumps(expected["upcalls"], separators=(",", ":")).encode()),
        "wasm.gadgetAPIVersion": ("text/plain", b"1"),
    }
