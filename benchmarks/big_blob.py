"""One large blob from a local docker-registry: gadgetstore vs a single curl stream, skopeo, oras-py;
gadgetstore's peak memory; and resuming after ``kill -9`` at about half of the blob.

    .venv/bin/python benchmarks/big_blob.py                # 1 GiB blob, 3 interleaved rounds
    .venv/bin/python benchmarks/big_blob.py --size 256     # MiB; smaller for a quick look

The image is an index → one amd64 manifest → a small config and one incompressible layer of
``--size`` MiB, pushed by gadgetstore (chunked PATCH uploads) to a docker-registry on 127.0.0.1
with its access log on. Each round runs every tool once into an empty destination:

  gadgetstore  ``pull_images`` in a child process (even Range chunks of ``chunk_size``, ``chunk_parallelism``
               at a time, hashed in order, verified, fsync'd, renamed): the time is the pull inside the
               child (no interpreter start), the memory is the child's peak RSS (``ru_maxrss``) and,
               for reference, its RSS before the pull
  curl         one ``curl -o`` stream of the blob URL: the wire floor (no verification, no fsync)
  curl-null    the same stream into /dev/null: the wire alone, no file at all (a stricter reference)
  curl-sync    the same stream into a file, then ``sync`` of that file: curl at gadgetstore's durability
  skopeo       ``skopeo copy --all --preserve-digests`` into an OCI layout
  oras-py      oras-py: the index, then the manifest by digest (oras-py pulls no index by itself)
A hash floor (``hashlib.sha256`` over the blob from the page cache, 1 MiB reads) is printed too, and
the CPU seconds of each tool and of the registry process while that tool ran (two cores are shared).

Resume: a gadgetstore pull runs in a child; when its ingest file holds half the blob it gets
SIGKILL; the bytes on disk are counted (data extents of the sparse file); the re-pull's blob bytes
are summed from the registry's access log. Target: re-fetched ≤ 1.05 × what remained.
Targets (issue 19): gadgetstore ≤ 1.0 × one curl stream; peak RSS ≤ 64 MiB + chunk size × parallelism.
Everything started here is stopped, and every temporary file removed, at the end.
"""

from __future__ import annotations

import argparse
import contextlib
import functools
import hashlib
import json
import os
import shutil
import signal
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING, Any

import trio

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(Path(__file__).resolve().parent))

# Only what the pulling child needs is imported here, so its memory is the pull's, not pytest's
# (tests.support.registry) or the benchmark helpers': those are imported in main().
from gadgetstore.engine import mediatypes as mt  # noqa: E402
from gadgetstore.engine.descriptor import Descriptor  # noqa: E402
from gadgetstore.engine.digest import Digest  # noqa: E402
from gadgetstore.engine.ingest.resume import data_extents  # noqa: E402
from gadgetstore.engine.reference import normalize  # noqa: E402
from gadgetstore.engine.registry.client import TransferOptions  # noqa: E402
from gadgetstore.engine.registry.pull import pull_images  # noqa: E402
from gadgetstore.engine.registry.push import push_image  # noqa: E402
from gadgetstore.engine.store import Store  # noqa: E402

if TYPE_CHECKING:
    from bulk_pull import AccessLog

MIB = 1024 * 1024


def options_for(host: str, chunk_size: int, parallelism: int) -> TransferOptions:
    return TransferOptions(insecure_registries=frozenset({host}), chunk_size=chunk_size,
                           chunk_parallelism=parallelism)


def _rss_kib() -> int:
    with open("/proc/self/status") as f:
        for line in f:
            if line.startswith("VmRSS:"):
                return int(line.split()[1])
    return 0


def _cpu_seconds(usage: Any) -> float:
    return float(usage.ru_utime + usage.ru_stime)


def process_cpu(pid: int) -> float:
    """User + system CPU seconds of a running process (``/proc/PID/stat``)."""
    with open(f"/proc/{pid}/stat") as f:
        fields = f.read().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def child_pull(dest: str, host: str, image: str, chunk_size: int, parallelism: int) -> None:
    """Run in the child: one pull, then a JSON line with its time, CPU and memory."""
    import resource

    store = Store.open(Path(dest))
    before = _rss_kib()
    cpu_before = _cpu_seconds(resource.getrusage(resource.RUSAGE_SELF))
    start = time.perf_counter()
    results = trio.run(pull_images, store, [image], options_for(host, chunk_size, parallelism))
    seconds = time.perf_counter() - start
    usage = resource.getrusage(resource.RUSAGE_SELF)
    if results[0].error is not None:
        raise SystemExit(f"gadgetstore pull failed: {results[0].error}")
    print(json.dumps({"seconds": seconds, "cpu": _cpu_seconds(usage), "pull_cpu": _cpu_seconds(usage) - cpu_before,
                      "maxrss_kib": usage.ru_maxrss,
                      "rss_before_kib": before, "bytes": results[0].bytes_fetched}), flush=True)


def child_command(dest: Path, host: str, image: str, args: argparse.Namespace) -> list[str]:
    return [sys.executable, str(Path(__file__).resolve()), "--child", str(dest), host, image,
            "--chunk-size", str(args.chunk_size), "--parallelism", str(args.parallelism)]


def build_image(store: Store, host: str, size: int) -> tuple[str, Digest]:
    """index → amd64 manifest → config + one ``size``-byte layer of random bytes; returns (image, layer digest)."""
    with store.blobs.writer(None, None) as writer:
        left = size
        while left:
            n = min(4 * MIB, left)
            writer.write(os.urandom(n))
            left -= n
        layer = writer.commit()
    config = b"name: big\ndescription: one large layer\n"
    cdesc = {"mediaType": mt.GADGET_CONFIG, "digest": str(store.ingest.put(config)), "size": len(config)}
    ldesc = {"mediaType": mt.GADGET_EBPF, "digest": str(layer), "size": size}
    manifest = json.dumps({"schemaVersion": 2, "artifactType": mt.GADGET_ARTIFACT, "config": cdesc,
                           "layers": [ldesc]}, separators=(",", ":")).encode()
    entry = {"mediaType": mt.OCI_MANIFEST, "digest": str(store.ingest.put(manifest)), "size": len(manifest),
             "platform": {"architecture": "amd64", "os": "linux"}}
    index = json.dumps({"schemaVersion": 2, "mediaType": mt.OCI_INDEX, "manifests": [entry]},
                       separators=(",", ":")).encode()
    image = f"{host}/bench/big:v1"
    with store.transaction() as txn:
        txn.tag(str(normalize(image)), Descriptor(mt.OCI_INDEX, store.ingest.put(index), len(index)))
    return image, layer


def hash_floor(path: Path) -> float:
    start = time.perf_counter()
    hasher = hashlib.sha256()
    with open(path, "rb") as f:
        while chunk := f.read(MIB):
            hasher.update(chunk)
    return time.perf_counter() - start


def run_oras(host: str, image: str, dest: Path) -> None:
    import oras.provider

    reg = oras.provider.Registry(hostname=host, insecure=True)
    ref = normalize(image)
    index = reg.get_manifest(f"{host}/{ref.path}:{ref.tag}", allowed_media_type=[mt.OCI_INDEX])
    for entry in index["manifests"]:
        reg.pull(target=f"{host}/{ref.path}@{entry['digest']}", outdir=str(dest / entry["digest"][7:]),
                 allowed_media_type=[mt.OCI_MANIFEST])


def data_bytes(path: Path) -> int:
    """Bytes in the data extents of a (sparse) file."""
    fd = os.open(path, os.O_RDONLY)
    try:
        return sum(end - start for start, end in data_extents(fd, os.fstat(fd).st_size, trim_partial_blocks=False))
    finally:
        os.close(fd)


def ingest_file(dest: Path, layer: Digest) -> Path | None:
    prefix = f"ingest-{layer.algorithm}-{layer.hex}-"
    with contextlib.suppress(FileNotFoundError):
        for entry in os.scandir(dest / "ingest"):
            if entry.name.startswith(prefix) and not entry.name.endswith(".ranged"):
                return Path(entry.path)
    return None


def wait_quiet(path: Path, quiet: float = 0.5, timeout: float = 10.0) -> None:
    """Until ``path`` stops growing (the registry logs a broken response when it notices)."""
    deadline = time.monotonic() + timeout
    last, since = -1, time.monotonic()
    while time.monotonic() < deadline:
        size = path.stat().st_size
        if size != last:
            last, since = size, time.monotonic()
        elif time.monotonic() - since >= quiet:
            return
        time.sleep(0.05)


def resume_experiment(work: Path, host: str, image: str, layer: Digest, size: int, log: AccessLog,
                      args: argparse.Namespace) -> dict[str, float]:
    dest = work / "resume-store"
    Store.open(dest)
    proc = subprocess.Popen(child_command(dest, host, image, args), stdout=subprocess.DEVNULL)
    try:
        deadline = time.monotonic() + 600
        arrived = 0
        while time.monotonic() < deadline and proc.poll() is None:
            path = ingest_file(dest, layer)
            if path is not None:
                with contextlib.suppress(FileNotFoundError):
                    arrived = os.stat(path).st_blocks * 512
                if arrived >= size * args.kill_at:
                    break
            time.sleep(0.002)
        if proc.poll() is not None:
            raise SystemExit("resume experiment: the pull ended before it could be killed; try a larger --size")
        os.kill(proc.pid, signal.SIGKILL)
    finally:
        if proc.poll() is None:
            proc.kill()
        proc.wait()
    path = ingest_file(dest, layer)
    present = data_bytes(path) if path is not None else 0
    remaining = size - present
    wait_quiet(log.path)
    log.mark()
    out = subprocess.run(child_command(dest, host, image, args), check=True, capture_output=True, text=True)
    stats = json.loads(out.stdout.strip().splitlines()[-1])
    served = log.since_mark()
    if ingest_file(dest, layer) is not None:
        print("  note: an ingest file of the blob is still there after the re-pull")
    ok = Store.open(dest).blobs.rehash(layer) == layer
    shutil.rmtree(dest)
    return {"present": present, "remaining": remaining, "refetched": served.blob_bytes,
            "requests": served.blob_gets, "seconds": stats["seconds"], "verified": float(ok)}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--size", type=int, default=1024, help="blob size in MiB (default 1024)")
    parser.add_argument("-r", "--runs", type=int, default=3)
    parser.add_argument("--chunk-size", type=int, default=TransferOptions().chunk_size)
    parser.add_argument("--parallelism", type=int, default=TransferOptions().chunk_parallelism)
    parser.add_argument("--kill-at", type=float, default=0.5, help="fraction of the blob on disk at the kill")
    parser.add_argument("--skip", nargs="*", default=[],
                        choices=["curl", "curl-null", "curl-sync", "skopeo", "oras", "resume"])
    parser.add_argument("--child", nargs=3, metavar=("DEST", "HOST", "IMAGE"), help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        dest, host, image = args.child
        child_pull(dest, host, image, args.chunk_size, args.parallelism)
        return
    from bulk_pull import ACCESS_LOG_CONFIG, AccessLog, measure

    from tests.support.registry import start_registry

    size = args.size * MIB
    work = Path(tempfile.mkdtemp(prefix="big-blob-"))
    try:
        with start_registry(work / "registry", extra_config=ACCESS_LOG_CONFIG) as registry:
            host = registry.host
            log = AccessLog(work / "registry" / "registry.log")
            src = Store.open(work / "src")
            image, layer = build_image(src, host, size)
            start = time.perf_counter()
            trio.run(push_image, src, image, options_for(host, args.chunk_size, args.parallelism))
            print(f"blob {layer}: {args.size} MiB, pushed in {time.perf_counter() - start:.1f} s", flush=True)
            hash_s = statistics.median(hash_floor(src.blobs.path(layer)) for _ in range(3))
            shutil.rmtree(src.root)  # the registry has it now: one copy of the blob on disk less
            blob_url = f"http://{host}/v2/{normalize(image).path}/blobs/{layer}"

            gs_stats: list[dict[str, float]] = []

            def gadgetstore(dest: Path) -> tuple[float, float]:
                out = subprocess.run(child_command(dest, host, image, args), check=True, capture_output=True,
                                     text=True)
                gs_stats.append(json.loads(out.stdout.strip().splitlines()[-1]))
                return float(gs_stats[-1]["seconds"]), float(gs_stats[-1]["pull_cpu"])

            def timed(fn: Callable[[Path], Any]) -> Callable[[Path], tuple[float, float]]:
                return lambda d: measure(functools.partial(fn, d))

            tools: dict[str, Callable[[Path], tuple[float, float]]] = {
                "gadgetstore": lambda d: gadgetstore(d / "store")}
            if "curl" not in args.skip:
                tools["curl"] = timed(lambda d: subprocess.run(["curl", "-sf", "-o", str(d / "blob"), blob_url],
                                                               check=True))
            if "curl-null" not in args.skip:
                tools["curl-null"] = timed(lambda d: subprocess.run(["curl", "-sf", "-o", "/dev/null", blob_url],
                                                                    check=True))
            if "curl-sync" not in args.skip:
                tools["curl-sync"] = timed(lambda d: subprocess.run(
                    ["sh", "-c", 'curl -sf -o "$1" "$2" && sync "$1"', "curl-sync", str(d / "blob"), blob_url],
                    check=True))
            if "skopeo" not in args.skip:
                tools["skopeo"] = timed(lambda d: subprocess.run(
                    ["skopeo", "copy", "-q", "--all", "--preserve-digests", "--src-tls-verify=false",
                     f"docker://{image}", f"oci:{d / 'layout'}:big"], check=True))
            if "oras" not in args.skip:
                tools["oras-py"] = timed(lambda d: run_oras(host, image, d))

            times: dict[str, list[float]] = {}
            cpus: dict[str, list[tuple[float, float]]] = {}  # (client CPU s, registry CPU s) per round
            requests: dict[str, int] = {}
            for run in range(args.runs):
                for name, fn in tools.items():
                    dest = work / f"{name}-{run}"
                    dest.mkdir()
                    log.mark()
                    registry_before = process_cpu(registry.process.pid)
                    seconds, client_cpu = fn(dest)
                    cpus.setdefault(name, []).append((client_cpu, process_cpu(registry.process.pid) - registry_before))
                    requests[name] = log.since_mark(settle=0.2).blob_gets
                    times.setdefault(name, []).append(seconds)
                    print(f"  round {run + 1}: {name:<12} {seconds:7.3f} s", flush=True)
                    shutil.rmtree(dest)

            resume: dict[str, float] | None = None
            if "resume" not in args.skip:
                resume = resume_experiment(work, host, image, layer, size, log, args)

        med = {name: statistics.median(values) for name, values in times.items()}
        ours = med["gadgetstore"]
        print(f"\n{'tool':<14}{'median s':>10}{'MiB/s':>9}{'blob GETs':>11}   per round")
        for name, values in times.items():
            print(f"{name:<14}{med[name]:>10.3f}{args.size / med[name]:>9.0f}{requests[name]:>11}   "
                  + " ".join(f"{v:.3f}" for v in values))
        print(f"{'sha256 floor':<14}{hash_s:>10.3f}{args.size / hash_s:>9.0f}")
        print(f"\n{'CPU s, median':<14}{'client':>10}{'registry':>10}   client (gadgetstore: the pull only, no "
              "interpreter start) / registry per round")
        for name, pairs in cpus.items():
            print(f"{name:<14}{statistics.median(c for c, _ in pairs):>10.2f}"
                  f"{statistics.median(r for _, r in pairs):>10.2f}   "
                  + " ".join(f"{c:.2f}/{r:.2f}" for c, r in pairs))
        print(f"\n{'ratio':<28}{'median':>8}  per round")
        if "curl" in med:
            per = " ".join(f"{a / b:.2f}" for a, b in zip(times["gadgetstore"], times["curl"], strict=False))
            print(f"{'gadgetstore / curl':<28}{ours / med['curl']:>8.2f}  {per}   target <= 1.0")
            for reference in ("curl-null", "curl-sync"):
                if reference in med:
                    per = " ".join(f"{a / b:.2f}" for a, b in zip(times["gadgetstore"], times[reference], strict=False))
                    print(f"{'gadgetstore / ' + reference:<28}{ours / med[reference]:>8.2f}  {per}")
            floor = max(med["curl"], hash_s)
            print(f"{'gadgetstore / max(curl,sha)':<28}{ours / floor:>8.2f}")
            for peer, issue in (("skopeo", 4.4), ("oras-py", 4.8)):
                if peer in med:
                    print(f"{peer + ' / curl':<28}{med[peer] / med['curl']:>8.2f}  (issue, 256 MiB: {issue})")
        for peer in ("skopeo", "oras-py"):
            if peer in med:
                print(f"{peer + ' / gadgetstore':<28}{med[peer] / ours:>8.2f}")
        peak = max(s["maxrss_kib"] for s in gs_stats) / 1024
        base = statistics.median(s["rss_before_kib"] for s in gs_stats) / 1024
        bound = 64 + args.chunk_size / MIB * args.parallelism
        cpu = statistics.median(s["cpu"] for s in gs_stats)
        print(f"\ngadgetstore peak RSS {peak:.1f} MiB (RSS before the pull {base:.1f} MiB); bound 64 + "
              f"{args.chunk_size // MIB} MiB x {args.parallelism} = {bound:.0f} MiB: "
              f"{'OK' if peak <= bound else 'MISSED'}; CPU {cpu:.2f} s per pull")
        if resume is not None:
            extra = resume["refetched"] / resume["remaining"] - 1 if resume["remaining"] else float("inf")
            print(f"resume: killed with {resume['present'] / MIB:.1f} MiB of {args.size} MiB on disk; re-pull "
                  f"fetched {resume['refetched'] / MIB:.1f} MiB in {int(resume['requests'])} blob GETs for "
                  f"{resume['remaining'] / MIB:.1f} MiB remaining: {extra * 100:+.2f}% "
                  f"({'OK' if extra <= 0.05 else 'MISSED'}, target <= +5%); re-pull {resume['seconds']:.2f} s; "
                  f"blob verified: {bool(resume['verified'])}")
        print(f"\n({args.runs} interleaved rounds, median; chunk {args.chunk_size // MIB} MiB x {args.parallelism}; "
              f"load average {os.getloadavg()[0]:.2f} at the end)")
    finally:
        shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    main()
