"""The results table of the ig gadget builds, one row per gadget in the order of ig's gadgets/Makefile."""

from __future__ import annotations

from dataclasses import dataclass, field


@dataclass
class Row:
    gadget: str
    kind: str
    archs: dict[str, str] = field(default_factory=dict)
    """amd64/arm64 -> "ok" or what failed."""
    same_as_ig: str = "—"
    notes: list[str] = field(default_factory=list)


RESULTS: dict[str, Row] = {}


def results_table() -> str:
    lines = [
        "| gadget | C/wasm | amd64 | arm64 | same sections/maps/programs as ig's flags | notes |",
        "|---|---|---|---|---|---|",
    ]
    for row in RESULTS.values():
        lines.append(
            f"| {row.gadget} | {row.kind} | {row.archs.get('amd64', '—')} | {row.archs.get('arm64', '—')} "
            f"| {row.same_as_ig} | {'; '.join(row.notes)} |"
        )
    return "\n".join(lines)
