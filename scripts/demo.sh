#!/usr/bin/env bash
# The main job end to end on a local default: a store in ./demo-work, the real ig export imported,
# listed and inspected. Run through `make demo`, which installs what it needs first.
set -euo pipefail
cd "$(dirname "$0")/.."
GS="$PWD/.venv/bin/gadgetstore"
WORK="$PWD/demo-work"
FIXTURE="${GADGETSTORE_DEMO_TAR:-$PWD/../shared/fixtures/ig/trace_open.tar}"
rm -rf "$WORK" && mkdir -p "$WORK"
export GADGETSTORE_ROOT="$WORK/store"

step() { printf '\n\033[1m$ %s\033[0m\n' "$*"; "$@"; }

step "$GS" image import "$FIXTURE"
step "$GS" image list --no-trunc
step "$GS" image inspect trace_open --extra-info oci.manifest --jsonpath '.layers[*].mediaType'
step "$GS" image export trace_open "$WORK/trace_open.tar.zst"
step "$GS" fsck
