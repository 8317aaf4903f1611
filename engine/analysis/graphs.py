"""Mermaid flowchart and sequence diagrams of program-to-map accesses (IG ``ebpf2graph``).

A map access is inferred from helper calls: ``bpf_map_*_elem`` takes the map in r1 and
``bpf_perf_event_output`` in r2; the map name is the last reference loaded into that
register anywhere earlier in the program (IG never clears this tracking).
"""

from __future__ import annotations

from gadgetstore.engine.analysis.binreader import encode_text
from gadgetstore.engine.analysis.helpernames import helper_name
from gadgetstore.engine.analysis.spec import CollectionSpec

HIDDEN_MAPS = frozenset({".rodata", ".bss"})
MERGED_VERBS = ("Lookup", "Update", "Delete")

MapAccess = tuple[str, str]  # (map name, verb)


def program_accesses(collection: CollectionSpec) -> dict[str, list[MapAccess]]:
    """Ordered, de-duplicated ``(map, verb)`` accesses per program, programs sorted by name."""
    result: dict[str, list[MapAccess]] = {}
    for name in sorted(collection.programs, key=encode_text):
        last_reference: dict[int, str] = {}
        accesses: list[MapAccess] = []
        for instruction in collection.programs[name].instructions:
            if instruction.is_builtin_call():
                access = _access_of(helper_name(instruction.constant), last_reference)
                if access is not None and access[0] and access not in accesses:
                    accesses.append(access)
            if instruction.reference:
                last_reference[instruction.dst] = instruction.reference
        result[name] = accesses
    return result


def _access_of(helper: str, last_reference: dict[int, str]) -> MapAccess | None:
    if helper.startswith("FnMap") and helper.endswith("Elem"):
        return last_reference.get(1, ""), helper[len("FnMap"):-len("Elem")]
    if helper == "FnPerfEventOutput":
        return last_reference.get(2, ""), "EventOutput"
    return None


def flowchart(collection: CollectionSpec) -> str:
    """``flowchart LR``: every map node, then each program's merged edges and its node."""
    lines = ["flowchart LR"]
    map_names = sorted(spec.name for spec in collection.maps.values() if spec.name not in HIDDEN_MAPS)
    lines += [f'{name}[("{name}")]' for name in map_names]
    for program, accesses in program_accesses(collection).items():
        pending = dict.fromkeys(accesses, True)
        for access in accesses:
            if not pending[access]:
                continue
            map_name, verb = access
            merged = [candidate for candidate in MERGED_VERBS if pending.get((map_name, candidate))]
            if len(merged) > 1:
                for candidate in merged:
                    pending[(map_name, candidate)] = False
                label = "+".join(merged)
            else:
                label = verb
            lines.append(f'{program} -- "{label}" --> {map_name}')
        lines.append(f'{program}["{program}"]')
    return "".join(line + "\n" for line in lines)


def sequence(collection: CollectionSpec) -> str:
    """``sequenceDiagram`` with program and map participant boxes and one arrow per access."""
    accesses = program_accesses(collection)
    lines = ["sequenceDiagram", "box eBPF Programs"]
    lines += [f"participant {program}" for program in accesses]
    lines += ["end", "box eBPF Maps"]
    seen: list[str] = []
    for program_accesses_list in accesses.values():
        for map_name, _ in program_accesses_list:
            if map_name not in HIDDEN_MAPS and map_name not in seen:
                seen.append(map_name)
    lines += [f"participant {name}" for name in seen]
    lines.append("end")
    for program, program_accesses_list in accesses.items():
        lines += [f"{program}->>{map_name}: {verb}" for map_name, verb in program_accesses_list]
    return "".join(line + "\n" for line in lines)
