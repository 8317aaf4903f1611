"""The click command line: thin adapters over the engine."""
