"""A fleet of nodes pulling the same gadgets at once: upstream egress and the slowest node.

    sudo .venv/bin/python benchmarks/fleet.py                 # 8 nodes × 50 gadgets, every scenario
    .venv/bin/python benchmarks/fleet.py -n 4 -m 20 --no-netns

Each node is its own process with its own store. As root, every node gets a network namespace
created here (veth pairs on a bridge, 10.231.0.0/24); otherwise the nodes share loopback, and the
report says so. The upstream is a docker-registry with its access log on: the bytes it sent are
summed from that log. Scenarios:

  single   one node straight from the upstream: the reference time
  a        N nodes straight from the upstream
  b        N nodes through a docker-registry pull-through cache (``proxy: remoteurl:``)
  c        peers (``[peers]`` in registries.toml): every node runs ``gadgetstore serve`` and all
           start together; each blob's owner (rendezvous hash over the peer list) fetches it from
           the upstream, the others from the owner, which holds their request until it has it
  c-seed   the older way: node 0 pulls from the upstream while running ``gadgetstore serve``;
           when it is done the others pull with node 0 as their mirror

Reported per scenario: upstream bytes / unique bytes of the corpus, and the slowest node's time
(from the common start to its last commit, including any wait for a seed) / the single-node time,
and the CPU seconds of the pulling nodes and of the helpers (registries, ``serve``) on this machine.
``--upstream-rate 100mbit`` shapes the upstream's link (tc tbf, namespaces only), which models a
fleet whose bottleneck is the WAN rather than this machine's two cores.
Every process started here is stopped at the end; every wait has a deadline.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import random
import re
import shutil
import subprocess
import sys
import tempfile
import time
import urllib.error
import urllib.request
import uuid
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

import trio  # noqa: E402
import yaml  # noqa: E402

from gadgetstore.engine.reference import normalize  # noqa: E402
from gadgetstore.engine.registry.client import TransferOptions  # noqa: E402
from gadgetstore.engine.registry.mirrors_config import load as load_registries  # noqa: E402
from gadgetstore.engine.registry.pull import pull_images  # noqa: E402
from gadgetstore.engine.registry.push import push_image  # noqa: E402
from gadgetstore.engine.store import Store  # noqa: E402
from tests.support.images import make_gadget_image, verify_store  # noqa: E402
from tests.support.registry import REGISTRY_BINARY, free_port  # noqa: E402

PYTHON = sys.executable
SUBNET = "10.231.0"
HOST_IP = f"{SUBNET}.1"
UPSTREAM_IP = f"{SUBNET}.2"  # only when the upstream has a namespace of its own (--upstream-rate)
NODE_TIMEOUT = 300.0
_ACCESS_RE = re.compile(r'"(GET|HEAD) (\S+) HTTP/[\d.]+" (\d{3}) (\d+|-)')


# -- the network ---------------------------------------------------------------------------------


def sh(*args: str) -> None:
    subprocess.run(args, check=True, capture_output=True, timeout=30)


@dataclass
class Network:
    """Where things listen: namespaces on a bridge, or plain loopback."""

    namespaces: bool
    tag: str = field(default_factory=lambda: uuid.uuid4().hex[:5])
    created: list[str] = field(default_factory=list)
    bridge: str = ""

    def node_ip(self, i: int) -> str:
        return f"{SUBNET}.{10 + i}" if self.namespaces else "127.0.0.1"

    @property
    def host_ip(self) -> str:
        return HOST_IP if self.namespaces else "127.0.0.1"

    def ns(self, name: str) -> str:
        return f"gsf{self.tag}{name}"

    def prefix(self, name: str) -> list[str]:
        """The command prefix that runs a process in ``name``'s namespace (nothing on loopback)."""
        return ["ip", "netns", "exec", self.ns(name)] if self.namespaces else []

    def setup(self, names: list[tuple[str, str]]) -> None:
        """Create the bridge and one namespace per (name, address)."""
        self.bridge = f"gsf{self.tag}br"
        sh("ip", "link", "add", self.bridge, "type", "bridge")
        sh("ip", "addr", "add", f"{HOST_IP}/24", "dev", self.bridge)
        sh("ip", "link", "set", self.bridge, "up")
        for k, (name, address) in enumerate(names):
            ns, host_end = self.ns(name), f"gsf{self.tag}v{k}"
            sh("ip", "netns", "add", ns)
            self.created.append(ns)
            sh("ip", "link", "add", host_end, "type", "veth", "peer", "name", "eth0", "netns", ns)
            sh("ip", "link", "set", host_end, "master", self.bridge)
            sh("ip", "link", "set", host_end, "up")
            sh("ip", "-n", ns, "addr", "add", f"{address}/24", "dev", "eth0")
            sh("ip", "-n", ns, "link", "set", "eth0", "up")
            sh("ip", "-n", ns, "link", "set", "lo", "up")

    def shape(self, name: str, rate: str) -> None:
        sh("ip", "netns", "exec", self.ns(name), "tc", "qdisc", "add", "dev", "eth0", "root", "tbf",
           "rate", rate, "burst", "256kb", "latency", "100ms")

    def teardown(self) -> None:
        for ns in self.created:
            subprocess.run(["ip", "netns", "del", ns], capture_output=True, timeout=30)
        if self.bridge:
            subprocess.run(["ip", "link", "del", self.bridge], capture_output=True, timeout=30)


def namespaces_available() -> bool:
    if os.geteuid() != 0 or not shutil.which("ip"):
        return False
    probe = f"gsfprobe{uuid.uuid4().hex[:6]}"
    ok = subprocess.run(["ip", "netns", "add", probe], capture_output=True, timeout=30).returncode == 0
    subprocess.run(["ip", "netns", "del", probe], capture_output=True, timeout=30)
    return ok


# -- registries and serve --------------------------------------------------------------------------


@dataclass
class Registry:
    address: str
    log: Path
    process: subprocess.Popen[Any]


def wait_http(url: str, deadline: float, process: subprocess.Popen[Any]) -> None:
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise RuntimeError(f"{url}: the server exited with {process.returncode}")
        try:
            urllib.request.urlopen(url, timeout=1)
            return
        except urllib.error.HTTPError:
            return
        except (urllib.error.URLError, OSError):
            time.sleep(0.05)
    raise RuntimeError(f"{url} did not come up")


@contextlib.contextmanager
def registry(directory: Path, address: str, prefix: list[str], proxy: str | None = None) -> Iterator[Registry]:
    """docker-registry with its access log on (it is how upstream bytes are counted)."""
    directory.mkdir(parents=True)
    config = {
        "version": 0.1,
        "log": {"level": "error", "accesslog": {"disabled": False}},
        "storage": {"filesystem": {"rootdirectory": str(directory / "data")},
                    "maintenance": {"uploadpurging": {"enabled": False}}},
        "http": {"addr": address, "secret": uuid.uuid4().hex},
    }
    if proxy:
        config["proxy"] = {"remoteurl": proxy}
    (directory / "config.yml").write_text(yaml.safe_dump(config))
    log = directory / "registry.log"
    env = {k: v for k, v in os.environ.items() if not k.startswith("REGISTRY_")}
    with open(log, "wb") as out:
        process = subprocess.Popen([*prefix, REGISTRY_BINARY, "serve", str(directory / "config.yml")], stdout=out,
                                   stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL, env=env)
    try:
        wait_http(f"http://{address}/v2/", time.monotonic() + 20, process)
        yield Registry(address, log, process)
    finally:
        stop(process)


def cpu_seconds(pid: int) -> float:
    """User + system CPU of a running process so far (Linux /proc); 0 when it is gone."""
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    except OSError:
        return 0.0
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def helpers_cpu(processes: list[subprocess.Popen[Any]]) -> float:
    return sum(cpu_seconds(p.pid) for p in processes)


def stop(process: subprocess.Popen[Any]) -> None:
    if process.poll() is None:
        process.terminate()
        try:
            process.wait(5)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait(5)


def bytes_sent(log: Path, start: int) -> tuple[int, int]:
    """(body bytes, requests) the registry logged after byte offset ``start`` of its log."""
    with open(log, "rb") as f:
        f.seek(start)
        text = f.read().decode("utf-8", "replace")
    total = count = 0
    for match in _ACCESS_RE.finditer(text):
        count += 1
        if match.group(1) == "GET" and match.group(4) != "-":  # HEAD sizes are logged but never sent
            total += int(match.group(4))
    return total, count


# -- the corpus -----------------------------------------------------------------------------------


def layer_size(rng: random.Random) -> int:
    """100 kB – 2 MB, median near 400 kB: gadget-sized eBPF layers."""
    return int(min(2_000_000, max(100_000, rng.lognormvariate(12.9, 0.7))))


def build_corpus(work: Path, upstream: str, count: int, seed: int) -> tuple[list[str], int]:
    """``count`` gadgets pushed to ``upstream``; returns the references and the unique bytes."""
    rng = random.Random(seed)
    src = Store.open(work / "corpus")
    images = [f"{upstream}/fleet/gadget{i}:v1" for i in range(count)]
    for i, image in enumerate(images):
        make_gadget_image(src, image, layer_size=layer_size(rng), seed=f"{seed}/{i}")
    options = TransferOptions(insecure_registries=frozenset({upstream}))

    async def push_all() -> None:
        limit = trio.CapacityLimiter(8)

        async def one(image: str) -> None:
            async with limit:
                await push_image(src, image, options)

        async with trio.open_nursery() as nursery:
            for image in images:
                nursery.start_soon(one, image)

    trio.run(push_all)
    unique = {d: desc.size for d, desc in src.walk([src.resolve(str(normalize(i))) for i in images]).items()}
    return images, sum(unique.values())


# -- nodes ----------------------------------------------------------------------------------------


@dataclass
class Node:
    name: str
    process: subprocess.Popen[Any]
    started_at: float = 0.0
    result: dict[str, Any] = field(default_factory=dict)


def launch(net: Network, name: str, store: Path, images: Path, insecure: list[str], config: Path | None,
           peer_self: str | None = None) -> Node:
    """Start a node process; it imports everything, says ``ready`` and waits for ``go``."""
    cmd = [*net.prefix(name), PYTHON, str(Path(__file__).resolve()), "node", "--store", str(store),
           "--images", str(images), "--insecure", ",".join(insecure)]
    if config is not None:
        cmd += ["--registries-config", str(config)]
    if peer_self is not None:
        cmd += ["--peer-self", peer_self]
    process = subprocess.Popen(cmd, stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True, cwd=ROOT)
    assert process.stdout is not None
    line = process.stdout.readline()
    if line.strip() != "ready":
        stop(process)
        raise RuntimeError(f"node {name} did not start: {line!r}")
    return Node(name, process)


def go(nodes: list[Node]) -> None:
    now = time.monotonic()
    for node in nodes:
        assert node.process.stdin is not None
        node.started_at = now
        node.process.stdin.write("go\n")
        node.process.stdin.flush()


def finish(node: Node, deadline: float) -> None:
    assert node.process.stdout is not None
    try:
        out, _ = node.process.communicate(timeout=max(1.0, deadline - time.monotonic()))
    except subprocess.TimeoutExpired:
        node.process.kill()
        node.process.communicate()
        raise RuntimeError(f"node {node.name} did not finish in time") from None
    node.result = json.loads(out.strip().splitlines()[-1])
    if node.process.returncode != 0 or node.result.get("errors"):
        raise RuntimeError(f"node {node.name} failed: {node.result}")


def node_main(args: argparse.Namespace) -> None:
    """One node: pull every listed image once told to go; print timings as JSON."""
    images = [line.strip() for line in Path(args.images).read_text().splitlines() if line.strip()]
    options = TransferOptions(insecure_registries=frozenset(args.insecure.split(",")),
                              registries=load_registries(Path(args.registries_config)) if args.registries_config
                              else None, peer_self=args.peer_self)
    store = Store.open(Path(args.store))
    print("ready", flush=True)
    if sys.stdin.readline().strip() != "go":
        return
    start, cpu = time.monotonic(), time.process_time()
    results = trio.run(pull_images, store, images, options)
    seconds, cpu = time.monotonic() - start, time.process_time() - cpu
    sources: dict[str, int] = {}
    failures: dict[str, int] = {}
    for result in results:
        for name, tally in result.sources.items():
            sources[name] = sources.get(name, 0) + tally.bytes
            failures[name] = failures.get(name, 0) + tally.failures
    errors = [str(r.error) for r in results if r.error is not None]
    blobs = verify_store(Path(args.store)) if not errors else 0
    print(json.dumps({"seconds": seconds, "cpu": cpu, "errors": errors[:3], "sources": sources, "blobs": blobs,
                      "failures": failures}),
          flush=True)


# -- scenarios ------------------------------------------------------------------------------------

SCENARIOS = frozenset({"a", "b", "b-seeded", "c-seed", "c"})


@dataclass
class Outcome:
    scenario: str
    nodes: int
    upstream_bytes: int
    upstream_requests: int
    slowest: float
    mean: float
    mirror_share: float  # fraction of the nodes' bytes that came from mirrors
    node_cpu: float  # CPU seconds of all node processes together (pulling only)
    helper_cpu: float = 0.0  # CPU seconds of the registries and serve processes during the scenario


def run_nodes(net: Network, work: Path, scenario: str, names: list[str], images: Path, insecure: list[str],
              config: Path | None) -> list[Node]:
    nodes = [launch(net, name, work / scenario / name, images, insecure, config) for name in names]
    go(nodes)
    deadline = time.monotonic() + NODE_TIMEOUT
    for node in nodes:
        finish(node, deadline)
    return nodes


def summarize(scenario: str, nodes: list[Node], fleet_start: float, upstream: Registry, offset: int,
              helper_cpu: float = 0.0) -> Outcome:
    time.sleep(0.3)  # let the registry's last access-log lines land
    sent, requests = bytes_sent(upstream.log, offset)
    ends = [node.started_at - fleet_start + float(node.result["seconds"]) for node in nodes]
    mirror = sum(v for node in nodes for k, v in node.result["sources"].items() if k.startswith(("mirror", "peer")))
    total = sum(v for node in nodes for v in node.result["sources"].values())
    cpu = sum(float(node.result["cpu"]) for node in nodes)
    return Outcome(scenario, len(nodes), sent, requests, max(ends), sum(ends) / len(ends), mirror / max(1, total), cpu,
                   helper_cpu)


def mirror_config(path: Path, upstream: str, mirror: str) -> Path:
    path.write_text(f'[[registry."{upstream}".mirror]]\nurl = "http://{mirror}"\ninsecure = true\n')
    return path


def scenario_direct(net: Network, work: Path, name: str, count: int, images: Path, upstream: Registry) -> Outcome:
    offset = upstream.log.stat().st_size
    cpu = helpers_cpu([upstream.process])
    start = time.monotonic()
    nodes = run_nodes(net, work, name, [f"n{i}" for i in range(count)], images, [upstream.address], None)
    return summarize(name, nodes, start, upstream, offset, helpers_cpu([upstream.process]) - cpu)


def scenario_cache(net: Network, work: Path, name: str, count: int, images: Path, upstream: Registry) -> Outcome:
    """All nodes through a fresh pull-through cache; ``b-seeded``: node 0 first, then the rest."""
    address = f"{net.host_ip}:{free_port()}"
    with registry(work / f"{name}-cache", address, [], proxy=f"http://{upstream.address}") as cache:
        config = mirror_config(work / f"{name}-registries.toml", upstream.address, address)
        insecure = [upstream.address, address]
        offset = upstream.log.stat().st_size
        cpu = helpers_cpu([upstream.process])
        nodes = [launch(net, f"n{i}", work / name / f"n{i}", images, insecure, config) for i in range(count)]
        start = time.monotonic()
        waves = [nodes[:1], nodes[1:]] if name == "b-seeded" else [nodes]
        for wave in waves:
            go(wave)
            deadline = time.monotonic() + NODE_TIMEOUT
            for node in wave:
                finish(node, deadline)
        return summarize(name, nodes, start, upstream, offset, helpers_cpu([upstream.process, cache.process]) - cpu)


def wait_served(address: str, image_list: list[str], deadline: float) -> None:
    """Until the peer's catalog lists every image (it refreshes about once a second)."""
    for image in image_list:
        ref = normalize(image)
        url = f"http://{address}/v2/{ref.path}/manifests/{ref.tag}?ns={ref.domain}"
        while True:
            try:
                urllib.request.urlopen(urllib.request.Request(url, method="HEAD"), timeout=2)
                break
            except (urllib.error.URLError, OSError):
                if time.monotonic() > deadline:
                    raise RuntimeError(f"the peer never served {image}") from None
                time.sleep(0.05)


def start_serve(net: Network, name: str, store: Path, address: str, config: Path | None) -> subprocess.Popen[Any]:
    env = dict(os.environ)
    env.pop("GADGETSTORE_REGISTRIES_CONFIG", None)
    if config is not None:
        env["GADGETSTORE_REGISTRIES_CONFIG"] = str(config)  # [peers] there turns on by-digest serving
    profile = ["-m", "cProfile", "-o", os.environ["FLEET_PROFILE_SERVE"]] \
        if os.environ.get("FLEET_PROFILE_SERVE") and name == "n1" else []
    serve = subprocess.Popen([*net.prefix(name), PYTHON, *profile, "-m", "gadgetstore.cli.main", "--store", str(store),
                              "serve", "--listen", address, "-q"], stdin=subprocess.DEVNULL,
                             stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, cwd=ROOT, env=env)
    try:
        wait_http(f"http://{address}/v2/", time.monotonic() + 20, serve)
    except BaseException:
        stop(serve)
        raise
    return serve


def scenario_seeded_peers(net: Network, work: Path, count: int, images: Path, image_list: list[str],
                          upstream: Registry) -> Outcome:
    seed_store = work / "c-seed" / "n0"
    address = f"{net.node_ip(0)}:{free_port() if not net.namespaces else 5050}"
    serve = start_serve(net, "n0", seed_store, address, None)
    try:
        config = mirror_config(work / "c-seed-registries.toml", upstream.address, address)
        offset = upstream.log.stat().st_size
        cpu = helpers_cpu([upstream.process, serve])
        seed = launch(net, "n0", seed_store, images, [upstream.address], None)
        peers = [launch(net, f"n{i}", work / "c-seed" / f"n{i}", images, [upstream.address, address], config)
                 for i in range(1, count)]
        start = time.monotonic()
        go([seed])
        finish(seed, start + NODE_TIMEOUT)
        wait_served(address, image_list, time.monotonic() + 20)
        go(peers)
        for peer in peers:
            finish(peer, time.monotonic() + NODE_TIMEOUT)
        return summarize("c-seed", [seed, *peers], start, upstream, offset,
                         helpers_cpu([upstream.process, serve]) - cpu)
    finally:
        stop(serve)


def peers_config(path: Path, urls: list[str]) -> Path:
    path.write_text("[peers]\nurls = [" + ", ".join(f'"{u}"' for u in urls) + "]\nwait = 30\n")
    return path


def scenario_peers(net: Network, work: Path, count: int, images: Path, upstream: Registry) -> Outcome:
    """Every node serves its store and pulls at once; each blob comes from upstream via its owner only."""
    addresses = [f"{net.node_ip(i)}:{free_port() if not net.namespaces else 5050}" for i in range(count)]
    config = peers_config(work / "c-registries.toml", [f"http://{a}" for a in addresses])
    serves: list[subprocess.Popen[Any]] = []
    try:
        for i, address in enumerate(addresses):
            serves.append(start_serve(net, f"n{i}", work / "c" / f"n{i}", address, config))
        offset = upstream.log.stat().st_size
        cpu = helpers_cpu([upstream.process, *serves])
        # In namespaces each node finds itself by its address; on loopback it has to be told.
        nodes = [launch(net, f"n{i}", work / "c" / f"n{i}", images, [upstream.address], config,
                        None if net.namespaces else f"http://{address}") for i, address in enumerate(addresses)]
        start = time.monotonic()
        go(nodes)
        deadline = time.monotonic() + NODE_TIMEOUT
        for node in nodes:
            finish(node, deadline)
        if os.environ.get("FLEET_DEBUG"):
            for node in nodes:
                print(node.name, node.result["seconds"], node.result["failures"], file=sys.stderr)
        return summarize("c", nodes, start, upstream, offset, helpers_cpu([upstream.process, *serves]) - cpu)
    finally:
        for serve in serves:
            stop(serve)


# -- main -----------------------------------------------------------------------------------------


def report(outcomes: list[Outcome], unique: int, single: float, net: Network, rate: str | None,
           store_root: Path) -> str:
    """The table; the CPU floor is the slowest time the nodes' own CPU use allows on this machine."""
    where = "network namespaces on a bridge" if net.namespaces else \
        "loopback only (no namespaces: --no-netns, not root, or `ip netns` failed)"
    cores = os.cpu_count() or 1
    link = f"shaped to {rate}" if rate else "unshaped"
    lines = [f"nodes in {where}; stores under {store_root}; {cores} CPUs; upstream link {link}; "
             f"unique corpus bytes {unique}",
             "",
             "| scenario | nodes | upstream bytes | × unique | upstream requests | slowest node s | × single "
             "| mean node s | from mirrors/peers | node CPU s (sum) | CPU floor × single | helpers CPU s |",
             "|---|---|---|---|---|---|---|---|---|---|---|---|"]
    for o in outcomes:
        lines.append(f"| {o.scenario} | {o.nodes} | {o.upstream_bytes} | {o.upstream_bytes / unique:.2f} | "
                     f"{o.upstream_requests} | {o.slowest:.2f} | {o.slowest / single:.2f} | {o.mean:.2f} | "
                     f"{o.mirror_share:.0%} | {o.node_cpu:.1f} | {o.node_cpu / cores / single:.2f} | "
                     f"{o.helper_cpu:.1f} |")
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = parser.add_subparsers(dest="command")
    node = sub.add_parser("node", help=argparse.SUPPRESS)
    node.add_argument("--store", required=True)
    node.add_argument("--images", required=True)
    node.add_argument("--insecure", required=True)
    node.add_argument("--registries-config")
    node.add_argument("--peer-self")
    parser.add_argument("-n", "--nodes", type=int, default=8)
    parser.add_argument("-m", "--gadgets", type=int, default=50)
    parser.add_argument("--scenarios", default="a,b,b-seeded,c-seed,c",
                        help="comma-separated: a, b, b-seeded, c-seed, c")
    parser.add_argument("--seed", type=int, default=1)
    parser.add_argument("--single-runs", type=int, default=3, help="single-node runs; the median is the reference")
    parser.add_argument("--no-netns", action="store_true", help="use loopback even as root")
    parser.add_argument("--upstream-rate", help="tc rate of the upstream's link, e.g. 100mbit (namespaces only)")
    parser.add_argument("--json", type=Path, help="also write the outcomes here")
    parser.add_argument("--work-dir", type=Path, help="where stores and registries live (e.g. /dev/shm)")
    parser.add_argument("--keep", action="store_true", help="keep the work directory (stores, registry logs)")
    args = parser.parse_args()
    if args.command == "node":
        node_main(args)
        return
    if not 1 <= args.nodes <= 64 or not 1 <= args.gadgets <= 1000:
        parser.error("1 ≤ nodes ≤ 64 and 1 ≤ gadgets ≤ 1000")
    unknown = set(filter(None, args.scenarios.split(","))) - SCENARIOS
    if unknown:  # before the corpus is built, not minutes later
        parser.error(f"unknown scenario(s) {', '.join(sorted(unknown))} (choose from {', '.join(sorted(SCENARIOS))})")
    net = Network(namespaces=not args.no_netns and namespaces_available())
    if args.upstream_rate and not net.namespaces:
        parser.error("--upstream-rate needs network namespaces (run as root)")
    work = Path(tempfile.mkdtemp(prefix="fleet-", dir=args.work_dir))
    try:
        if net.namespaces:
            names = [(f"n{i}", net.node_ip(i)) for i in range(args.nodes)]
            net.setup([*names, ("up", UPSTREAM_IP)] if args.upstream_rate else names)
            if args.upstream_rate:
                net.shape("up", args.upstream_rate)
        up_ip = UPSTREAM_IP if args.upstream_rate else net.host_ip
        up_prefix = net.prefix("up") if args.upstream_rate else []
        with registry(work / "upstream", f"{up_ip}:{free_port()}", up_prefix) as upstream:
            image_list, unique = build_corpus(work, upstream.address, args.gadgets, args.seed)
            images = work / "images.txt"
            images.write_text("\n".join(image_list) + "\n")
            print(f"corpus: {len(image_list)} gadgets, {unique} unique bytes; work dir {work}", file=sys.stderr)
            scenario_direct(net, work, "warm-up", 1, images, upstream)  # untimed: the registry settles
            singles = sorted((scenario_direct(net, work, f"single{k}", 1, images, upstream)
                              for k in range(args.single_runs)), key=lambda o: o.slowest)
            single = singles[len(singles) // 2]  # the median run is the reference
            single.scenario = f"single (median of {args.single_runs}: " + \
                ", ".join(f"{o.slowest:.2f}" for o in singles) + " s)"
            outcomes = [single]
            for scenario in args.scenarios.split(","):
                if not scenario:
                    continue
                if scenario == "a":
                    outcomes.append(scenario_direct(net, work, "a", args.nodes, images, upstream))
                elif scenario in ("b", "b-seeded"):
                    outcomes.append(scenario_cache(net, work, scenario, args.nodes, images, upstream))
                elif scenario == "c-seed":
                    outcomes.append(scenario_seeded_peers(net, work, args.nodes, images, image_list, upstream))
                elif scenario == "c":
                    outcomes.append(scenario_peers(net, work, args.nodes, images, upstream))
                else:
                    parser.error(f"unknown scenario {scenario!r}")
                print(f"scenario {scenario} done", file=sys.stderr)
            text = report(outcomes, unique, single.slowest, net, args.upstream_rate, work)
            print(text)
            if args.json:
                args.json.write_text(json.dumps([o.__dict__ for o in outcomes], indent=2))
    finally:
        if net.namespaces:
            net.teardown()
        if not args.keep:
            shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    main()
