"""Bulk pull of N gadget-sized images from a local docker-registry: gadgetstore vs its peers.

    .venv/bin/python benchmarks/bulk_pull.py            # N=20, 3 runs each, a few minutes at most
    .venv/bin/python benchmarks/bulk_pull.py -n 200     # the G200 corpus of performance-anchors.md §8

Peers (same registry, same images, empty destination each run, median of the runs):
  curl      ``curl --parallel --parallel-max 8`` over every manifest and blob URL: the wire+disk
            floor (no verification, no fsync, no store)
  skopeo    ``skopeo copy --all --preserve-digests`` per image, sequentially, into one OCI layout
  oras-py   the oras-py client, image after image (index, then each per-arch manifest's layers)
Ratios are peer time / gadgetstore time (above 1 means gadgetstore is faster), except the curl
floor, reported as gadgetstore time / curl time (the brief's goal is at most 2.0).
"""

from __future__ import annotations

import argparse
import functools
import hashlib
import json
import random
import resource
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

import trio

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from gadgetstore.engine import mediatypes as mt  # noqa: E402
from gadgetstore.engine.descriptor import Descriptor  # noqa: E402
from gadgetstore.engine.reference import normalize  # noqa: E402
from gadgetstore.engine.registry.client import TransferOptions  # noqa: E402
from gadgetstore.engine.registry.pull import pull_images  # noqa: E402
from gadgetstore.engine.registry.push import push_image  # noqa: E402
from gadgetstore.engine.store import Store  # noqa: E402
from tests.support.images import pseudo_random  # noqa: E402
from tests.support.registry import start_registry  # noqa: E402


def layer_size(rng: random.Random) -> int:
    """100 KB – 2 MB, log-uniform-ish with a median near 400 KB."""
    return int(min(2_000_000, max(100_000, rng.lognormvariate(12.9, 0.7))))


def build_corpus(store: Store, host: str, n: int, seed: int) -> tuple[list[str], int]:
    """N images (index → amd64/arm64 manifests → config + ELF layer); 20% reuse the previous image's layers."""
    rng = random.Random(seed)
    images: list[str] = []
    total = 0
    previous: dict[str, bytes] = {}
    for i in range(n):
        image = f"{host}/bench/gadget{i % 40}:v{i}"
        config = (f"name: gadget{i}\ndescription: benchmark gadget {i}\n" + "x" * 1900).encode()
        cdesc = {"mediaType": mt.GADGET_CONFIG, "digest": str(store.blobs.put(config)), "size": len(config)}
        entries = []
        layers: dict[str, bytes] = {}
        for arch in ("amd64", "arm64"):
            reuse = previous and rng.random() < 0.2
            data = previous[arch] if reuse else pseudo_random(layer_size(rng), f"{seed}/{i}/{arch}")
            layers[arch] = data
            total += len(data) if not reuse else 0
            ldesc = {"mediaType": mt.GADGET_EBPF, "digest": str(store.blobs.put(data)), "size": len(data)}
            manifest = json.dumps({"schemaVersion": 2, "artifactType": mt.GADGET_ARTIFACT, "config": cdesc,
                                   "layers": [ldesc]}, separators=(",", ":")).encode()
            entries.append({"mediaType": mt.OCI_MANIFEST, "digest": str(store.blobs.put(manifest)),
                            "size": len(manifest), "platform": {"architecture": arch, "os": "linux"}})
        previous = layers
        index = json.dumps({"schemaVersion": 2, "mediaType": mt.OCI_INDEX, "manifests": entries},
                           separators=(",", ":")).encode()
        root = Descriptor(mt.OCI_INDEX, store.blobs.put(index), len(index))
        with store.transaction() as txn:
            txn.tag(str(normalize(image)), root)
        images.append(image)
    return images, total


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


def run_gadgetstore(images: list[str], host: str, dest: Path) -> None:
    store = Store.open(dest)
    options = TransferOptions(insecure_registries=frozenset({host}))
    results = trio.run(pull_images, store, images, options)
    failed = [r for r in results if r.error is not None]
    if failed:
        raise SystemExit(f"gadgetstore pull failed: {failed[0].error}")


def run_skopeo(images: list[str], dest: Path) -> None:
    for i, image in enumerate(images):
        subprocess.run(["skopeo", "copy", "-q", "--all", "--preserve-digests", "--src-tls-verify=false",
                        f"docker://{image}", f"oci:{dest}:img{i}"], check=True)


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


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("-n", "--images", type=int, default=20)
    parser.add_argument("-r", "--runs", type=int, default=3)
    parser.add_argument("--seed", type=int, default=1)
    parser.add_argument("--skip", nargs="*", default=[], choices=["curl", "skopeo", "oras"])
    args = parser.parse_args()

    work = Path(tempfile.mkdtemp(prefix="bulk-pull-"))
    try:
        with start_registry(work / "registry") as registry:
            host = registry.host
            src = Store.open(work / "src")
            images, unique_layer_bytes = build_corpus(src, host, args.images, args.seed)
            options = TransferOptions(insecure_registries=frozenset({host}))

            async def push_all() -> None:
                async with trio.open_nursery() as nursery:
                    for image in images:
                        nursery.start_soon(push_image, src, image, options)

            trio.run(push_all)
            total_bytes = sum(p.stat().st_size for p in (work / "src" / "blobs" / "sha256").iterdir())
            print(f"corpus: {len(images)} images, {total_bytes / 1e6:.1f} MB of unique blobs "
                  f"({unique_layer_bytes / 1e6:.1f} MB of layers)")

            timings: dict[str, list[tuple[float, float]]] = {}
            run_gadgetstore(images, host, work / "warm-up")  # untimed: lets the registry settle after the push
            shutil.rmtree(work / "warm-up")

            def repeat(name: str, fn: Callable[[Path], None]) -> None:
                for run in range(args.runs):
                    dest = work / f"{name}-{run}"
                    dest.mkdir()
                    timings.setdefault(name, []).append(measure(functools.partial(fn, dest)))
                    if name != "gadgetstore-warm":
                        shutil.rmtree(dest)

            repeat("gadgetstore", lambda d: run_gadgetstore(images, host, d / "store"))
            warm = work / "warm-store"
            run_gadgetstore(images, host, warm)
            repeat("gadgetstore-warm", lambda d: run_gadgetstore(images, host, warm))
            if "curl" not in args.skip:
                config = curl_config(src, images, host, work / "curl-out")

                def curl(d: Path) -> None:
                    (work / "curl-out").mkdir(exist_ok=True)
                    run_curl(config, d)
                    shutil.rmtree(work / "curl-out")

                repeat("curl", curl)
            if "skopeo" not in args.skip:
                repeat("skopeo", lambda d: run_skopeo(images, d / "layout"))
            if "oras" not in args.skip:
                repeat("oras-py", lambda d: run_oras(images, host, d))

        ours = statistics.median(w for w, _ in timings["gadgetstore"])
        print(f"\n{'tool':<18}{'median s':>10}{'cpu s':>9}{'MB/s':>9}   ratio")
        for name, values in timings.items():
            wall = statistics.median(w for w, _ in values)
            cpu = statistics.median(c for _, c in values)
            if name == "gadgetstore":
                ratio = "1.00 (reference)"
            elif name == "curl":
                ratio = f"gadgetstore/curl = {ours / wall:.2f}"
            elif name == "gadgetstore-warm":
                ratio = f"warm/cold = {wall / ours:.3f}"
            else:
                ratio = f"{name}/gadgetstore = {wall / ours:.1f}x"
            print(f"{name:<18}{wall:>10.3f}{cpu:>9.2f}{total_bytes / 1e6 / wall:>9.1f}   {ratio}")
        digest = hashlib.sha256(json.dumps(images).encode()).hexdigest()[:8]
        print(f"\n(corpus seed {args.seed}, id {digest}, {args.runs} runs, median)")
    finally:
        shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    main()
