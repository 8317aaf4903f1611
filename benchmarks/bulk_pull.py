"""Bulk pull of N gadget-sized images from a local docker-registry: gadgetstore vs its peers.

    .venv/bin/python benchmarks/bulk_pull.py            # N=20, 3 runs each, a few minutes at most
    .venv/bin/python benchmarks/bulk_pull.py -n 200     # the G200 corpus of performance-anchors.md §8
    .venv/bin/python benchmarks/bulk_pull.py -n 200 --repos 0   # every image in a repository of its own

Peers (same registry, same images, empty destination each run, median of the runs):
  gadgetstore  ``gadgetstore image pull --from-file LIST`` in a child process, as a user runs it
               (interpreter start and imports included in its time and CPU)
  curl         ``curl --parallel --parallel-max 8`` over every manifest and blob URL: the wire+disk
               floor (no verification, no fsync, no store)
  skopeo-seq   ``skopeo copy --all --preserve-digests`` per image, sequentially, into one OCI layout
  skopeo-4par  the same, 4 processes at a time, each into its own OCI layout (parallel skopeo
               processes sharing one layout lose tags: its index.json is written unlocked)
  oras-py      the oras-py client, image after image (index, then each per-arch manifest's layers)
Every tool runs once per round and the rounds are interleaved, so load from other work on the
machine falls on all of them alike. Each tool's CPU is user + system time of its processes (from
their rusage), the registry's is read from /proc around the run; on two cores the two compete, so
both are printed beside the times. The registry's access log is on: each run's requests and
bytes served are counted from it, and the warm re-pull (same images into the filled store) must
make no blob request at all. The load average at the start and the end is printed: a run on a
busy machine says little about ratios to the curl floor.

Ratios: gadgetstore / curl floor (issue 19: <= 1.25, with client CPU <= 2x curl's and requests
<= 1.05x curl's), each peer / gadgetstore (issue 3: oras-py >= 2.2, skopeo-4par >= 2.7), and each
tool / curl floor (issue 3's peer figures are oras-py 3.3, skopeo-4par 4.0, skopeo-seq 5.2 on 200
images). A warm re-pull must make one request per image: the tag.
"""

from __future__ import annotations

import argparse
import concurrent.futures
import functools
import hashlib
import json
import os
import random
import re
import resource
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import trio

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from gadgetstore.engine import mediatypes as mt  # noqa: E402
from gadgetstore.engine.descriptor import Descriptor  # noqa: E402
from gadgetstore.engine.reference import normalize  # noqa: E402
from gadgetstore.engine.registry.client import TransferOptions  # noqa: E402
from gadgetstore.engine.registry.push import push_image  # noqa: E402
from gadgetstore.engine.store import Store  # noqa: E402
from tests.support.images import pseudo_random  # noqa: E402
from tests.support.registry import start_registry  # noqa: E402


def layer_size(rng: random.Random) -> int:
    """100 KB – 2 MB, log-uniform-ish with a median near 400 KB."""
    return int(min(2_000_000, max(100_000, rng.lognormvariate(12.9, 0.7))))


def build_corpus(store: Store, host: str, n: int, seed: int, repos: int = 40) -> tuple[list[str], int]:
    """N images (index → amd64/arm64 manifests → config + ELF layer) in ``repos`` repositories (0: one
    each, as ig's gadgets are published); 20% reuse the previous image's layers."""
    rng = random.Random(seed)
    images: list[str] = []
    total = 0
    previous: dict[str, bytes] = {}
    for i in range(n):
        image = f"{host}/bench/gadget{i % repos if repos else i}:v{i}"
        config = (f"name: gadget{i}\ndescription: benchmark gadget {i}\n" + "x" * 1900).encode()
        cdesc = {"mediaType": mt.GADGET_CONFIG, "digest": str(store.ingest.put(config)), "size": len(config)}
        entries = []
        layers: dict[str, bytes] = {}
        for arch in ("amd64", "arm64"):
            reuse = previous and rng.random() < 0.2
            data = previous[arch] if reuse else pseudo_random(layer_size(rng), f"{seed}/{i}/{arch}")
            layers[arch] = data
            total += len(data) if not reuse else 0
            ldesc = {"mediaType": mt.GADGET_EBPF, "digest": str(store.ingest.put(data)), "size": len(data)}
            manifest = json.dumps({"schemaVersion": 2, "artifactType": mt.GADGET_ARTIFACT, "config": cdesc,
                                   "layers": [ldesc]}, separators=(",", ":")).encode()
            entries.append({"mediaType": mt.OCI_MANIFEST, "digest": str(store.ingest.put(manifest)),
                            "size": len(manifest), "platform": {"architecture": arch, "os": "linux"}})
        previous = layers
        index = json.dumps({"schemaVersion": 2, "mediaType": mt.OCI_INDEX, "manifests": entries},
                           separators=(",", ":")).encode()
        root = Descriptor(mt.OCI_INDEX, store.ingest.put(index), len(index))
        with store.transaction() as txn:
            txn.tag(str(normalize(image)), root)
        images.append(image)
    return images, total


ACCESS_LOG_CONFIG = {"log": {"level": "error", "accesslog": {"disabled": False}}}
_LOG_LINE = re.compile(r'"(?P<method>[A-Z]+) (?P<path>\S+) HTTP/[\d.]+" (?P<status>\d{3}) (?P<size>\d+|-)')


@dataclass
class Requests:
    """What the registry served between two marks of its access log."""

    total: int = 0
    blob_gets: int = 0
    blob_heads: int = 0
    manifests: int = 0
    blob_bytes: int = 0
    bytes: int = 0

    @property
    def blob_requests(self) -> int:
        return self.blob_gets + self.blob_heads


class AccessLog:
    """docker-registry's combined-format access log (its stdout, see ``start_registry``), read by offsets."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self.offset = 0

    def mark(self) -> None:
        self.offset = self.path.stat().st_size

    def since_mark(self, settle: float = 0.3) -> Requests:
        """Requests logged since :meth:`mark` (after ``settle`` s: a line is written after its response)."""
        time.sleep(settle)
        with open(self.path, "rb") as f:
            f.seek(self.offset)
            text = f.read().decode("utf-8", "replace")
        out = Requests()
        for line in text.splitlines():
            match = _LOG_LINE.search(line)
            if match is None or not match["path"].startswith("/v2/"):
                continue
            size = int(match["size"]) if match["size"] != "-" else 0
            out.total += 1
            out.bytes += size
            if "/blobs/" in match["path"]:
                if match["method"] == "HEAD":
                    out.blob_heads += 1
                elif match["method"] == "GET":
                    out.blob_gets += 1
                    out.blob_bytes += size
            elif "/manifests/" in match["path"]:
                out.manifests += 1
        return out


def measure(fn: Callable[[], None]) -> tuple[float, float]:
    """(wall seconds, CPU seconds of this process and its children)."""
    before_self = resource.getrusage(resource.RUSAGE_SELF)
    before_children = resource.getrusage(resource.RUSAGE_CHILDREN)
    start = time.perf_counter()
    fn()
    wall = time.perf_counter() - start
    after_self = resource.getrusage(resource.RUSAGE_SELF)
    after_children = resource.getrusage(resource.RUSAGE_CHILDREN)
    cpu = sum(getattr(after, f) - getattr(before, f) for after, before in
              ((after_self, before_self), (after_children, before_children)) for f in ("ru_utime", "ru_stime"))
    return wall, cpu


def curl_config(store: Store, images: list[str], host: str, outdir: Path) -> Path:
    """One curl config listing every URL a full pull needs (tags, manifests, blobs), each fetched once."""
    lines: list[str] = []
    seen: set[str] = set()
    accept = f'header = "Accept: {mt.OCI_INDEX}, {mt.OCI_MANIFEST}"'
    for k, image in enumerate(images):
        ref = normalize(image)
        root = store.resolve(str(ref))
        lines += [f'url = "http://{host}/v2/{ref.path}/manifests/{ref.tag}"', f'output = "{outdir}/tag{k}"', accept]
        for digest, desc in store.walk([root]).items():
            if str(digest) in seen or digest == root.digest:
                continue
            seen.add(str(digest))
            kind = "manifests" if desc.is_manifest else "blobs"
            lines += [f'url = "http://{host}/v2/{ref.path}/{kind}/{digest}"', f'output = "{outdir}/{digest.hex}"']
            if kind == "manifests":
                lines.append(accept)
    path = outdir.parent / "curl.cfg"
    path.write_text("\n".join(lines) + "\n")
    return path


def run_gadgetstore(image_list: Path, host: str, dest: Path) -> None:
    """The CLI, as a user runs it (its own process: start-up included)."""
    cli = Path(sys.executable).parent / "gadgetstore"
    out = subprocess.run([str(cli), "--store", str(dest), "image", "pull", "--from-file", str(image_list),
                          "--insecure-registries", host], capture_output=True, text=True)
    if out.returncode != 0:
        raise SystemExit(f"gadgetstore pull failed: {out.stderr.strip().splitlines()[-1:]}")


def _skopeo(image: str, layout: Path, tag: str) -> None:
    subprocess.run(["skopeo", "copy", "-q", "--all", "--preserve-digests", "--src-tls-verify=false",
                    f"docker://{image}", f"oci:{layout}:{tag}"], check=True)


def run_skopeo(images: list[str], dest: Path) -> None:
    """Sequentially, one process per image, all into one OCI layout (blobs shared)."""
    for i, image in enumerate(images):
        _skopeo(image, dest, f"img{i}")


def run_skopeo_parallel(images: list[str], dest: Path, jobs: int = 4) -> None:
    """``jobs`` skopeo processes at a time (like ``xargs -P4``), one OCI layout per image."""
    with concurrent.futures.ThreadPoolExecutor(jobs) as pool:
        for future in [pool.submit(_skopeo, image, dest / f"img{i}", f"img{i}") for i, image in enumerate(images)]:
            future.result()


def run_oras(images: list[str], host: str, dest: Path) -> None:
    import oras.provider

    reg = oras.provider.Registry(hostname=host, insecure=True)
    for i, image in enumerate(images):
        ref = normalize(image)
        index = reg.get_manifest(f"{host}/{ref.path}:{ref.tag}", allowed_media_type=[mt.OCI_INDEX])
        for entry in index["manifests"]:
            reg.pull(target=f"{host}/{ref.path}@{entry['digest']}", outdir=str(dest / f"{i}" / entry["digest"][7:]),
                     allowed_media_type=[mt.OCI_MANIFEST])


def run_curl(config: Path, outdir: Path) -> None:
    subprocess.run(["curl", "--parallel", "--parallel-max", "8", "-sf", "--no-progress-meter", "--config",
                    str(config)], check=True)


@dataclass
class Sample:
    wall: float
    cpu: float
    requests: Requests
    registry_cpu: float = 0.0


def process_cpu(pid: int) -> float:
    """User + system CPU seconds of a running process (``/proc/PID/stat``)."""
    with open(f"/proc/{pid}/stat") as f:
        fields = f.read().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def ratio_table(timings: dict[str, list[Sample]], floor: str = "curl", ours: str = "gadgetstore") -> list[str]:
    """The issue's ratios from medians of one invocation (every tool measured in the same rounds)."""
    med = {name: statistics.median(s.wall for s in samples) for name, samples in timings.items()}
    lines = [f"{'ratio':<34}{'median':>8}  {'per round':<32}target"]

    def per_round(a: str, b: str) -> str:
        return " ".join(f"{x.wall / y.wall:.2f}" for x, y in zip(timings[a], timings[b], strict=False))

    def row(label: str, a: str, b: str, target: str) -> None:
        if a in med and b in med:
            lines.append(f"{label:<34}{med[a] / med[b]:>8.2f}  {per_round(a, b):<32}{target}")

    row(f"{ours} / {floor} floor", ours, floor, "<= 1.25")
    for peer, target in (("oras-py", ">= 2.2"), ("skopeo-4par", ">= 2.7"), ("skopeo-seq", "")):
        row(f"{peer} / {ours}", peer, ours, target)
    for peer, issue in (("oras-py", 3.3), ("skopeo-4par", 4.0), ("skopeo-seq", 5.2)):
        row(f"{peer} / {floor} floor", peer, floor, f"(issue: {issue})")
    return lines


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("-n", "--images", type=int, default=20)
    parser.add_argument("-r", "--runs", type=int, default=3)
    parser.add_argument("--seed", type=int, default=1)
    parser.add_argument("--repos", type=int, default=40, help="repositories the images are spread over (0: one each)")
    parser.add_argument("--skip", nargs="*", default=[],
                        choices=["curl", "skopeo", "skopeo-seq", "skopeo-4par", "oras", "warm"])
    args = parser.parse_args()
    skip = set(args.skip)
    if "skopeo" in skip:
        skip |= {"skopeo-seq", "skopeo-4par"}

    load_start = os.getloadavg()
    work = Path(tempfile.mkdtemp(prefix="bulk-pull-"))
    try:
        with start_registry(work / "registry", extra_config=ACCESS_LOG_CONFIG) as registry:
            host = registry.host
            log = AccessLog(work / "registry" / "registry.log")
            src = Store.open(work / "src")
            images, unique_layer_bytes = build_corpus(src, host, args.images, args.seed, args.repos)
            image_list = work / "images.txt"
            image_list.write_text("".join(f"{image}\n" for image in images))
            options = TransferOptions(insecure_registries=frozenset({host}))

            async def push_all() -> None:
                slots = trio.Semaphore(16)  # 1,000 pushes at once made docker-registry refuse uploads

                async def push(image: str) -> None:
                    async with slots:
                        await push_image(src, image, options)

                async with trio.open_nursery() as nursery:
                    for image in images:
                        nursery.start_soon(push, image)

            trio.run(push_all)
            total_bytes = sum(p.stat().st_size for p in (work / "src" / "blobs" / "sha256").iterdir())
            print(f"corpus: {len(images)} images, {total_bytes / 1e6:.1f} MB of unique blobs "
                  f"({unique_layer_bytes / 1e6:.1f} MB of layers)", flush=True)

            run_gadgetstore(image_list, host, work / "warm-up")  # untimed: lets the registry settle after the push
            shutil.rmtree(work / "warm-up")

            tools: dict[str, Callable[[Path], None]] = {
                "gadgetstore": lambda d: run_gadgetstore(image_list, host, d / "store")}
            if "curl" not in skip:
                config = curl_config(src, images, host, work / "curl-out")
                tools["curl"] = lambda d: run_curl(config, d)
            if "oras" not in skip:
                tools["oras-py"] = lambda d: run_oras(images, host, d)
            if "skopeo-4par" not in skip:
                tools["skopeo-4par"] = lambda d: run_skopeo_parallel(images, d)
            if "skopeo-seq" not in skip:
                tools["skopeo-seq"] = lambda d: run_skopeo(images, d / "layout")

            timings: dict[str, list[Sample]] = {}
            for run in range(args.runs):
                for name, fn in tools.items():
                    dest = work / f"{name}-{run}"
                    if name == "curl":
                        dest = work / "curl-out"
                    dest.mkdir()
                    log.mark()
                    registry_before = process_cpu(registry.process.pid)
                    wall, cpu = measure(functools.partial(fn, dest))
                    served = log.since_mark()
                    timings.setdefault(name, []).append(
                        Sample(wall, cpu, served, process_cpu(registry.process.pid) - registry_before))
                    print(f"  round {run + 1}: {name:<12} {wall:7.3f} s {cpu:6.2f} CPU-s {served.total:6} requests",
                          flush=True)
                    shutil.rmtree(dest, ignore_errors=True)

            warm_rows: list[Sample] = []
            if "warm" not in skip:
                warm = work / "warm-store"
                run_gadgetstore(image_list, host, warm)
                for _ in range(args.runs):
                    log.mark()
                    wall, cpu = measure(functools.partial(run_gadgetstore, image_list, host, warm))
                    warm_rows.append(Sample(wall, cpu, log.since_mark()))
                timings["gadgetstore-warm"] = warm_rows

        ours = statistics.median(s.wall for s in timings["gadgetstore"])
        print(f"\n{'tool':<18}{'median s':>10}{'cpu s':>8}{'reg cpu':>8}{'MB/s':>8}{'requests':>10}{'blob GET':>10}"
              f"{'blob HEAD':>10}{'MB served':>10}")
        for name, samples in timings.items():
            wall = statistics.median(s.wall for s in samples)
            cpu = statistics.median(s.cpu for s in samples)
            reg = statistics.median(s.registry_cpu for s in samples)
            req = samples[len(samples) // 2].requests
            print(f"{name:<18}{wall:>10.3f}{cpu:>8.2f}{reg:>8.2f}{total_bytes / 1e6 / wall:>8.1f}{req.total:>10}"
                  f"{req.blob_gets:>10}{req.blob_heads:>10}{req.bytes / 1e6:>10.1f}")
        if "curl" in timings:
            curl_cpu = statistics.median(s.cpu for s in timings["curl"])
            ours_cpu = statistics.median(s.cpu for s in timings["gadgetstore"])
            curl_req = timings["curl"][0].requests.total
            ours_req = max(s.requests.total for s in timings["gadgetstore"])
            print(f"\ngadgetstore / curl: client CPU {ours_cpu / curl_cpu:.2f} (target <= 2), requests "
                  f"{ours_req / curl_req:.3f} ({ours_req} / {curl_req}; target <= 1.05)")
        print()
        for line in ratio_table({k: v for k, v in timings.items() if k != "gadgetstore-warm"}):
            print(line)
        if warm_rows:
            blob_requests = max(s.requests.blob_requests for s in warm_rows)
            wall = statistics.median(s.wall for s in warm_rows)
            verdict = "OK" if blob_requests == 0 else "FAIL"
            total = max(s.requests.total for s in warm_rows)
            print(f"\nwarm re-pull: {wall:.3f} s = {wall / ours:.3f} of the cold pull; blob requests "
                  f"{blob_requests} (must be 0: {verdict}); manifest requests "
                  f"{max(s.requests.manifests for s in warm_rows)}, all requests {total} for {len(images)} tags "
                  f"({'OK' if total <= len(images) else 'MISSED'}: one per image)")
        digest = hashlib.sha256(json.dumps(images).encode()).hexdigest()[:8]
        load_end = os.getloadavg()
        repos = min(args.repos, args.images) or args.images
        print(f"\n(corpus seed {args.seed}, id {digest}, {args.images} images in {repos} repositories, {args.runs} "
              f"interleaved rounds, median; load average {load_start[0]:.2f} at the start, "
              f"{load_end[0]:.2f} at the end)")
    finally:
        shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    main()
