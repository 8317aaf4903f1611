"""``image inspect`` of ig's big gadgets, cold and warm (issue 16: warm < 150 ms with start-up, cold < 1 s).

    IG_SOURCE=~/inspektor-gadget .venv/bin/python benchmarks/inspect_bench.py
    .venv/bin/python benchmarks/inspect_bench.py --ig-source DIR --libbpf-include DIR --rounds 15

Each gadget is compiled for amd64 and arm64 with ig's builder flags (clang -target bpf -Wall -g -O2
-D __TARGET_ARCH_<arch> -I <ig>/include/ -I <ig>/include/gadget/<arch>/, then llvm-strip -g), laid
out as ig lays an image out and stored under ``benchmarks/work/inspect-store``. ``--libbpf-include``
puts newer libbpf headers first (top_cuda_memory needs libbpf >= 1.2 macros); ``--clang`` picks the
compiler (fsnotify needs clang >= 15). A gadget that does not compile is reported and skipped.

Every command runs as a user runs it: a new ``gadgetstore`` process (the console script, bytecode
cached as an installed package has it), with its cache home in ``benchmarks/work/inspect-cache``.
"Cold" removes the analysis cache first; "warm" runs with it in place. The table gives the median
and the fastest wall time of ``--rounds`` runs and the median CPU time (user + system, which other
work on the machine disturbs less), and the bare interpreter start (``python -c pass``) for scale.
"""

from __future__ import annotations

import argparse
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from gadgetstore.engine.build import commit_image, parse_tag  # noqa: E402
from gadgetstore.engine.buildspec import ArchLayers, plan_image  # noqa: E402
from gadgetstore.engine.store import Store  # noqa: E402

GADGETS = ("trace_lsm", "top_cuda_memory", "fsnotify", "trace_exec", "trace_open")
ARCH_MACROS = {"amd64": "x86", "arm64": "arm64"}
VARIANTS = {"all keys": [], "--show-datasources": ["--show-datasources"],
            "--extra-info ebpf.programs": ["--extra-info", "ebpf.programs"]}


def compile_gadget(ig: Path, name: str, clang: str, strip: str, extra: list[Path], out: Path) -> dict[str, bytes]:
    objects = {}
    for arch, macro in ARCH_MACROS.items():
        target = out / f"{name}_{arch}.o"
        command = [clang, "-target", "bpf", "-Wall", "-g", "-O2", *(f"-I{d}" for d in extra),
                   "-I/usr/include/x86_64-linux-gnu", "-D", f"__TARGET_ARCH_{macro}", "-I", f"{ig}/include/",
                   "-I", f"{ig}/include/gadget/{arch}/", "-c", "program.bpf.c", "-o", str(target)]
        subprocess.run(command, cwd=ig / "gadgets" / name, check=True, capture_output=True)
        subprocess.run([strip, "-g", str(target)], check=True, capture_output=True)
        objects[arch] = target.read_bytes()
    return objects


def build_store(store_dir: Path, ig: Path, clang: str, strip: str, extra: list[Path]) -> list[str]:
    shutil.rmtree(store_dir, ignore_errors=True)
    store = Store.open(store_dir)
    built = []
    with tempfile.TemporaryDirectory() as tmp:
        for name in GADGETS:
            try:
                objects = compile_gadget(ig, name, clang, strip, extra, Path(tmp))
            except subprocess.CalledProcessError as err:
                first = next((line for line in err.stderr.decode(errors="replace").splitlines() if "error" in line),
                             "")
                print(f"skipped {name}: does not compile ({first.strip()})", file=sys.stderr)
                continue
            layers = {arch: ArchLayers(ebpf=data) for arch, data in objects.items()}
            metadata = (ig / "gadgets" / name / "gadget.yaml").read_bytes()
            commit_image(store, plan_image(layers, metadata, "2026-01-01T00:00:00Z", "bench"), parse_tag(name))
            built.append(name)
    return built


def timed(command: list[str], env: dict[str, str]) -> tuple[float, float]:
    """Wall and CPU (user + system) milliseconds of one run; CPU time moves less with the machine's load."""
    start = time.perf_counter()
    process = subprocess.Popen(command, stdout=subprocess.DEVNULL, env=env)
    _, status, usage = os.wait4(process.pid, 0)
    wall = (time.perf_counter() - start) * 1000
    process.returncode = os.waitstatus_to_exitcode(status)
    if process.returncode != 0:
        raise SystemExit(f"{' '.join(command)} failed with {process.returncode}")
    return wall, (usage.ru_utime + usage.ru_stime) * 1000


def summary(runs: list[tuple[float, float]]) -> str:
    walls = [wall for wall, _ in runs]
    return (f"{statistics.median(walls):.0f} / {min(walls):.0f} / "
            f"{statistics.median(cpu for _, cpu in runs):.0f} ms")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--ig-source", type=Path, default=os.environ.get("IG_SOURCE"))
    parser.add_argument("--libbpf-include", type=Path, action="append", default=[])
    parser.add_argument("--clang", default="clang")
    parser.add_argument("--strip", default="llvm-strip")
    parser.add_argument("--rounds", type=int, default=11)
    parser.add_argument("--reuse", action="store_true", help="keep the store of a previous run")
    args = parser.parse_args()
    if args.ig_source is None:
        parser.error("name an ig checkout with --ig-source or IG_SOURCE")
    store_dir = ROOT / "benchmarks" / "work" / "inspect-store"
    if args.reuse and store_dir.is_dir():
        built = [name for name in GADGETS if Store.open(store_dir).lookup(str(parse_tag(name))) is not None]
    else:
        built = build_store(store_dir, args.ig_source.expanduser(), args.clang, args.strip, args.libbpf_include)
    env = {key: value for key, value in os.environ.items() if key != "PYTHONDONTWRITEBYTECODE"}
    env["XDG_CACHE_HOME"] = str(ROOT / "benchmarks" / "work" / "inspect-cache")
    analysis_cache = Path(env["XDG_CACHE_HOME"]) / "gadgetstore" / "analysis"
    script = Path(sys.executable).with_name("gadgetstore")
    package = Path((Store.__module__ and sys.modules[Store.__module__].__file__) or "").parents[1]
    subprocess.run([sys.executable, "-m", "compileall", "-q", str(package / "engine"), str(package / "cli")],
                   check=True, env=env)
    bare = [timed([sys.executable, "-c", "pass"], env) for _ in range(args.rounds)]
    print(f"python -c pass (wall median / fastest / CPU median): {summary(bare)}; load average "
          f"{os.getloadavg()[0]:.2f}\n")
    print("| gadget | command | cold: wall median / fastest / CPU | warm: wall median / fastest / CPU |")
    print("|---|---|---|---|")
    for name in built:
        for label, extra in VARIANTS.items():
            command = [str(script), "--store", str(store_dir), "image", "inspect", name, "--pull", "never", *extra]
            cold = []
            for _ in range(args.rounds):
                shutil.rmtree(analysis_cache, ignore_errors=True)
                cold.append(timed(command, env))
            warm = [timed(command, env) for _ in range(args.rounds)]
            print(f"| {name} | {label} | {summary(cold)} | {summary(warm)} |", flush=True)


if __name__ == "__main__":
    main()
