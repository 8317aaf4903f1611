"""Store benchmarks (issue 2): open with 10k tags, ingest of 1,000 small blobs, import/export of many
images with shared layers (dedupe ratio), and skopeo as a peer for the same import.

Run: .venv/bin/python benchmarks/store_bench.py [--images N] [--repeat R]
Prints a Markdown table; figures are medians of R runs. Not a timed test.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import shutil
import statistics
import subprocess
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

from gadgetstore.engine.archive import export_images, import_archive
from gadgetstore.engine.descriptor import Descriptor, canonical_json
from gadgetstore.engine.store import Store

INDEX = "application/vnd.oci.image.index.v1+json"
MANIFEST = "application/vnd.oci.image.manifest.v1+json"


def median_time(fn: Callable[[], object], repeat: int, setup: Callable[[], object] | None = None) -> float:
    times = []
    for _ in range(repeat):
        if setup:
            setup()
        start = time.perf_counter()
        fn()
        times.append(time.perf_counter() - start)
    return statistics.median(times)


def put_json(store: Store, obj: dict, media_type: str) -> Descriptor:  # type: ignore[type-arg]
    data = canonical_json(obj)
    return Descriptor(media_type, store.ingest.put(data), len(data))


def make_gadget_images(store: Store, count: int) -> tuple[int, int]:
    """Gadget-shaped images (index → 2 arch manifests → config + ELF layer); ~20% share layers.

    Returns (sum of blob sizes over all images, sum of unique blob sizes)."""
    total = 0
    unique: dict[str, int] = {}
    shared_layers = [os.urandom(150_000) for _ in range(5)]
    for i in range(count):
        config = f"name: gadget{i}\ndescription: benchmark gadget\n".encode()
        entries = []
        sizes = []
        for arch in ("amd64", "arm64"):
            layer = shared_layers[i % 5] if i % 5 == 0 else hashlib.sha256(f"{i}{arch}".encode()).digest() * 4000
            layer_desc = {"mediaType": "application/vnd.gadget.ebpf.program.v1+binary",
                          "digest": str(store.ingest.put(layer)), "size": len(layer)}
            cfg = {"mediaType": "application/vnd.gadget.config.v1+yaml", "digest": str(store.ingest.put(config)),
                   "size": len(config)}
            manifest = put_json(store, {"schemaVersion": 2, "artifactType": "application/vnd.gadget.v1+binary",
                                        "config": cfg, "layers": [layer_desc]}, MANIFEST)
            entries.append({**manifest.to_json(), "platform": {"architecture": arch, "os": "linux"}})
            for d, s in ((layer_desc["digest"], len(layer)), (cfg["digest"], len(config)),
                         (str(manifest.digest), manifest.size)):
                sizes.append(s)
                unique[str(d)] = s
        index = put_json(store, {"schemaVersion": 2, "mediaType": INDEX, "manifests": entries}, INDEX)
        unique[str(index.digest)] = index.size
        total += sum(sizes) + index.size
        with store.transaction() as txn:
            txn.tag(f"localhost:5000/bench/gadget{i}:latest", index)
    return total, sum(unique.values())


def dir_size(path: Path) -> int:
    return sum(p.stat().st_size for p in path.rglob("*") if p.is_file() and "blobs" in p.parts)


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--images", type=int, default=200)
    parser.add_argument("--repeat", type=int, default=3)
    args = parser.parse_args()
    work = Path(tempfile.mkdtemp(prefix="gs-bench-"))
    rows: list[tuple[str, str]] = []
    try:
        # 1. Open with 10,000 tags (compacted journal) and with 10,000 uncompacted appends.
        big = Store.open(work / "tags")
        digest = big.ingest.put(b"x")
        with big.transaction() as txn:
            for i in range(10_000):
                txn.tag(f"registry.example.com/gadgets/g{i}:v1", Descriptor(INDEX, digest, 1))
        big.compact()
        rows.append(("open store with 10,000 tags (target ≤ 200 ms)",
                     f"{median_time(lambda: Store.open(work / 'tags'), 5) * 1000:.1f} ms"))

        # 2. Ingest 1,000 small blobs (fsync'd, verified, read-only, renamed).
        blobs = [os.urandom(2048) for _ in range(1000)]
        def ingest() -> None:
            s = Store.open(work / "ingest")
            for b in blobs:
                s.ingest.put(b)
        t = median_time(ingest, args.repeat, setup=lambda: shutil.rmtree(work / "ingest", ignore_errors=True))
        rows.append(("ingest 1,000 blobs of 2 KiB", f"{t * 1000:.0f} ms ({t:.2f} ms/blob incl. two fsyncs)"))

        # 3. Many images with shared layers: export, import, dedupe ratio, skopeo as a peer.
        src = Store.open(work / "src")
        logical, unique = make_gadget_images(src, args.images)
        archive = work / "many.tar"
        refs = src.tags()
        t_export = median_time(lambda: export_images(src, refs, archive), args.repeat)
        rows.append((f"export {args.images} images to one tar", f"{t_export * 1000:.0f} ms"))
        t_import = median_time(lambda: import_archive(Store.open(work / "dst"), archive), args.repeat,
                               setup=lambda: shutil.rmtree(work / "dst", ignore_errors=True))
        rows.append((f"import {args.images} images from one tar", f"{t_import * 1000:.0f} ms"))
        stored = dir_size(work / "dst")
        rows.append(("dedupe: blob bytes stored / sum of unique blob sizes", f"{stored / unique:.3f}"))
        rows.append(("dedupe: sum of per-image sizes / blob bytes stored", f"{logical / stored:.2f}×"))
        if shutil.which("skopeo"):
            one_ref = refs[0]
            one = work / "one.tar"
            export_images(src, [one_ref], one)
            def skopeo_import() -> None:
                subprocess.run(["skopeo", "copy", "--all", "--preserve-digests", "-q",
                                f"oci-archive:{one}:{one_ref}", f"oci:{work / 'skopeo'}:{one_ref}"], check=True)
            t_sk = median_time(skopeo_import, args.repeat,
                               setup=lambda: shutil.rmtree(work / "skopeo", ignore_errors=True))
            t_gs = median_time(lambda: import_archive(Store.open(work / "dst1"), one), args.repeat,
                               setup=lambda: shutil.rmtree(work / "dst1", ignore_errors=True))
            rows.append(("import one image: gadgetstore time / skopeo copy oci-archive→oci time",
                         f"{t_gs / t_sk:.3f}"))
            check = subprocess.run(["skopeo", "inspect", "--raw", f"oci:{work / 'dst1'}:{one_ref}"],
                                   capture_output=True, check=True)
            rows.append(("skopeo reads our store as an OCI layout", "yes" if json.loads(check.stdout) else "no"))
    finally:
        shutil.rmtree(work, ignore_errors=True)
    print("| measurement | result |\n|---|---|")
    for name, value in rows:
        print(f"| {name} | {value} |")


if __name__ == "__main__":
    main()
