"""Run store operations in a separate process (for crash-point and multi-process tests).

usage: store_worker.py ROOT put-and-tag REF TEXT
       store_worker.py ROOT tag-many PREFIX COUNT
       store_worker.py ROOT ingest-same TEXT
       store_worker.py ROOT tag-deferred-then-die PREFIX COUNT
       store_worker.py ROOT compact
"""

from __future__ import annotations

import os
import signal
import sys
from pathlib import Path

from gadgetstore.engine.descriptor import Descriptor
from gadgetstore.engine.store import Store


def main() -> None:
    root, command, *args = sys.argv[1:]
    store = Store.open(Path(root))
    if command == "put-and-tag":
        ref, text = args
        with store.lease():
            digest = store.blobs.put(text.encode())
            with store.transaction() as txn:
                txn.tag(ref, Descriptor("application/octet-stream", digest, len(text.encode())))
    elif command == "tag-many":
        prefix, count = args[0], int(args[1])
        digest = store.blobs.put(prefix.encode())
        for i in range(count):
            with store.transaction() as txn:
                txn.tag(f"{prefix}-{i}", Descriptor("application/octet-stream", digest, len(prefix)))
    elif command == "tag-deferred-then-die":
        # Tags inside deferred_index_json(), then a kill -9 before the block can bring index.json up.
        prefix, count = args[0], int(args[1])
        digest = store.blobs.put(prefix.encode())
        with store.deferred_index_json():
            for i in range(count):
                with store.transaction() as txn:
                    txn.tag(f"{prefix}-{i}", Descriptor("application/octet-stream", digest, len(prefix)))
            print("DONE", flush=True)
            os.kill(os.getpid(), signal.SIGKILL)
    elif command == "ingest-same":
        # Bypass the "already present" shortcut so that both processes really race on the rename.
        data = args[0].encode() * 200_000
        for _ in range(5):
            with store.blobs.writer(None, len(data)) as writer:
                writer.write(data)
                writer.commit()
    elif command == "compact":
        store.compact()
    else:
        raise SystemExit(f"unknown command {command}")
    print("DONE", flush=True)


if __name__ == "__main__":
    main()
