"""``image inspect``: every extra-info key of an image, or one of them, optionally through JSONPath."""

from __future__ import annotations

import functools
import re
from pathlib import Path
from typing import Any

import click

from gadgetstore.engine import reference
from gadgetstore.engine.descriptor import Descriptor
from gadgetstore.engine.errors import GadgetStoreError, ImageNotFound
from gadgetstore.engine.gojson import go_unmarshal
from gadgetstore.engine.imageinspect import image_datasources, image_entries
from gadgetstore.engine.images import host_manifest
from gadgetstore.engine.resolve import is_digest_only, lookup, resolve
from gadgetstore.engine.store import Store

from .context import AppContext, pass_app, user_errors
from .deadline import CommandDeadline, timeout_option
from .output import INSPECT_OUTPUTS, go_json, go_json_object_of_objects, go_json_string, output_option
from .registry_cmds import insecure_option

_MULTI_MATCH = re.compile(r"\*|\.\.|\[\?|:")


class InspectError(GadgetStoreError):
    pass


def decode_value(content_type: str, content: bytes) -> Any:
    """What ``--extra-info KEY`` shows, as inspect.go decodes it: JSON with ``json.Unmarshal`` (every
    number a float64), YAML with sigs.k8s.io/yaml's ``YAMLToJSON`` into a map (go-yaml's YAML 1.1
    rules), both written with their keys sorted as Go writes a map; anything else as its text."""
    from .goyaml import GoYamlError, yaml_to_json_object  # only these outputs need it: a warm start stays small

    text = content.decode("utf-8", errors="replace")
    try:
        if content_type == "application/json":
            return go_unmarshal(text)
        if content_type == "text/yaml":
            return yaml_to_json_object(text)
    except GoYamlError as err:
        raise InspectError(str(err)) from None
    except ValueError as err:
        raise InspectError(f"unmarshalling JSON content: {err}") from None
    return text


def sort_maps(value: Any) -> Any:
    """Every object's keys sorted, as encoding/json writes a Go map."""
    if isinstance(value, dict):
        return {k: sort_maps(v) for k, v in sorted(value.items())}
    if isinstance(value, list):
        return [sort_maps(v) for v in value]
    return value


def apply_jsonpath(value: Any, expression: str) -> Any:
    """Evaluate ``$`` + EXPR; wildcards, filters and slices yield lists, plain paths one value."""
    from jsonpath_ng.exceptions import JsonPathParserError
    from jsonpath_ng.ext import parse as jsonpath_parse

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
    untagged: inspecting never invents a tag. A pull verifies as the store's policy asks, as
    ``image pull`` does.
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

        from .registry_cmds import insecure_hosts, pull_policy

        deadline = deadline or CommandDeadline(None)
        options = TransferOptions(authfile=authfile, insecure_registries=insecure_hosts(insecure_registries),
                                  registries=load_registries(), in_flight=deadline.in_flight)
        policy = pull_policy(store.root, False, ())  # the store's policy holds for every pull into it
        click.echo(f"Pulling {reference.normalize(image)}...", err=True)
        deadline.run(functools.partial(pull_image, store, image, options, verify=policy))
        store.refresh()
    return resolve(store, image).descriptor


def _emit(text: str) -> None:
    """Print ``text`` as it is, as ig does (click would otherwise scan it for ANSI codes to strip)."""
    click.echo(text, nl=False, color=True)


def render(value: Any, output: str) -> str:
    """inspect.go's output switch: a string as it is (one newline added), else ``-o``'s encoding."""
    if isinstance(value, str):
        return value + "\n"
    if output == "yaml":
        from . import goyaml

        try:
            return goyaml.marshal(value)
        except goyaml.GoYamlError as err:
            raise InspectError(f"marshalling image and extra info to YAML: {err}") from None
    return go_json(value, pretty=output == "jsonpretty") + "\n"


@click.command("inspect")
@click.argument("image")
@output_option(INSPECT_OUTPUTS, "jsonpretty")
@click.option("--extra-info", "extra_info", default="", help="Show only this extra-info key.")
@click.option("--jsonpath", default="", help="JSONPath expression applied to --extra-info or --show-datasources.")
@click.option("--show-datasources", is_flag=True,
              help="Show the gadget's data sources and their fields as ig's operators create them: the "
                   "eBPF layer's tracers and iterators, the fields formatters, enum, uid/gid, stack and "
                   "container enrichment add, gadget.yaml merged in. Fields a wasm module adds are not "
                   "known without running it.")
@click.option("--arch", default=None, help="Architecture to inspect (default: this host's).")
@click.option("--pull", type=click.Choice(["always", "missing", "never"]), default="missing", show_default=True,
              help="When to pull the image from its registry first.")
@click.option("--authfile", type=click.Path(dir_okay=False, path_type=Path), help="Auth file for the pull.")
@insecure_option
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
    value: Any
    if show_datasources:
        value = image_datasources(store, manifest)
        if jsonpath:  # ig runs JSONPath over the datasources' JSON read back as maps
            value = apply_jsonpath(sort_maps(value), jsonpath)
        _emit(render(value, output))
        return
    entries = image_entries(store, image, manifest)
    if extra_info:
        entry = entries.get(extra_info)
        if entry is None:
            raise InspectError(f"extra info {extra_info!r} not found (known: {', '.join(sorted(entries))})")
        if jsonpath and entry.content_type not in ("application/json", "text/yaml"):
            raise InspectError(f"--jsonpath needs a JSON or YAML value; {extra_info} is {entry.content_type}")
        ready = entry.rendering(pretty=output == "jsonpretty") if output != "yaml" and not jsonpath else None
        if ready is not None:
            _emit(ready + "\n")
            return
        value = decode_value(entry.content_type, entry.content())
    else:
        if jsonpath:
            raise click.UsageError("--jsonpath needs --extra-info or --show-datasources")
        if output != "yaml":
            listing = [(key, [("content", entry.literal()), ("contentType", go_json_string(entry.content_type))])
                       for key, entry in sorted(entries.items())]
            _emit(go_json_object_of_objects(listing, pretty=output == "jsonpretty") + "\n")
            return
        value = {key: {"content": entry.content().decode("utf-8", errors="replace"), "contentType": entry.content_type}
                 for key, entry in sorted(entries.items())}
    if jsonpath:
        value = apply_jsonpath(value, jsonpath)
    _emit(render(value, output))
