"""Public API: the ``ebpf.*`` and ``wasm.*`` extra-info entries of ``ig image inspect``.

Each entry is ``(contentType, content)`` exactly as IG's ``GadgetInspectAddendum`` holds it.
IG emits maps, programs and variables in Go map order (random per run); we sort each list
by name (byte order) so the output is stable. Everything here is pure: bytes in, values out.
"""

from __future__ import annotations

from gadgetstore.engine import gojson
from gadgetstore.engine.analysis.binreader import encode_text
from gadgetstore.engine.analysis.collection import load_collection
from gadgetstore.engine.analysis.entries import ExtraInfo
from gadgetstore.engine.analysis.graphs import HIDDEN_MAPS, flowchart, sequence
from gadgetstore.engine.analysis.listing import InstructionTexts, format_source, format_with_relocations
from gadgetstore.engine.analysis.spec import map_type_name
from gadgetstore.engine.analysis.wasm import SUPPORTED_API_VERSION, parse_wasm
from gadgetstore.engine.analysis.wasmexec import gadget_api_version
from gadgetstore.engine.errors import AnalysisError

JSON = "application/json"
MERMAID = "text/mermaid"
PLAIN = "text/plain"

def go_json(value: object) -> bytes:
    """``json.Marshal`` output as content bytes: compact, HTML-safe, one ``\\ufffd`` per invalid
    UTF-8 byte, key order kept (see :mod:`gadgetstore.engine.gojson`)."""
    return gojson.go_json(value).encode("utf-8")


def _go_slice(items: list[object]) -> object:
    """A nil Go slice marshals as ``null``; IG's lists start nil and are appended to."""
    return items if items else None


def analyze_ebpf(elf: bytes) -> ExtraInfo:
    """Compute ``ebpf.sections/maps/programs/variables/flowchart/sequence`` for one ELF layer.

    Raises :class:`AnalysisError` (and nothing else) when the ELF, BTF or BTF.ext is malformed.
    """
    collection = load_collection(elf)
    text_of = InstructionTexts()
    maps: list[object] = [{"Name": key, "Type": map_type_name(spec.type)}
                          for key, spec in sorted(collection.maps.items(), key=lambda item: encode_text(item[0]))
                          if key not in HIDDEN_MAPS]
    programs: list[object] = [{"Section": program.section,
                               "Source": format_source(program.instructions, text_of),
                               "SourceWithRelocation": format_with_relocations(program.instructions,
                                                                               collection.btf, text_of)}
                              for program in collection.programs.values()]
    variables: list[object] = [{"Name": variable.name, "Offset": variable.offset, "Size": variable.size,
                                "Map": variable.section}
                               for variable in sorted(collection.variables, key=lambda v: encode_text(v.name))]
    return {
        "ebpf.sections": (JSON, go_json(collection.section_names)),
        "ebpf.maps": (JSON, go_json(_go_slice(maps))),
        "ebpf.programs": (JSON, go_json(_go_slice(programs))),
        "ebpf.variables": (JSON, go_json(_go_slice(variables))),
        "ebpf.flowchart": (MERMAID, encode_text(flowchart(collection))),
        "ebpf.sequence": (MERMAID, encode_text(sequence(collection))),
    }


def analyze_wasm(wasm: bytes) -> ExtraInfo:
    """Compute ``wasm.gadgetAPIVersion`` and ``wasm.upcalls`` for one wasm layer.

    ``wasm.gadgetAPIVersion`` is present only when :mod:`.wasmexec` can run the export without
    imports within its bounds; IG would refuse any value but 1, and so do we.
    """
    module = parse_wasm(wasm)
    info: ExtraInfo = {"wasm.upcalls": (JSON, go_json(module.upcalls()))}
    version = gadget_api_version(module)
    if version is not None:
        if version != SUPPORTED_API_VERSION:
            raise AnalysisError(f"wasm code section: unsupported gadget API version {version} "
                                f"(IG supports {SUPPORTED_API_VERSION}) at byte offset 8")
        info["wasm.gadgetAPIVersion"] = (PLAIN, str(version).encode("ascii"))
    return info
