"""Build time of ig's gadgets (issue 16): ``gadgetstore image build`` against bare clang.

For each gadget of an Inspektor Gadget checkout that has eBPF code, one round times
 - bare clang: the very clang commands gadgetstore runs (same clang, same flags, taken from its own
   plan), amd64 then arm64, nothing else;
 - bare clang + llvm-strip, the same way;
 - ``gadgetstore image build`` end to end (process start, tool and header discovery, both arches
   side by side, llvm-strip, writing the image into a fresh store), eBPF only (``-f`` names a
   build.yaml without the wasm module, so a Go or Rust build does not count).
Rounds alternate the three so load changes hit them alike; figures are medians.

Run: .venv/bin/python benchmarks/build_bench.py IG_CHECKOUT [--repeat 3] [--gadgets a,b,...]
Prints a Markdown table. Not a timed test.
"""

from __future__ import annotations

import argparse
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from gadgetstore.engine.build import BuildRequest, find_sources, plan_ebpf

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from tests_ig.oracle import makefile_gadgets


def timed(command: list[str], cwd: Path, env: dict[str, str] | None = None) -> float:
    start = time.perf_counter()
    result = subprocess.run(command, cwd=cwd, env=env, stdin=subprocess.DEVNULL, capture_output=True, check=False)
    elapsed = time.perf_counter() - start
    if result.returncode != 0:
        raise SystemExit(f"{' '.join(command)} failed:\n{result.stderr.decode(errors='replace')}")
    return elapsed


def bench_gadget(ig_root: Path, gadget: str, repeat: int, work: Path) -> tuple[float, float, float]:
    gadget_dir = ig_root / "gadgets" / gadget
    out = work / "bare"
    out.mkdir(exist_ok=True)
    plan = plan_ebpf(BuildRequest(gadget_dir), find_sources(BuildRequest(gadget_dir)), out)
    steps = [step for job in plan.jobs.values() for step in job]
    compiles = [step for step in steps if step.what.startswith("clang")]
    build_file = work / "ebpf-only.yaml"
    build_file.write_text("ebpfsource: program.bpf.c\n")
    gadgetstore = [str(Path(sys.executable).parent / "gadgetstore")]
    bare, bare_strip, ours = [], [], []
    for round_number in range(repeat):
        bare.append(sum(timed(step.command, step.cwd) for step in compiles))
        bare_strip.append(sum(timed(step.command, step.cwd) for step in steps))
        store = work / f"store-{round_number}"
        command = [*gadgetstore, "--store", str(store), "image", "build", "-f", str(build_file), "-t", "bench",
                   str(gadget_dir)]
        ours.append(timed(command, ig_root / "gadgets", {**os.environ, "SOURCE_DATE_EPOCH": "0"}))
    return statistics.median(bare), statistics.median(bare_strip), statistics.median(ours)


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("ig_checkout", type=Path)
    parser.add_argument("--repeat", type=int, default=3)
    parser.add_argument("--gadgets", default="", help="comma-separated; default: every gadget with eBPF code")
    args = parser.parse_args()
    ig_root = args.ig_checkout.resolve()
    gadgets = args.gadgets.split(",") if args.gadgets else [
        g for g in makefile_gadgets(ig_root) if (ig_root / "gadgets" / g / "program.bpf.c").is_file()
    ]
    print(f"load average before: {os.getloadavg()[0]:.2f}; {os.cpu_count()} CPUs; median of {args.repeat}")
    print("| gadget | bare clang, 2 arches serial (s) | + llvm-strip (s) | gadgetstore image build (s) | ratio |")
    print("|---|---|---|---|---|")
    totals = [0.0, 0.0, 0.0]
    ratios = []
    with tempfile.TemporaryDirectory(prefix="build-bench-") as tmp:
        for gadget in gadgets:
            work = Path(tmp) / gadget.replace("/", "_")
            work.mkdir()
            bare, bare_strip, ours = bench_gadget(ig_root, gadget, args.repeat, work)
            totals = [totals[0] + bare, totals[1] + bare_strip, totals[2] + ours]
            ratios.append(ours / bare)
            print(f"| {gadget} | {bare:.2f} | {bare_strip:.2f} | {ours:.2f} | {ours / bare:.2f} |", flush=True)
    print(f"| **all {len(gadgets)}** | {totals[0]:.1f} | {totals[1]:.1f} | {totals[2]:.1f} | "
          f"**{totals[2] / totals[0]:.2f}** |")
    print(f"per-gadget ratio: median {statistics.median(ratios):.2f}, worst {max(ratios):.2f}, "
          f"best {min(ratios):.2f}; load average after: {os.getloadavg()[0]:.2f}")


if __name__ == "__main__":
    main()
