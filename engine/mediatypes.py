"""Media types and annotation keys of OCI and of Inspektor Gadget images."""

OCI_INDEX = "application/vnd.oci.image.index.v1+json"
OCI_MANIFEST = "application/vnd.oci.image.manifest.v1+json"
DOCKER_MANIFEST_LIST = "application/vnd.docker.distribution.manifest.list.v2+json"
DOCKER_MANIFEST = "application/vnd.docker.distribution.manifest.v2+json"
OCI_EMPTY = "application/vnd.oci.empty.v1+json"

INDEX_TYPES = frozenset({OCI_INDEX, DOCKER_MANIFEST_LIST})
MANIFEST_TYPES = frozenset({OCI_MANIFEST, DOCKER_MANIFEST})

GADGET_ARTIFACT = "application/vnd.gadget.v1+binary"
GADGET_CONFIG = "application/vnd.gadget.config.v1+yaml"
GADGET_EBPF = "application/vnd.gadget.ebpf.program.v1+binary"
GADGET_WASM = "application/vnd.gadget.wasm.program.v1+binary"
GADGET_BTFGEN = "application/vnd.gadget.btfgen.v1+binary"

ANNOTATION_REF_NAME = "org.opencontainers.image.ref.name"
ANNOTATION_CREATED = "org.opencontainers.image.created"

OCI_LAYOUT_VERSION = "1.0.0"
MAX_MANIFEST_BYTES = 4 * 1024 * 1024
