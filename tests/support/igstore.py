"""Stores as ig leaves them, and ig's ``image list`` over a store: written from ig's and oras-go's code.

Nothing here uses gadgetstore's own index.json code, so that a test compares the product with ig
and not with itself. What each piece follows (ig v0.55.0-55, oras-go v2.6.2, image-spec v1.1.1):

- the layout: ig's ``newLocalOciStore`` (pkg/oci/local_oci_store.go) makes the store directory
  0700 and locks ``index.json.lock`` (gofrs/flock opens it ``O_RDONLY|O_CREAT``, 0600; it stays
  empty); oras ``NewWithContext`` (content/oci/oci.go) makes ``blobs/`` and ``oci-layout``
  (``{"imageLayoutVersion":"1.0.0"}``, no newline) and, when missing, the 88-byte empty index.json;
  oras ``Storage.ingest`` writes each blob into ``ingest/`` (0755) and renames it into
  ``blobs/sha256/`` read-only (0444).
- index.json: oras ``Store.saveIndex`` writes ``json.Marshal(ocispec.Index)``: compact, no
  newline; first one entry per tag (the tagged descriptor plus ``ref.name``), then one entry
  without ``ref.name`` per manifest that was pushed and has no tag (ig's pull pushes every
  manifest it copies: the per-arch ones, with the descriptor their index lists). Fields in
  ``ocispec.Descriptor`` order, annotation keys sorted, ``<``, ``>``, ``&`` escaped; an empty
  list is ``null``; top-level ``annotations`` survive.
- ig's list: ``getGadgetImages`` (pkg/oci/oci.go) over oras ``loadIndex`` and ``listTags``
  (content/oci/readonlyoci.go); ``cmd/common/image/list.go`` prints piped rows joined by spaces.
"""

from __future__ import annotations

import hashlib
import json
import os
import platform
import tempfile
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

INDEX = "application/vnd.oci.image.index.v1+json"
REF_NAME = "org.opencontainers.image.ref.name"
CREATED = "org.opencontainers.image.created"
LAYOUT = b'{"imageLayoutVersion":"1.0.0"}'
OFFICIAL = "ghcr.io/inspektor-gadget/gadget/"


def go_json(value: Any) -> bytes:
    """``json.Marshal`` of a value whose keys are already in Go's order."""
    text = json.dumps(value, separators=(",", ":"), ensure_ascii=False)
    return text.replace("<", "\\u003c").replace(">", "\\u003e").replace("&", "\\u0026").encode()


def go_descriptor(desc: dict[str, Any]) -> dict[str, Any]:
    """An ``ocispec.Descriptor`` decoded from ``desc``, keys in the order ``json.Marshal`` writes them."""
    out: dict[str, Any] = {"mediaType": desc.get("mediaType", ""), "digest": desc["digest"], "size": desc["size"]}
    if desc.get("annotations"):
        out["annotations"] = dict(sorted(desc["annotations"].items()))
    if desc.get("platform"):
        plat = desc["platform"]
        out["platform"] = {"architecture": plat.get("architecture", ""), "os": plat.get("os", "")}
        if plat.get("variant"):
            out["platform"]["variant"] = plat["variant"]
    if desc.get("artifactType"):
        out["artifactType"] = desc["artifactType"]
    return out


@dataclass
class IgStore:
    """An OCI layout as ig writes it; :meth:`save` writes index.json as oras does (in place)."""

    root: Path
    entries: list[dict[str, Any]] = field(default_factory=list)
    annotations: dict[str, str] | None = None  # index.json's own, which ig's saves keep

    @classmethod
    def create(cls, root: Path) -> IgStore:
        root.mkdir(mode=0o700)
        os.chmod(root, 0o700)
        os.close(os.open(root / "index.json.lock", os.O_RDONLY | os.O_CREAT, 0o600))
        (root / "blobs" / "sha256").mkdir(parents=True)
        (root / "ingest").mkdir()
        (root / "oci-layout").write_bytes(LAYOUT)
        store = cls(root)
        store.save()
        return store

    def put(self, data: bytes) -> str:
        """Write a blob as oras does: into ingest/, then read-only, then renamed into blobs/."""
        digest = "sha256:" + hashlib.sha256(data).hexdigest()
        fd, temp = tempfile.mkstemp(dir=self.root / "ingest", prefix=f"{digest[7:]}_")
        with os.fdopen(fd, "wb") as out:
            out.write(data)
        os.chmod(temp, 0o444)
        os.rename(temp, self.blob_path(digest))
        return digest

    def blob_path(self, digest: str) -> Path:
        return self.root / "blobs" / "sha256" / digest.removeprefix("sha256:")

    def _tagged_count(self) -> int:
        return sum(1 for entry in self.entries if REF_NAME in (entry.get("annotations") or {}))

    def pull(self, blobs: dict[str, bytes], root: dict[str, Any], ref: str) -> None:
        """What ``ig image pull REF`` into this store leaves: every blob, the tagged root as the
        registry describes it (mediaType, digest, size), and an untagged entry per manifest it listed."""
        for data in blobs.values():
            self.put(data)
        tagged = {"mediaType": root["mediaType"], "digest": root["digest"], "size": root["size"],
                  "annotations": {REF_NAME: ref}}
        self.entries.insert(self._tagged_count(), tagged)
        self.add_untagged(json.loads(blobs[root["digest"]])["manifests"])
        self.save()

    def add_untagged(self, descs: list[dict[str, Any]]) -> None:
        """One entry per digest (oras's tag map is keyed by it): a manifest two platforms share
        (a gadget without layers) gets one, with the descriptor of whichever push came first."""
        present = {entry["digest"] for entry in self.entries}
        for desc in descs:
            if desc["digest"] not in present:
                self.entries.append(go_descriptor(desc))
                present.add(desc["digest"])

    def build_untagged(self, blobs: dict[str, bytes], root: dict[str, Any]) -> None:
        """What ``ig image build DIR`` without ``-t`` leaves: the root index with its annotations
        and each per-arch manifest, all untagged (captures/ig-build-untagged.index.json)."""
        for data in blobs.values():
            self.put(data)
        index = json.loads(blobs[root["digest"]])
        self.add_untagged([*index["manifests"], {**root, "annotations": index.get("annotations")}])
        self.save()

    def index_bytes(self) -> bytes:
        index: dict[str, Any] = {"schemaVersion": 2, "mediaType": INDEX, "manifests": self.entries or None}
        if self.annotations:
            index["annotations"] = dict(sorted(self.annotations.items()))
        return go_json(index)

    def save(self) -> None:
        """``os.WriteFile(index.json, …, 0666)``: truncated and written in place."""
        fd = os.open(self.root / "index.json", os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o666)
        with os.fdopen(fd, "wb") as out:
            out.write(self.index_bytes())


def host_goarch() -> str:
    machine = platform.machine().lower()
    return {"x86_64": "amd64", "aarch64": "arm64"}.get(machine, machine)


def _split_ig_domain(name: str) -> str:
    """ig's ``normalizeImageName`` (``SplitIGDomain``, then ``TagNameOnly``) for names without a digest."""
    first, _, rest = name.partition("/")
    if not rest or ("." not in first and ":" not in first and first != "localhost" and first.lower() == first):
        domain, remainder = "ghcr.io", name
    else:
        domain, remainder = first, rest
    if domain == "ghcr.io" and "/" not in remainder:
        remainder = "inspektor-gadget/gadget/" + remainder
    last = remainder.rsplit("/", 1)[-1]
    return f"{domain}/{remainder}" + ("" if ":" in last else ":latest")


def _name_and_tag(ref: str) -> tuple[str, str]:
    """docker ``reference.Parse``: the name (``Name()``) and the tag (``latest`` when none)."""
    name = ref.split("@", 1)[0]
    last = name.rsplit("/", 1)[-1]
    if ":" in last:
        return name[: name.rfind(":")], last.split(":", 1)[1]
    return name, "latest"


def ig_list(root: Path, goarch: str | None = None) -> str:
    """``ig image list`` piped (as ``--no-trunc``) over the layout at ``root``.

    oras ``loadIndex``: every entry tags its digest (without ``ref.name``), an entry with
    ``ref.name`` also tags that name; the last one wins. ``listTags``: every name that is not a
    digest, sorted. ig ``getGadgetImageDescriptor`` per name: the root must be an image index, its
    manifest for GOARCH is read for ``created``; a missing blob (oras ErrNotFound) skips the name
    without a word, as do names ig's normalisation does not find (signature tags).
    """
    goarch = goarch or host_goarch()
    index = json.loads((root / "index.json").read_bytes())
    tags: dict[str, dict[str, Any]] = {}
    for desc in index.get("manifests") or []:
        plain = dict(desc)
        plain["annotations"] = {k: v for k, v in (desc.get("annotations") or {}).items() if k != REF_NAME}
        tags[desc["digest"]] = plain
        name = (desc.get("annotations") or {}).get(REF_NAME)
        if name:
            tags[name] = desc
    rows = ["REPOSITORY TAG DIGEST CREATED"]
    for full in sorted(t for t, d in tags.items() if t != d["digest"]):
        repository, tag = _name_and_tag(full)
        target = tags.get(_split_ig_domain(full))
        if target is None or target["mediaType"] != INDEX:
            continue
        try:
            image_index = json.loads((root / "blobs" / "sha256" / target["digest"][7:]).read_bytes())
            chosen = next(m for m in image_index["manifests"]
                          if (m.get("platform") or {}).get("architecture") == goarch)
            manifest = json.loads((root / "blobs" / "sha256" / chosen["digest"][7:]).read_bytes())
        except (FileNotFoundError, StopIteration):
            continue
        created = (manifest.get("annotations") or {}).get(CREATED, "")
        rows.append(" ".join([repository.removeprefix(OFFICIAL), tag, tags[full]["digest"], created]))
    return "\n".join(rows) + "\n"


def tree(root: Path) -> dict[str, tuple[int, int, bytes | None, int, int]]:
    """Every entry under ``root`` (itself included): (mode, size, content of a file we may read,
    mtime_ns, ctime_ns). Equal trees mean nothing was added, removed, written, touched or chmod'ed."""
    out: dict[str, tuple[int, int, bytes | None, int, int]] = {}
    for path in [root, *sorted(root.rglob("*"))]:
        st = path.lstat()
        content = None
        if path.is_file() and not path.is_symlink() and os.access(path, os.R_OK):
            content = path.read_bytes()
        out[str(path.relative_to(root))] = (st.st_mode, st.st_size, content, st.st_mtime_ns, st.st_ctime_ns)
    return out


CAPTURED = Path(__file__).resolve().parents[1] / "data" / "ig-pulled-store"
"""What ig v0.55.0-55 left after ``ig image pull 127.0.0.1:55841/x:v1`` into an empty store: the
suite's trace_demo example (built with SOURCE_DATE_EPOCH=1700000000, pushed to a local registry),
index.json exactly as ig wrote it and the six blobs. git keeps no modes: :func:`captured_store`
lays it out with ig's."""
CAPTURED_REF = "127.0.0.1:55841/x:v1"


def captured_store(root: Path) -> IgStore:
    """ig's own store (:data:`CAPTURED`) at ``root``, with the modes ig gives it."""
    store = IgStore.create(root)
    for blob in sorted((CAPTURED / "blobs" / "sha256").iterdir()):
        store.put(blob.read_bytes())
    data = (CAPTURED / "index.json").read_bytes()
    store.entries = json.loads(data)["manifests"]
    store.save()
    assert (root / "index.json").read_bytes() == data
    return store


def captured_blobs() -> dict[str, bytes]:
    return {"sha256:" + blob.name: blob.read_bytes() for blob in (CAPTURED / "blobs" / "sha256").iterdir()}


def other_gadget(name: str = "other") -> tuple[dict[str, bytes], dict[str, Any]]:
    """A small gadget image (index → amd64 and arm64 manifests → config, layer) to build untagged
    beside ig's captured one: its blobs by digest and its root descriptor."""
    blobs: dict[str, bytes] = {}

    def put(data: bytes) -> dict[str, Any]:
        digest = "sha256:" + hashlib.sha256(data).hexdigest()
        blobs[digest] = data
        return {"digest": digest, "size": len(data)}

    annotations = {CREATED: "2024-01-02T03:04:05Z", "org.opencontainers.image.title": name}
    config = {"mediaType": "application/vnd.gadget.config.v1+yaml", **put(f"name: {name}\n".encode())}
    children = []
    for arch in ("amd64", "arm64"):
        layer = {"mediaType": "application/vnd.gadget.ebpf.program.v1+binary", **put(f"{name} {arch}".encode())}
        manifest = go_json({"schemaVersion": 2, "artifactType": "application/vnd.gadget.v1+binary",
                            "config": config, "layers": [layer], "annotations": annotations})
        children.append({"mediaType": "application/vnd.oci.image.manifest.v1+json", **put(manifest),
                         "annotations": annotations, "platform": {"architecture": arch, "os": "linux"}})
    index = go_json({"schemaVersion": 2, "mediaType": INDEX, "manifests": children, "annotations": annotations})
    return blobs, {"mediaType": INDEX, **put(index)}


def entry_texts(root: Path) -> list[str]:
    """index.json's entries, each as the exact text in the file (ig writes them compact)."""
    text = (root / "index.json").read_text()
    if '"manifests":[' not in text:
        return []
    body = text[text.index('"manifests":[') + len('"manifests":['):]
    out, depth, start, in_string, escaped = [], 0, 0, False, False
    for i, char in enumerate(body):
        if in_string:
            in_string, escaped = (char != '"' or escaped), (char == "\\" and not escaped)
            continue
        if char == '"':
            in_string = True
        elif char == "{":
            depth += 1
            start = i if depth == 1 else start
        elif char == "}":
            depth -= 1
            if depth == 0:
                out.append(body[start:i + 1])
        elif char == "]" and depth == 0:
            break
    return out
