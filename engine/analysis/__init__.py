"""ELF, BTF and wasm analysis of gadget layers (pure: bytes in, values out).

Public entry points are in :mod:`.extrainfo` (``analyze_ebpf``, ``analyze_wasm``); every
malformed input surfaces as :class:`gadgetstore.engine.errors.AnalysisError`.

Layering, bottom up:

- ``binreader``  bounds-checked integer reads and name decoding shared by all decoders
- ``btf`` / ``btfext``  ``.BTF`` (all 19 kinds) and ``.BTF.ext`` (func/line info, CO-RE relocations)
- ``elffile``  sections, symbols and REL entries through pyelftools, range-checked
- ``helpernames`` / ``insn``  BPF helper names; instruction decoding and cilium/ebpf text
- ``spec`` / ``collection`` / ``programs``  cilium/ebpf's ``LoadCollectionSpec`` rules (maps,
  variables, relocations, subprogram flattening)
- ``listing`` / ``graphs``  the ``Source`` listings and the mermaid diagrams IG derives from a spec
- ``wasm``  a small WebAssembly reader for the ``wasm.*`` keys
- ``wasmexec``  a bounded interpreter that runs the ``gadgetAPIVersion`` export (Go's included)
- ``datasources`` / ``operator_rules`` / ``dsmodel``  the data sources of ``--show-datasources``: the
  ebpf operator's tracers and iterators, then the fields ig's other operators add, on a model of
  ig's ``pkg/datasource``
"""

# The modules other packages may use: the analysis of a layer, its entries and the data sources.
__all__ = ["datasources", "entries", "extrainfo"]
