"""Registry transfers: the trio HTTP client, auth, pull and push."""

# The modules other packages (the CLI, serve, signatures' registry side) may use.
__all__ = [
    "authfile", "blobfetch", "client", "errors", "inflight", "manifests", "mirrors", "mirrors_config", "paging",
    "pull", "push", "taglist", "tagsnapshot", "tasks",
]
