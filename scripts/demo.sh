#!/usr/bin/env bash
# The main job end to end, on a local default, inside ./demo-work:
#   build a gadget from examples/trace_demo, serve it from a local docker-registry on 127.0.0.1,
#   push it there, pull it into a second store (another "node"), inspect it, mount that store with
#   FUSE and show what is inside, then tidy up. Run through `make demo`, which installs what it needs.
set -euo pipefail
cd "$(dirname "$0")/.."
GS="$PWD/.venv/bin/gadgetstore"
PY="$PWD/.venv/bin/python"
WORK="$PWD/demo-work"
rm -rf "$WORK" && mkdir -p "$WORK"
PORT=$("$PY" -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])')
REGISTRY="127.0.0.1:$PORT"
IMAGE="$REGISTRY/gadgets/trace_demo:v1"
MNT="$WORK/mnt"

cleanup() {
    if mountpoint -q "$MNT" 2>/dev/null; then "$GS" umount "$MNT" || fusermount3 -u -z "$MNT" || true; fi
    [ -n "${REGISTRY_PID:-}" ] && kill "$REGISTRY_PID" 2>/dev/null || true
}
trap cleanup EXIT
step() { printf '\n\033[1m$ %s\033[0m\n' "$*"; "$@"; }

cat > "$WORK/registry.yml" <<YAML
version: 0.1
log: {level: error}
storage: {filesystem: {rootdirectory: $WORK/registry-data}}
http: {addr: $REGISTRY}
YAML
docker-registry serve "$WORK/registry.yml" > "$WORK/registry.log" 2>&1 &
REGISTRY_PID=$!
for _ in $(seq 50); do curl -fs "http://$REGISTRY/v2/" >/dev/null && break; sleep 0.1; done
echo "docker-registry listening on $REGISTRY (pid $REGISTRY_PID)"

# Node 1: build and push.
export GADGETSTORE_ROOT="$WORK/node1"
step "$GS" image build -t "$IMAGE" examples/trace_demo
step "$GS" image push --insecure-registries "$REGISTRY" "$IMAGE"

# Node 2: pull, list, inspect.
export GADGETSTORE_ROOT="$WORK/node2"
step "$GS" image pull --insecure-registries "$REGISTRY" "$IMAGE"
FIXTURE="$(dirname "$PWD")/shared/fixtures/ig/trace_open.tar"
if [ -f "$FIXTURE" ]; then
    step "$GS" image import "$FIXTURE"   # a real `ig image export`, for comparison
else
    echo "skipping the trace_open part: $FIXTURE (a real \`ig image export\`) is not beside this checkout"
fi
step "$GS" image list --no-trunc
step "$GS" image inspect "$IMAGE" --extra-info ebpf.maps -o json
step "$GS" image inspect "$IMAGE" --extra-info ebpf.flowchart

# Node 2: browse the store through FUSE.
mkdir -p "$MNT"
step "$GS" mount --background "$MNT"
step ls "$MNT" "$MNT/$REGISTRY/gadgets/trace_demo/v1"
step cat "$MNT/$REGISTRY/gadgets/trace_demo/v1/extra-info/ebpf.maps"
if [ -f "$FIXTURE" ]; then
    step ls "$MNT/trace_open/latest" "$MNT/trace_open/latest/extra-info"
    step cat "$MNT/trace_open/latest/extra-info/ebpf.maps"
fi
step "$GS" umount "$MNT"
step "$GS" fsck
