"""The text the view generates, as pure functions: extra-info files, the root's README, times.

Every generated text file ends with a newline, so ``cat`` leaves the prompt on a line of its own.
Files that are a blob's exact bytes (``index.json``, ``manifest.json``, ``program.bpf.o``, …) are
not generated and stay byte-exact, so ``sha256sum`` matches their digest.

``extra-info/`` holds, for each key of ``image inspect``:

* ``<key>``: readable: JSON pretty-printed as ``image inspect -o jsonpretty --extra-info <key>``
  prints it (one element per line), any other text as it is, with a final newline;
* ``raw/<key>``: the exact bytes ig stores (compact JSON, no final newline);
* ``programs/<name>.txt``: each program's disassembly (``Source`` in ``ebpf.programs``). A program's
  name is the first line of its listing (``ig_open_e:``), the C function ig and bpftool name it by,
  which never holds a ``/`` (its section, ``tracepoint/syscalls/…``, does). A listing without one is
  named after its section with each ``/`` turned into ``_``; a name already taken gets ``-2``, ``-3``….

The JSON and the ``tags`` table are what the CLI prints, made by the formatters the CLI uses
(:mod:`gadgetstore.engine.gojson`, :mod:`gadgetstore.engine.imagelist`: pure functions, no click).
"""

from __future__ import annotations

import re
from collections.abc import Iterable
from datetime import datetime

from gadgetstore.engine.analysis.entries import ExtraInfo
from gadgetstore.engine.gojson import go_json, go_unmarshal, plain_loads
from gadgetstore.engine.imagelist import format_rows
from gadgetstore.engine.images import ImageRow
from gadgetstore.engine.reference import OFFICIAL_PREFIX

JSON_TYPE = "application/json"
PROGRAMS_KEY = "ebpf.programs"
PROGRAMS_DIR = "programs"
RAW_DIR = "raw"
MAX_NAME_BYTES = 255
_TIME_RE = re.compile(r"(\d{4}-\d\d-\d\d[Tt ]\d\d:\d\d:\d\d)(?:\.(\d{1,9}))?([Zz]|[+-]\d\d:\d\d)")
_MAX_NS = (1 << 63) - 1


def safe_name(name: str) -> bool:
    """A name that is one directory entry: no ``/`` or NUL, not ``.``/``..``, at most 255 bytes."""
    return (bool(name) and name not in (".", "..") and "/" not in name and "\0" not in name
            and len(name.encode("utf-8", "replace")) <= MAX_NAME_BYTES)


def with_newline(data: bytes) -> bytes:
    return data if not data or data.endswith(b"\n") else data + b"\n"


def readable(content_type: str, content: bytes) -> bytes:
    """What ``extra-info/<key>`` shows: JSON as ``image inspect --extra-info KEY -o jsonpretty`` prints
    it (read back as Go reads it: keys sorted, numbers as float64), other text as it is."""
    if content_type == JSON_TYPE:
        try:
            value = go_unmarshal(content.decode("utf-8", errors="replace"))
        except ValueError:
            return with_newline(content)
        if isinstance(value, str):
            return (value + "\n").encode()
        return (go_json(value, pretty=True) + "\n").encode()
    return with_newline(content)


def program_files(programs_json: bytes) -> dict[str, bytes]:
    """``<name>.txt`` → the program's listing, for every program of an ``ebpf.programs`` value."""
    try:
        programs = plain_loads(programs_json.decode("utf-8", errors="replace"))
    except ValueError:
        return {}
    out: dict[str, bytes] = {}
    for program in programs if isinstance(programs, list) else []:
        source = program.get("Source") if isinstance(program, dict) else None
        if not isinstance(source, str):
            continue
        section = program.get("Section")
        base = _program_name(source, section if isinstance(section, str) else "")
        name, n = f"{base}.txt", 1
        while name in out:
            n += 1
            name = f"{base}-{n}.txt"
        out[name] = with_newline(source.encode("utf-8", errors="replace"))
    return out


def _program_name(source: str, section: str) -> str:
    label = source.split("\n", 1)[0].strip()
    for candidate in (label[:-1] if label.endswith(":") else "", section.replace("/", "_")):
        if candidate and not candidate.startswith(".") and safe_name(candidate + ".txt-999"):
            return candidate
    return "program"


def extra_info_files(info: ExtraInfo) -> dict[str, bytes]:
    """Every file of ``extra-info/``, by path relative to it (``raw/<key>``, ``programs/<name>.txt``)."""
    files: dict[str, bytes] = {}
    for key, (content_type, content) in sorted(info.items()):
        if not safe_name(key) or key in (PROGRAMS_DIR, RAW_DIR):
            continue
        files[key] = readable(content_type, content)
        files[f"{RAW_DIR}/{key}"] = content
    if PROGRAMS_KEY in files:
        for name, listing in program_files(info[PROGRAMS_KEY][1]).items():
            files[f"{PROGRAMS_DIR}/{name}"] = listing
    return files


def rfc3339_ns(text: str) -> int | None:
    """Nanoseconds since the epoch of an RFC 3339 time (``org.opencontainers.image.created``),
    fractions kept to the nanosecond; None when it is not one or cannot be a file time."""
    match = _TIME_RE.fullmatch(text.strip())
    if match is None:
        return None
    seconds, fraction, offset = match.groups()
    try:
        moment = datetime.fromisoformat(f"{seconds[:10]}T{seconds[11:]}{'+00:00' if offset in 'Zz' else offset}")
    except ValueError:
        return None
    ns = int(moment.timestamp()) * 1_000_000_000 + int((fraction or "").ljust(9, "0"))
    return ns if 0 <= ns <= _MAX_NS else None


def tags_text(rows: list[ImageRow]) -> bytes:
    """The root's ``tags``: ``image list --no-trunc`` as it prints to a file or a pipe."""
    return format_rows(rows, tty=False, no_trunc=True).encode()


def readme_text(top_names: Iterable[str], registries: Iterable[str], host_arch: str, store: str,
                pull_on_access: bool) -> bytes:
    """The root's README: what each top-level entry is, with the names this store has."""
    shorts = sorted(set(top_names) - set(registries))
    regs = sorted(registries)
    entries = [
        ("README", "this file"),
        ("tags", "every tag with its digest, one per line (as 'gadgetstore image list --no-trunc')"),
        ("<name>/<tag>/", f"official gadgets ({OFFICIAL_PREFIX}<name>) by short name"
                          + (f": {', '.join(shorts)}" if shorts else "")),
        ("<registry>/<repository>/<tag>/", "every image by its full name" + (f": {', '.join(regs)}" if regs else "")),
        (".store/by-digest/sha256/<hex>/", "every stored image, index or manifest, by digest"),
        (".store/blobs/sha256/<hex>", "every blob, byte for byte"),
    ]
    lines = [
        f"gadgetstore: a read-only view of the store {store}",
        "",
        *(f"{name:<32}{what}" for name, what in entries),
        "",
        f"An image directory holds digest, created, index.json and, for this host ({host_arch}),",
        "manifest.json, metadata.yaml, program.bpf.o and extra-info/: one file per 'image inspect' key",
        "(JSON pretty-printed), programs/<name>.txt with each program's disassembly, and raw/<key>,",
        "the bytes ig stores. arch/<arch>/ holds the same for every architecture of the image.",
        "Everything in an image directory carries the image's creation time (else when it was tagged);",
        "a directory above images, the time a tag below it last changed. 'ls -lt' orders by age.",
        "",
    ]
    if pull_on_access:
        lines += ["Pull on access is on: looking up an image that is not in the store, such as",
                  "trace_tcp/v0.48.0 or <registry>/<repository>/<tag>, pulls it first; a failure is",
                  "'No such file or directory', with the reason in the mount's log.", ""]
    return "\n".join(lines).encode()
