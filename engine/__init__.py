"""The gadgetstore engine: a content-addressed OCI store for gadget images.

The pure core (digests, references, journal records, descriptors) is kept apart from the
modules that touch the disk (blob store, journal file, store) and the network (registry).
"""

# The modules other packages may use; the others serve these (tests/test_package_api.py holds the line).
__all__ = [
    "archive", "asciidigits", "blobstore", "build", "descriptor", "digest", "errors", "fsck", "fsutil",
    "gojson", "gonumbers", "humanize", "imageinspect", "imagelist", "images", "layoutindex", "mediatypes",
    "paths", "reference", "removal", "resolve", "store", "userpath", "version",
]
