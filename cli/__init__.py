"""The click command line: thin adapters over the engine."""

# Nothing but the entry point: no other package builds on the command line.
__all__ = ["main"]
