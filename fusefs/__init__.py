"""The read-only FUSE view of the store (``gadgetstore mount``).

Layers, each only using the ones below it::

    runner      mount/serve/unmount lifecycle, signals, background tasks
    adapter     pyfuse3 Operations: inodes in, attributes/bytes out, every error → FUSEError
    pulls       pull on access: which paths are images (pure), one fetch per image
    loader      the only disk access (worker threads): journal snapshots, documents, extra info,
                verified blob fds          blobfds: shared blob fds, non-blocking cached reads
    live        which kernel entries and attributes a new snapshot invalidates
    inodes      inode numbers and kernel lookup counts
    model       paths → nodes over a catalog plus loaded facts (pure; raises Missing for I/O)
    textfiles   the text the view generates: extra-info files, README, times (pure)
    catalog     journal snapshot → directory tree        facts / nodes: plain values
"""

# What the CLI's mount and pull-on-access commands use.
__all__ = ["pulls", "runner"]
