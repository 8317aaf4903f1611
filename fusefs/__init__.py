"""The read-only FUSE view of the store."""
