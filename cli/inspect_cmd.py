"""``image inspect``: every extra-info key of an image, or one of them, optionally through JSONPath."""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Any

import click
import yaml
from jsonpath_ng.exceptions import JsonPathParserError
from jsonpath_ng.ext import parse as jsonpath_parse

from gadgetstore.engine import mediatypes as mt
from gadgetstore.engine import reference
from gadgetstore.engine.analysis.datasources import datasources_from_elf
from gadgetstore.engine.descriptor import Descriptor
from gadgetstore.engine.errors import GadgetStoreError, ImageNotFound
from gadgetstore.engine.gojson import go_json
from gadgetstore.engine.images import host_manifest
from gadgetstore.engine.inspect import MAX_LAYER_BYTES, image_extra_info
from gadgetstore.engine.resolve import is_digest_only, lookup, resolve
from gadgetstore.engine.store import Store

from . import goyaml
from .context import AppContext, pass_app, user_errors
from .deadline import CommandDeadline, timeout_option
from .goyaml import GoYamlError, yaml_to_json_object
from .output import INSPECT_OUTPUTS, output_option

_MULTI_MATCH = re.compile(r"\*|\.\.|\[\?|:")


class InspectError(GadgetStoreError):
    pass


def decode_value(content_type: str, content: bytes) -> Any:
    """What ``--extra-info KEY`` shows, as inspect.go decodes it: JSON with ``json.Unmarshal`` (every
    number a float64), YAML with sigs.k8s.io/yaml's ``YAMLToJSON`` into a map (go-yaml's YAML 1.1
    rules), both written with their keys sorted as Go writes a map; anything else as its text."""
    text = content.decode("utf-8", errors="replace")
    try:
        if content_type == "application/json":
            return sort_maps(json.loads(text, parse_int=float, parse_constant=_no_constant))
        if content_type == "text/yaml":
            return yaml_to_json_object(text)
    except GoYamlError as err:
        raise InspectError(str(err)) from None
    except ValueError as err:
        raise InspectError(f"unmarshalling JSON content: {err}") from None
    return text


def gadget_metadata(content: bytes) -> Any:
    """gadget.yaml as the datasources read it (ig unmarshals it into its metadata structs)."""
    try:
        return yaml.safe_load(content.decode("utf-8", errors="replace"))
    except yaml.YAMLError as err:
        raise InspectError(f"gadget.yaml is not valid YAML: {err}") from None


def _no_constant(name: str) -> Any:
    raise ValueError(f"invalid character {name[0]!r} looking for beginning of value")


def sort_maps(value: Any) -> Any:
    """Every object's keys sorted, as encoding/json writes a Go map."""
    if isinstance(value, dict):
        return {k: sort_maps(v) for k, v in sorted(value.items())}
    if isinstance(value, list):
        return [sort_maps(v) for v in value]
    return value


def apply_jsonpath(value: Any, expression: str) -> Any:
    """Evaluate ``$`` + EXPR; wildcards, filters and slices yield lists, plain paths one value."""
    try:
        matches = jsonpath_parse("$" + expression).find(value)
    except (JsonPathParserError, Exception) as err:  # the library raises bare Exceptions on lexing
        raise InspectError(f"invalid JSONPath {expression!r}: {err}") from None
    if not matches:
        raise InspectError(f"path {expression!r} not found")
    if _MULTI_MATCH.search(expression):
        return [m.value for m in matches]
    return matches[0].value


def resolve_or_pull(store: Store, image: str, pull: str, authfile: Path | None,
                    insecure_registries: tuple[str, ...], deadline: CommandDeadline | None = None) -> Descriptor:
    """ig's ``--pull`` policy: ``missing`` pulls only when the store lacks the image.

    A digest found in the store is never pulled again under ``missing`` (``name@sha256:…`` included),
    a digest alone (``sha256:…``, a prefix) is never pulled, and a pull by digest keeps the image
    untagged: inspecting never invents a tag.
    """
    found = lookup(store, image)
    if is_digest_only(image):
        if pull == "always":
            raise click.UsageError(f"--pull always needs a name to pull from: give NAME@DIGEST, not {image}")
        if found is None:
            raise ImageNotFound(f"image {image!r} not found in the store (a digest alone cannot be pulled: "
                                "give NAME@DIGEST)")
        return found.descriptor
    if pull == "always" or (found is None and pull == "missing"):
        # the registry stack is only loaded when a pull is needed
        from gadgetstore.engine.registry.client import TransferOptions
        from gadgetstore.engine.registry.mirrors_config import load as load_registries
        from gadgetstore.engine.registry.pull import pull_image

        deadline = deadline or CommandDeadline(None)
        insecure = frozenset(v.strip() for value in insecure_registries for v in value.split(",") if v.strip())
        options = TransferOptions(authfile=authfile, insecure_registries=insecure, registries=load_registries(),
                                  in_flight=deadline.in_flight)
        click.echo(f"Pulling {reference.normalize(image)}...", err=True)
        deadline.run(pull_image, store, image, options)
        store.refresh()
    return resolve(store, image).descriptor


def render(value: Any, output: str) -> str:
    """inspect.go's output switch: a string as it is (one newline added), else ``-o``'s encoding."""
    if isinstance(value, str):
        return value + "\n"
    if output == "yaml":
        try:
            return goyaml.marshal(value)
        except GoYamlError as err:
            raise InspectError(f"marshalling image and extra info to YAML: {err}") from None
    return go_json(value, pretty=output == "jsonpretty") + "\n"


def datasources(metadata: Any, elf: bytes | None = None) -> list[dict[str, Any]]:
    """ig's datasources: the eBPF layer's tracers/iterators with gadget.yaml merged in, then gadget.yaml-only ones.

    Fields that ig's runtime operators add (enum/stack formatters, k8s and runtime enrichment) need a
    running gadget and are not known offline.
    """
    out: list[dict[str, Any]] = datasources_from_elf(elf, metadata) if elf is not None else []
    from_elf = {str(source["name"]).lower() for source in out}  # ig looks gadget.yaml up case-insensitively
    declared = metadata.get("datasources") if isinstance(metadata, dict) else None
    for name, spec in sorted((declared or {}).items()):
        if str(name).lower() in from_elf:
            continue
        spec = spec or {}
        fields = []
        for index, (field_name, field_spec) in enumerate(sorted((spec.get("fields") or {}).items())):
            field: dict[str, Any] = {"name": field_name, "fullName": field_name, "index": index}
            annotations = (field_spec or {}).get("annotations")
            if annotations:
                field["annotations"] = {k: str(v) for k, v in annotations.items()}
            fields.append(field)
        source: dict[str, Any] = {"name": name, "fields": fields}
        if spec.get("annotations"):
            source["annotations"] = {k: str(v) for k, v in spec["annotations"].items()}
        out.append(source)
    return sorted(out, key=lambda source: str(source["name"]))


@click.command("inspect")
@click.argument("image")
@output_option(INSPECT_OUTPUTS, "jsonpretty")
@click.option("--extra-info", "extra_info", default="", help="Show only this extra-info key.")
@click.option("--jsonpath", default="", help="JSONPath expression applied to --extra-info or --show-datasources.")
@click.option("--show-datasources", is_flag=True,
              help="Show the gadget's datasources: from the eBPF layer's BTF (tracers, map iterators, "
                   "iterators) with gadget.yaml's annotations merged in. Fields that ig's runtime "
                   "operators add (k8s and runtime enrichment, enum/stack formatting) are not known offline.")
@click.option("--arch", default=None, help="Architecture to inspect (default: this host's).")
@click.option("--pull", type=click.Choice(["always", "missing", "never"]), default="missing", show_default=True,
              help="When to pull the image from its registry first.")
@click.option("--authfile", type=click.Path(dir_okay=False, path_type=Path), help="Auth file for the pull.")
@click.option("--insecure-registries", multiple=True, metavar="HOST[:PORT],...",
              help="Registries reached over plain HTTP and without credentials (exact host:port).")
@timeout_option
@pass_app
@user_errors
def inspect_cmd(app: AppContext, image: str, output: str, extra_info: str, jsonpath: str,
                show_datasources: bool, arch: str | None, pull: str, authfile: Path | None,
                insecure_registries: tuple[str, ...], timeout: float | None) -> None:
    """Inspect a gadget image: metadata, maps, programs, flowcharts and more."""
    deadline = CommandDeadline(timeout)
    if extra_info and show_datasources:
        raise click.UsageError("--extra-info and --show-datasources are mutually exclusive")
    store = app.store()
    root = resolve_or_pull(store, image, pull, authfile, insecure_registries, deadline)
    manifest = host_manifest(store, root, arch)
    info = image_extra_info(store, image, manifest)
    value: Any
    if show_datasources:
        metadata = gadget_metadata(info["oci.metadata"][1]) if "oci.metadata" in info else {}
        layer = manifest.layer(mt.GADGET_EBPF)
        elf = store.blobs.read(layer.digest, max_size=MAX_LAYER_BYTES) if layer is not None else None
        value = datasources(metadata, elf)
        if jsonpath:
            value = sort_maps(value)  # ig runs JSONPath over the datasources' JSON read back as maps
    elif extra_info:
        if extra_info not in info:
            raise InspectError(f"extra info {extra_info!r} not found (known: {', '.join(sorted(info))})")
        content_type, content = info[extra_info]
        value = decode_value(content_type, content)
        if jsonpath and content_type not in ("application/json", "text/yaml"):
            raise InspectError(f"--jsonpath needs a JSON or YAML value; {extra_info} is {content_type}")
    else:
        if jsonpath:
            raise click.UsageError("--jsonpath needs --extra-info or --show-datasources")
        value = {key: {"content": content.decode("utf-8", errors="replace"), "contentType": content_type}
                 for key, (content_type, content) in sorted(info.items())}
    if jsonpath:
        value = apply_jsonpath(value, jsonpath)
    click.echo(render(value, output), nl=False)
