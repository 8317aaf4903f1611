"""``image pull``, ``image push``, ``login`` and ``logout``: the commands that talk to registries.

Messages follow ``ig``: pull/push progress and success lines go to stderr, login/logout to stdout
(``Login Succeeded``, ``Logout Succeeded``: cmd/common/auth/auth.go at ig's HEAD).
"""

from __future__ import annotations

import os
import sys
from pathlib import Path
from typing import TYPE_CHECKING, Any

import click

from gadgetstore.engine.reference import normalize

from . import bulk_pull as bulk
from . import progress
from .context import AppContext, pass_app, user_errors
from .deadline import CommandDeadline, timeout_option

if TYPE_CHECKING:
    from gadgetstore.engine.registry import authfile as authfiles

    # The registry client (trio, h11) and the signature code (cryptography) are imported by the
    # commands when they run: ``image pull --help`` and usage errors start without them.
    from gadgetstore.engine.registry.client import TransferOptions
    from gadgetstore.engine.registry.pull import PullResult
    from gadgetstore.engine.registry.signatures import VerifyPolicy

MAX_PASSWORD_STDIN = 100 * 1024


def insecure_hosts(values: tuple[str, ...]) -> frozenset[str]:
    """The hosts of every ``--insecure-registries`` given (each a comma-separated list)."""
    return frozenset(v.strip() for value in values for v in value.split(",") if v.strip())


class GoBool(click.ParamType):
    """A boolean as ig's flags read one (``strconv.ParseBool``): ``--tls-verify=false``, ``=0``, ``=T``..."""

    name = "boolean"

    def convert(self, value: Any, param: click.Parameter | None, ctx: click.Context | None) -> bool:
        from gadgetstore.engine.gonumbers import parse_bool  # decimal: only when a value is given

        if isinstance(value, bool):
            return value
        try:
            return parse_bool(str(value))
        except ValueError as err:
            self.fail(str(err), param, ctx)


authfile_option = click.option(
    "--authfile", type=click.Path(dir_okay=False, path_type=Path),
    help="Auth file (default: $REGISTRY_AUTH_FILE, then the gadgetstore default, then ~/.docker/config.json).",
)
insecure_option = click.option(
    "--insecure-registries", multiple=True, metavar="HOST[:PORT],...",
    help="Registries reached over plain HTTP and without credentials (exact host:port).",
)
cert_dir_option = click.option(
    "--cert-dir", type=click.Path(file_okay=False, exists=True, path_type=Path),
    help="Directory with CA certificates (*.crt) and a client certificate (*.cert, *.key); "
         "wins over the registries config's cert_dir.",
)
registries_config_option = click.option(
    "--registries-config", type=click.Path(dir_okay=False, path_type=Path),
    envvar="GADGETSTORE_REGISTRIES_CONFIG",
    help="Mirrors, cert_dir and stall floor per registry (default: /etc/gadgetstore/registries.toml if it exists).",
)


@click.command("pull")
@click.argument("images", nargs=-1)
@click.option("--from-file", "from_file", metavar="LIST",
              help="Also pull the references in LIST (one per line, '#' comments; '-' is stdin).")
@click.option("--all-tags", is_flag=True, help="Treat IMAGES as repositories and pull every tag of each.")
@click.option("--tags-page-size", type=click.IntRange(1, 10_000), hidden=True)
@registries_config_option
@click.option("--peer-self", metavar="URL", envvar="GADGETSTORE_PEER_SELF",
              help="This node's own entry in the config's [peers] urls (default: the one at a local address).")
@authfile_option
@insecure_option
@cert_dir_option
@click.option("--max-concurrent-downloads", type=click.IntRange(1, 256), default=16, show_default=True)
@click.option("--range-threshold", type=click.IntRange(1), default=8 * 1024 * 1024, show_default=True,
              help="Blobs larger than this many bytes are fetched as parallel Range chunks.")
@click.option("--verify", is_flag=True,
              help="Tag an image only if its cosign signature verifies (pulled images' blobs are deleted otherwise).")
@click.option("--public-keys", "public_keys", multiple=True,
              help="Keys (inline PEM, comma-separated) for --verify (default: the store policy's, "
                   "else Inspektor Gadget's key).")
@timeout_option
@pass_app
@user_errors
def pull(app: AppContext, images: tuple[str, ...], authfile: Path | None, insecure_registries: tuple[str, ...],
         cert_dir: Path | None, max_concurrent_downloads: int,
         range_threshold: int, verify: bool, public_keys: tuple[str, ...], from_file: str | None,
         all_tags: bool, tags_page_size: int | None, registries_config: Path | None, peer_self: str | None,
         timeout: float | None) -> None:
    """Pull one or more gadget images into the store, with their signatures.

    Signatures (cosign 'sha256-<hex>.sig' tag, OCI 1.1 and bundle referrers, notation) are stored
    too, so 'image verify' works offline. With --verify, or when the store holds a policy file
    STORE/policy.json such as {"verify": true, "publicKeys": ["-----BEGIN PUBLIC KEY-----..."]}
    ("publicKeys" optional, default Inspektor Gadget's key), an image whose signature does not
    verify is not tagged.

    All images share one connection pool and one download budget; at the end, the bytes fetched
    from each source (upstream, each mirror of the registries config) are printed.
    """
    from gadgetstore.engine.registry.client import TransferOptions
    from gadgetstore.engine.registry.mirrors_config import load as load_registries
    from gadgetstore.engine.registry.pull import pull_images

    deadline = CommandDeadline(timeout)
    if not images and not from_file:
        raise click.UsageError("give IMAGES, --from-file LIST, or both")
    if all_tags and not images:
        raise click.UsageError("--all-tags needs at least one repository")
    for image in images:
        normalize(image)  # a bad name fails before any transfer starts
    listed = bulk.read_image_list(from_file) if from_file else []
    registries = load_registries(registries_config)
    store = app.store()
    policy = pull_policy(app.root, verify, public_keys)
    options = TransferOptions(
        authfile=authfile, insecure_registries=insecure_hosts(insecure_registries), cert_dir=cert_dir,
        max_concurrent_blobs=max_concurrent_downloads,
        range_threshold=range_threshold, chunk_size=range_threshold, registries=registries, peer_self=peer_self,
        in_flight=deadline.in_flight,
    )
    if all_tags:
        tagged, skipped = deadline.run(bulk.expand_all_tags, images, options, tags_page_size)
        if skipped:
            click.echo(f"Skipping {skipped} signature/attestation tag(s)", err=True)
        images = tuple(tagged)
    images = tuple(bulk.unique([*images, *listed]))
    status = progress.stderr_status(len(images))  # a \r-rewritten line on a TTY; plain lines otherwise

    def started(image: str) -> None:
        status.start()
        status.echo(f"Pulling {normalize(image)}...")  # the full name, as ig prints it

    def finished(result: PullResult) -> None:
        status.done(result.error is not None)
        for warning in result.warnings:
            status.echo(f"WARN: {warning}")
        if result.error is None:
            status.echo(f"Successfully pulled {result.summary}")
        else:
            status.echo(f"Error: pulling {result.image}: {result.error}")

    try:
        results = deadline.run(progress.with_ticks, status, lambda: pull_images(
            store, list(images), options, on_start=started, on_done=finished, on_bytes=status.add_bytes,
            verify=policy))
    finally:
        status.close()
    for line in bulk.summary_lines(results):
        click.echo(line, err=True)
    if any(r.error is not None for r in results):
        sys.exit(1)


def pull_policy(store_root: Path, verify: bool, public_keys: tuple[str, ...]) -> VerifyPolicy | None:
    """``--verify``/``--public-keys`` over the store's policy file; keys alone do not turn verification on."""
    from gadgetstore.engine.registry.signatures import VerifyPolicy, load_policy

    policy = load_policy(store_root)
    if not verify and policy is None:
        if public_keys:
            raise click.UsageError("--public-keys needs --verify (or a store policy that verifies)")
        return None
    from gadgetstore.engine.signatures.keys import load_public_keys  # cryptography: only when verifying

    source = "--verify" if verify or policy is None else policy.source
    keys = tuple(load_public_keys(public_keys)) if public_keys else (policy.keys if policy else None)
    return VerifyPolicy(keys, source)


@click.command("push")
@click.argument("image")
@authfile_option
@insecure_option
@cert_dir_option
@registries_config_option
@timeout_option
@pass_app
@user_errors
def push(app: AppContext, image: str, authfile: Path | None, insecure_registries: tuple[str, ...],
         cert_dir: Path | None, registries_config: Path | None, timeout: float | None) -> None:
    """Push a gadget image from the store to its registry, with its stored signatures."""
    from gadgetstore.engine.registry.client import TransferOptions
    from gadgetstore.engine.registry.mirrors_config import load as load_registries
    from gadgetstore.engine.registry.push import push_image

    deadline = CommandDeadline(timeout)
    normalize(image)
    store = app.store()
    options = TransferOptions(authfile=authfile, insecure_registries=insecure_hosts(insecure_registries),
                              cert_dir=cert_dir, registries=load_registries(registries_config),
                              in_flight=deadline.in_flight)
    click.echo(f"Pushing {normalize(image)}...", err=True)
    result = deadline.run(push_image, store, image, options)
    if result.signatures:
        click.echo(f"Pushed {result.signatures} signature(s) of {result.descriptor.digest}", err=True)
    click.echo(f"Successfully pushed {result.summary}", err=True)


def _registry_name(registry: str) -> str:
    """Accept ``host[:port]`` or a URL; refuse a repository path (a common slip)."""
    from gadgetstore.engine.registry import authfile as authfiles
    from gadgetstore.engine.registry.errors import RegistryError

    key = authfiles.registry_key(registry)
    if not key:
        raise RegistryError(f"invalid registry {registry!r}")
    return key


async def _verify_login(registry: str, options: TransferOptions) -> None:
    from gadgetstore.engine.registry.client import Session

    async with Session(options) as session:
        client = await session.client(registry)
        await client.ping()


@click.command("login")
@click.argument("registry")
@click.option("-u", "--username", help="Username.")
@click.option("-p", "--password", help="Password (insecure: prefer --password-stdin).")
@click.option("--password-stdin", is_flag=True, help="Read the password from standard input.")
@click.option("--get-login", is_flag=True, help="Print the username stored for REGISTRY.")
@authfile_option
@click.option("--insecure-registries", multiple=True, metavar="HOST[:PORT],...",
              help="Registries reached over plain HTTP (exact host:port); login still sends the credentials "
                   "to check them, but pull and push never send credentials to these.")
@click.option("--plain-http", is_flag=True, help="Use HTTP instead of HTTPS for REGISTRY (as ig login --plain-http).")
@click.option("--tls-verify", type=GoBool(), default=True, is_flag=False, flag_value=True, metavar="[=BOOL]",
              help="Verify TLS certificates (default true; as ig login, --tls-verify=false skips it for this "
                   "credential check only).")
@cert_dir_option
@registries_config_option
@timeout_option
@click.option("-v", "--verbose", is_flag=True, help="Print which auth file is used.")
@user_errors
def login(registry: str, username: str | None, password: str | None, password_stdin: bool, get_login: bool,
          authfile: Path | None, insecure_registries: tuple[str, ...], plain_http: bool, tls_verify: bool,
          cert_dir: Path | None, registries_config: Path | None, timeout: float | None, verbose: bool) -> None:
    """Log in to REGISTRY, checking the credentials there before storing them."""
    from gadgetstore.engine.registry import authfile as authfiles
    from gadgetstore.engine.registry.client import TransferOptions
    from gadgetstore.engine.registry.errors import RegistryError
    from gadgetstore.engine.registry.mirrors_config import load as load_registries

    deadline = CommandDeadline(timeout)
    name = _registry_name(registry)
    if get_login:
        creds = _stored_login(name, authfile)
        if creds is None or not creds.username:
            raise RegistryError(f"not logged in to {name}")
        click.echo(creds.username)
        return
    if password is not None:
        click.echo("WARNING! Using --password via the CLI is insecure. Use --password-stdin.", err=True)
        if password_stdin:
            raise click.UsageError("--password and --password-stdin are mutually exclusive")
    if password_stdin:
        if not username:
            raise click.UsageError("--password-stdin needs --username")
        raw = sys.stdin.buffer.read(MAX_PASSWORD_STDIN + 1)
        if len(raw) > MAX_PASSWORD_STDIN:
            raise click.UsageError("password on standard input is longer than 100 KiB")
        try:
            password = raw.decode().rstrip("\r\n")
        except UnicodeDecodeError:
            raise click.UsageError("the password on standard input is not valid UTF-8") from None
    if not username:
        username = click.prompt("Username")
    if password is None:
        password = click.prompt("Password", hide_input=True)
    if not username or not password:
        raise click.UsageError("username and password are required")
    path = _write_path(authfile)
    creds = authfiles.Credentials(username, password)
    plain = insecure_hosts(insecure_registries) | ({name} if plain_http else set())
    options = TransferOptions(authfile=path, cert_dir=cert_dir, credentials={name: creds}, retries=1,
                              plain_http=plain, tls_verify=tls_verify, registries=load_registries(registries_config),
                              in_flight=deadline.in_flight)
    deadline.run(_verify_login, name, options)
    helper = authfiles.store_credentials(path, name, username, password)
    if verbose:
        click.echo(f"Used: {path}" + (f" (credential helper docker-credential-{helper})" if helper else ""))
    click.echo("Login Succeeded")  # cmd/common/auth/auth.go Login


def _write_path(explicit: Path | None) -> Path:
    from gadgetstore.engine.registry import authfile as authfiles

    return authfiles.auth_file_path(explicit, for_write=True)


def _stored_login(registry: str, explicit: Path | None) -> authfiles.Credentials | None:
    from gadgetstore.engine.registry import authfile as authfiles

    return authfiles.resolve(authfiles.load(authfiles.auth_file_path(explicit)), registry)  # asks a helper too


@click.command("logout")
@click.argument("registry", required=False)
@click.option("-a", "--all", "all_", is_flag=True, help="Remove the credentials of every registry.")
@authfile_option
@user_errors
def logout(registry: str | None, all_: bool, authfile: Path | None) -> None:
    """Remove stored credentials for REGISTRY (or all of them)."""
    from gadgetstore.engine.registry import authfile as authfiles
    from gadgetstore.engine.registry.errors import RegistryError

    path = _write_path(authfile)
    if all_:
        if registry:
            raise click.UsageError("--all takes no REGISTRY")
        if os.path.exists(path):
            for warning in authfiles.remove_all(path):
                click.echo(f"WARN: {warning}", err=True)
        click.echo("Logout Succeeded")  # cmd/common/auth/auth.go Logout
        return
    if not registry:
        raise click.UsageError("REGISTRY is required unless --all is given")
    name = _registry_name(registry)
    if not authfiles.remove_credentials(path, name):
        raise RegistryError(f"not logged in to {name}")
    click.echo("Logout Succeeded")
