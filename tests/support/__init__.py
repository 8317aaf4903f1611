"""Helpers shared by test directories: real registries, synthetic gadget images, a fault proxy."""
