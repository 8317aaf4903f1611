"""``gadgetstore serve``: the local store as a read-only OCI distribution endpoint.

Names: an image stored as ``DOMAIN/PATH:TAG`` is served as ``PATH`` and as ``DOMAIN/PATH``;
signature tags (``sha256-<hex>.sig``) appear in the repository of the image they sign; a short
name shared by several domains is settled by ``?ns=`` (sent by containerd), else by ``ghcr.io``
(details in :mod:`.names`). Blobs are served only under a repository whose graph reaches them
(:mod:`.routes`). Pushes and deletes get 405 ``UNSUPPORTED``. There is no TLS and no auth:
listen on loopback, or put it behind something that adds them.

Using it (``gadgetstore serve`` listens on 127.0.0.1:5050)::

    ig run 127.0.0.1:5050/inspektor-gadget/gadget/trace_open:latest --insecure-registries 127.0.0.1:5050
    skopeo copy --all --preserve-digests --src-tls-verify=false \\
        docker://127.0.0.1:5050/inspektor-gadget/gadget/trace_open:latest oci:DIR:trace_open

    # containerd, /etc/containerd/certs.d/ghcr.io/hosts.toml
    server = "https://ghcr.io"
    [host."http://127.0.0.1:5050"]
      capabilities = ["pull", "resolve"]

    # containers-registries.conf(5)
    [[registry]]
    location = "ghcr.io"
    [[registry.mirror]]
    location = "127.0.0.1:5050"
    insecure = true

Modules: :mod:`.names` (the naming rule), :mod:`.catalog` (an immutable snapshot of
repositories, graphs and referrers), :mod:`.routes` (the API as a pure function), :mod:`.ranges`,
:mod:`.messages`, :mod:`.source` (refreshing the catalog), :mod:`.connections` (which connections
stay open), :mod:`.server` (h11 on trio, request slots, timeouts, the access log) and :mod:`.app`
(listen address, signals).
"""

from .app import DEFAULT_LISTEN, parse_listen, run
from .server import ServeConfig, Server

__all__ = ["DEFAULT_LISTEN", "ServeConfig", "Server", "parse_listen", "run"]
