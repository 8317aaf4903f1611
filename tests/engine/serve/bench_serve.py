"""Blob throughput of ``gadgetstore serve`` against docker-registry 2.8 serving the same blob.

Not a test (pytest does not collect it). Run from the project root::

    .venv/bin/python tests/engine/serve/bench_serve.py [--size-mib 256] [--runs 5] [--parallel 8]

Both servers run on 127.0.0.1; skopeo copies the image from ours into docker-registry, so both
serve byte-identical blobs. curl downloads to /dev/null: one client at a time (median of --runs)
and --parallel clients at once (aggregate).
"""

from __future__ import annotations

import argparse
import http.client
import json
import os
import re
import signal
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[3]))

from gadgetstore.engine.store import Store
from tests.support.images import make_gadget_image
from tests.support.registry import start_registry

IMAGE = "ghcr.io/bench/blob:1"


def curl_seconds(url: str) -> float:
    out = subprocess.run(["curl", "-sS", "-o", "/dev/null", "-w", "%{time_total} %{size_download}", url],
                         check=True, capture_output=True, text=True).stdout.split()
    return float(out[0])


def parallel_seconds(url: str, clients: int) -> float:
    started = time.monotonic()
    procs = [subprocess.Popen(["curl", "-sS", "-o", "/dev/null", url]) for _ in range(clients)]
    for proc in procs:
        assert proc.wait() == 0
    return time.monotonic() - started


def cpu_seconds(pid: int) -> float:
    """User + system CPU of a process and all its threads, from /proc (robust on a busy machine)."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def requests_per_second(host: str, path: str, count: int) -> float:
    """Sequential small GETs on one keep-alive connection: per-request overhead, not bandwidth."""
    name, port = host.split(":")
    conn = http.client.HTTPConnection(name, int(port), timeout=10)
    started = time.monotonic()
    for _ in range(count):
        conn.request("GET", path, headers={"Accept": "application/vnd.oci.image.index.v1+json"})
        resp = conn.getresponse()
        resp.read()
        assert resp.status == 200, resp.status
    conn.close()
    return count / (time.monotonic() - started)


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--size-mib", type=int, default=256)
    parser.add_argument("--runs", type=int, default=5)
    parser.add_argument("--parallel", type=int, default=8)
    args = parser.parse_args()
    size = args.size_mib * 1024 * 1024
    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp) / "store"
        store = Store.open(root)
        make_gadget_image(store, IMAGE, layer_size=size, archs=("amd64",))
        layer = next(d for d in store.blobs.iter_digests() if (st := store.blobs.stat(d)) and st.st_size == size)
        ours = subprocess.Popen([sys.executable, "-m", "gadgetstore.cli.main", "--store", str(root), "serve",
                                 "--quiet", "--listen", "127.0.0.1:0"], stderr=subprocess.PIPE, text=True)
        try:
            assert ours.stderr is not None
            match = re.search(r":(\d+)/v2/", ours.stderr.readline())
            assert match, "serve did not start"
            our_host = f"127.0.0.1:{match.group(1)}"
            with start_registry(Path(tmp) / "registry") as registry:
                subprocess.run(["skopeo", "--insecure-policy", "copy", "--all", "--preserve-digests",
                                "--src-tls-verify=false", "--dest-tls-verify=false",
                                f"docker://{our_host}/bench/blob:1", f"docker://{registry.host}/bench/blob:1"],
                               check=True, capture_output=True)
                results = {}
                servers = (("gadgetstore serve", our_host, ours.pid),
                           ("docker-registry 2.8", registry.host, registry.process.pid))
                for label, host, pid in servers:
                    url = f"http://{host}/v2/bench/blob/blobs/{layer}"
                    curl_seconds(url)  # warm the page cache and the server
                    cpu_before = cpu_seconds(pid)
                    single = statistics.median(curl_seconds(url) for _ in range(args.runs))
                    together = parallel_seconds(url, args.parallel)
                    served_gib = args.size_mib * (args.runs + args.parallel) / 1024
                    cpu_per_gib = (cpu_seconds(pid) - cpu_before) / served_gib
                    manifest_rps = requests_per_second(host, "/v2/bench/blob/manifests/1", 2000)
                    results[label] = {
                        "manifest_GETs_per_s_one_connection": round(manifest_rps),
                        "server_cpu_s_per_GiB": round(cpu_per_gib, 3),
                        "single_MiB_s": round(args.size_mib / single, 1),
                        f"parallel{args.parallel}_aggregate_MiB_s": round(args.size_mib * args.parallel / together, 1),
                    }
                print(json.dumps({"blob_MiB": args.size_mib, "results": results}, indent=2))
        finally:
            ours.send_signal(signal.SIGTERM)
            ours.wait(10)


if __name__ == "__main__":
    main()
