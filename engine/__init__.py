"""The gadgetstore engine: a content-addressed OCI store for gadget images.

The pure core (digests, references, journal records, descriptors) is kept apart from the
modules that touch the disk (blob store, journal file, store) and the network (registry).
"""
