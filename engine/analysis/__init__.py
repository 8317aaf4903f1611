"""ELF, BTF and wasm analysis of gadget layers (pure)."""
