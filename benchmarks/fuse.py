"""FUSE view benchmarks (issue 5): the mount against the same tree on the native file system.

    .venv/bin/python benchmarks/fuse.py                 # 1,000 images, a few minutes
    .venv/bin/python benchmarks/fuse.py --images 200    # quicker

The native twin is the mount's own tree copied into a directory next to the store (file sizes
kept, contents sparse: listing and stat costs do not depend on content), and the read benchmark
compares a 2 MB blob through the mount with the very same blob file in the store.
"Cold" drops the kernel's page, dentry and inode caches (``/proc/sys/vm/drop_caches``, needs
root; machine-wide) and, for FUSE, starts a fresh mount so the daemon knows nothing either.
Targets (from the issue): warm ls -lR and stat ≤ 1.5× native, cold ls -lR ≤ 10× native,
sequential read ≥ 25 % of native cold and ≥ 90 % warm. Prints a Markdown table.
"""

from __future__ import annotations

import argparse
import os
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from gadgetstore.engine import mediatypes as mt  # noqa: E402
from gadgetstore.engine.descriptor import Descriptor  # noqa: E402
from gadgetstore.engine.store import Store  # noqa: E402
from tests.fusefs.helpers import make_gadget, tag, use_real_elves  # noqa: E402
from tests.fusefs.mounting import Mount  # noqa: E402
from tests.support.images import build_demo_archive  # noqa: E402

READ_SIZE = 2 * 1024 * 1024
Row = tuple[str, float, float, str]


def drop_caches() -> bool:
    try:
        os.sync()
        with open("/proc/sys/vm/drop_caches", "w") as f:
            f.write("3\n")
        return True
    except OSError:
        return False


def build_store(root: Path, images: int) -> Descriptor:
    """``images`` distinct two-arch gadgets, tagged under localhost:5000, plus one 2 MB blob. Their eBPF
    layers are the real ELFs of ``examples/trace_demo`` (built with clang), as in the tests."""
    use_real_elves(build_demo_archive(root.parent))
    store = Store.open(root)
    refs = {f"localhost:5000/bench/g{i:04d}:v1": make_gadget(store, f"g{i}") for i in range(images)}
    tag(store, refs)
    payload = os.urandom(READ_SIZE)
    digest = store.ingest.put(payload)
    return Descriptor(mt.GADGET_BTFGEN, digest, len(payload))


def mirror(src: Path, dst: Path) -> list[Path]:
    """Copy the tree's shape to ``dst`` (sparse files of the same sizes); returns every path below."""
    paths: list[Path] = []
    for dirpath, dirs, files in os.walk(src):
        rel = Path(dirpath).relative_to(src)
        (dst / rel).mkdir(parents=True, exist_ok=True)
        for name in dirs + files:
            paths.append(rel / name)
        for name in files:
            with open(dst / rel / name, "wb") as f:
                f.truncate(os.stat(Path(dirpath, name)).st_size)
    return paths


def timed(action: Callable[[], object]) -> float:
    start = time.perf_counter()
    action()
    return time.perf_counter() - start


def ls_lr(top: Path) -> None:
    subprocess.run(["ls", "-lR", str(top)], stdout=subprocess.DEVNULL, check=True)


def stat_all(top: Path, paths: list[Path]) -> None:
    for rel in paths:
        os.lstat(top / rel)


def read_all(path: Path) -> None:
    with open(path, "rb", buffering=0) as f:
        while f.read(1024 * 1024):
            pass


def open_close(path: Path) -> None:
    os.close(os.open(path, os.O_RDONLY))


def read_open_file(fd: int, buf: bytearray) -> None:
    """The 2 MB read alone, on a file opened once: page-cache speed without the open round trip."""
    offset = 0
    while n := os.preadv(fd, [buf], offset):
        offset += n


def repeated(action: Callable[[], object], times: int) -> Callable[[], None]:
    def run() -> None:
        for _ in range(times):
            action()
    return run


def paired(runs: int, fuse: Callable[[], object], native: Callable[[], object]) -> tuple[float, float]:
    """Best of ``runs`` for each, alternating, so load from other processes hits both alike."""
    fuse_times, native_times = [], []
    for _ in range(runs):
        fuse_times.append(timed(fuse))
        native_times.append(timed(native))
    return min(fuse_times), min(native_times)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--images", type=int, default=1000)
    parser.add_argument("--runs", type=int, default=5)
    args = parser.parse_args()
    work = Path(tempfile.mkdtemp(prefix="gadgetstore-fuse-bench-"))
    store_root, native, mnt = work / "store", work / "native", work / "mnt"
    # The mounts (child processes) cache their extra-info analyses here, removed with the rest: not in
    # the user's cache home, and each cold run below starts without them.
    cache_home = work / "cache"
    os.environ["XDG_CACHE_HOME"] = str(cache_home)
    t0 = time.perf_counter()
    blob = build_store(store_root, args.images)
    print(f"built {args.images} images in {time.perf_counter() - t0:.1f}s under {work}", file=sys.stderr)
    native_blob = Store.open(store_root).blobs.path(blob.digest)
    fuse_blob = mnt / ".store/blobs/sha256" / blob.digest.hex
    tree = Path("localhost:5000")
    rows: list[Row] = []
    can_drop = drop_caches()

    # Cold: fresh mount, empty kernel caches on both sides.
    with_mount = Mount(store_root, mnt, work / "mount.log")
    try:
        paths = mirror(mnt / tree, native / tree)
    finally:
        with_mount.stop()
    print(f"{len(paths)} paths per tree", file=sys.stderr)
    cold_native = cold_fuse = 0.0
    if can_drop:
        drop_caches()
        cold_native = timed(lambda: ls_lr(native / tree))
        drop_caches()
        subprocess.run(["rm", "-rf", str(cache_home)], check=False)
        with_mount = Mount(store_root, mnt, work / "mount.log")
        try:
            cold_fuse = timed(lambda: ls_lr(mnt / tree))
        finally:
            with_mount.stop()
        rows.append(("ls -lR, cold", cold_fuse, cold_native, "≤ 10×"))
        drop_caches()
        with_mount = Mount(store_root, mnt, work / "mount.log")
        try:
            fuse_cold_read = timed(lambda: read_all(fuse_blob))
        finally:
            with_mount.stop()
        drop_caches()
        with_mount = Mount(store_root, mnt, work / "mount.log")
        try:
            cold_lookups = stat_each(mnt / tree, image_digest_files(paths))
        finally:
            with_mount.stop()
        drop_caches()
        native_cold_read = timed(lambda: read_all(native_blob))
        rows.append(("read 2 MB, cold (incl. lookups, open, verify)", fuse_cold_read, native_cold_read,
                     "≥ 25 % speed"))

    mount = Mount(store_root, mnt, work / "mount.log")
    try:
        ls_lr(mnt / tree)
        ls_lr(native / tree)
        rows.append(("ls -lR, warm", *paired(args.runs, lambda: ls_lr(mnt / tree), lambda: ls_lr(native / tree)),
                     "≤ 1.5×"))
        rows.append((f"lstat × {len(paths)}, warm",
                     *paired(args.runs, lambda: stat_all(mnt / tree, paths), lambda: stat_all(native / tree, paths)),
                     "≤ 1.5×"))
        read_all(fuse_blob)
        read_all(native_blob)
        rows.append(("read 2 MB, warm", *paired(args.runs * 4, lambda: read_all(fuse_blob),
                                                 lambda: read_all(native_blob)), "≥ 90 % speed"))
        # Where the warm misses go: one daemon round trip (statfs does nothing in the daemon), one
        # open+close (OPEN and RELEASE), and the read itself on an already-open file.
        rows.append(("statfs × 1,000 (one daemon round trip each), warm",
                     *paired(args.runs, repeated(lambda: os.statvfs(mnt), 1000),
                             repeated(lambda: os.statvfs(native), 1000)), "—"))
        rows.append(("open + close × 1,000, warm",
                     *paired(args.runs, repeated(lambda: open_close(fuse_blob), 1000),
                             repeated(lambda: open_close(native_blob), 1000)), "—"))
        buf = bytearray(1024 * 1024)
        fuse_fd, native_fd = os.open(fuse_blob, os.O_RDONLY), os.open(native_blob, os.O_RDONLY)
        try:
            rows.append(("read 2 MB on an open file × 100, warm",
                         *paired(args.runs, repeated(lambda: read_open_file(fuse_fd, buf), 100),
                                 repeated(lambda: read_open_file(native_fd, buf), 100)), "—"))
        finally:
            os.close(fuse_fd)
            os.close(native_fd)
        lookup_latencies = measure_lookups(mnt / tree, paths, can_drop)
        if can_drop:
            lookup_latencies["fresh mount (loads the image)"] = cold_lookups
    finally:
        mount.stop()

    print(f"| {args.images} images | FUSE (ms) | native (ms) | FUSE time / native | FUSE speed | target |")
    print("|---|---|---|---|---|---|")
    for name, fuse_s, native_s, target in rows:
        ratio = fuse_s / native_s if native_s else float("nan")
        speed = 100 / ratio
        print(f"| {name} | {fuse_s * 1000:.2f} | {native_s * 1000:.2f} | {ratio:.2f}× | {speed:.0f} % | {target} |")
    for name, samples in lookup_latencies.items():
        samples.sort()
        p50 = statistics.median(samples)
        p99 = samples[min(len(samples) - 1, int(len(samples) * 0.99))]
        print(f"| lookup latency, {name} (n={len(samples)}) | p50 {p50 * 1e6:.0f} µs | p99 {p99 * 1e6:.0f} µs | | | |")
    if not can_drop:
        print("\n(cold rows skipped: cannot write /proc/sys/vm/drop_caches)")
    subprocess.run(["rm", "-rf", str(work)], check=False)


def image_digest_files(paths: list[Path]) -> list[Path]:
    return [p for p in paths if p.name == "digest" and "arch" not in p.parts]


def stat_each(top: Path, files: list[Path]) -> list[float]:
    """Latency of one lstat per file, parents looked up first so each sample is one LOOKUP."""
    for rel in files:
        os.lstat(top / rel.parent)
    samples = []
    for rel in files:
        start = time.perf_counter()
        os.lstat(top / rel)
        samples.append(time.perf_counter() - start)
    return samples


def measure_lookups(top: Path, paths: list[Path], can_drop: bool) -> dict[str, list[float]]:
    """Per-name FUSE LOOKUP cost with the daemon's caches warm and the kernel's dropped."""
    out: dict[str, list[float]] = {}
    if can_drop:
        drop_caches()  # the kernel forgets the entries; the daemon keeps what it loaded
        out["daemon warm, kernel cold"] = stat_each(top, image_digest_files(paths))
    return out


if __name__ == "__main__":
    main()
