"""``gadgetstore mount MOUNTPOINT`` and ``gadgetstore umount MOUNTPOINT``: the read-only FUSE view."""

from __future__ import annotations

import logging
import os
import shutil
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING

import click

from gadgetstore.engine.store import Store

from .context import AppContext, fail, pass_app, user_errors
from .deadline import Duration
from .registry_cmds import insecure_option, registries_config_option

if TYPE_CHECKING:
    from gadgetstore.fusefs.pulls import Fetch

PULL_TIMEOUT = 60.0
"""Default ``--timeout`` of one pull on access: a lookup waits no longer than this."""


def _split_options(values: tuple[str, ...]) -> list[str]:
    return [opt.strip() for value in values for opt in value.split(",") if opt.strip()]


def _setup_logging(log_file: Path | None, debug: bool) -> None:
    handler: logging.Handler = logging.FileHandler(log_file) if log_file else logging.StreamHandler()
    handler.setFormatter(logging.Formatter("%(asctime)s %(levelname)s %(name)s: %(message)s"))
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel(logging.DEBUG if debug else logging.INFO)


@click.command("mount")
@click.argument("mountpoint", type=click.Path(exists=True, file_okay=False, path_type=Path))
@click.option("--background", is_flag=True, help="Return once mounted and keep serving in the background.")
@click.option(
    "-o", "options", multiple=True, metavar="OPT[,OPT…]", help="FUSE options: allow_other, allow_root, auto_unmount."
)
@click.option(
    "--log-file", type=click.Path(dir_okay=False, path_type=Path), help="Log here (background default: nowhere)."
)
@click.option("--debug", is_flag=True, help="Log at debug level (libfuse's own trace: -o debug).")
@click.option("--pull-on-access", is_flag=True,
              help="Pull an image the store lacks when its path is looked up (e.g. ls MOUNTPOINT/trace_tcp/v0.48.0); "
                   "a failure is 'No such file or directory', with the reason in the log.")
@click.option("--authfile", type=click.Path(dir_okay=False, path_type=Path),
              help="Auth file for pulls (default: as for image pull).")
@insecure_option
@registries_config_option
@click.option("--timeout", type=Duration(), metavar="DURATION",
              help="Give up one pull on access after DURATION (90s, 5m; default 1m): the lookup is then ENOENT.")
@pass_app
@user_errors
def mount_cmd(
    app: AppContext, mountpoint: Path, background: bool, options: tuple[str, ...], log_file: Path | None, debug: bool,
    pull_on_access: bool, authfile: Path | None, insecure_registries: tuple[str, ...], registries_config: Path | None,
    timeout: float | None,
) -> None:
    """Mount the store read-only at MOUNTPOINT (foreground until Ctrl-C, SIGTERM or umount)."""
    from gadgetstore.fusefs.runner import mount_options, serve  # pyfuse3 loads only for this command

    try:
        fuse_options = mount_options(_split_options(options))
    except ValueError as err:
        fail(str(err), 2)
    if os.path.ismount(mountpoint):
        fail(f"{mountpoint} is already a mount point")
    fetch = None
    if pull_on_access:
        fetch = _pull_on_access(app, authfile, insecure_registries, registries_config, timeout or PULL_TIMEOUT)
    elif authfile or insecure_registries or registries_config or timeout is not None:
        raise click.UsageError("--authfile, --insecure-registries, --registries-config and --timeout "
                               "need --pull-on-access")
    store = Store.open(app.root, readonly=True)
    if not background:
        _setup_logging(log_file, debug)
        serve(store, mountpoint, fuse_options, fetch=fetch)
        return
    _daemonize(lambda ready: serve(store, mountpoint, fuse_options, ready, fetch), log_file, debug)


def _pull_on_access(app: AppContext, authfile: Path | None, insecure_registries: tuple[str, ...],
                    registries_config: Path | None, timeout: float) -> Fetch:
    """Pulls as ``image pull`` makes them: its credentials, registries config and the store's policy."""
    from gadgetstore.engine.registry.client import TransferOptions
    from gadgetstore.engine.registry.mirrors_config import load as load_registries

    from .mount_pull import make_fetch
    from .registry_cmds import insecure_hosts, pull_policy

    options = TransferOptions(authfile=authfile, insecure_registries=insecure_hosts(insecure_registries),
                              registries=load_registries(registries_config))
    return make_fetch(app.root, options, pull_policy(app.root, False, ()), timeout)


def _daemonize(run: Callable[[Callable[[], None]], None], log_file: Path | None, debug: bool) -> None:
    """Fork; the parent waits until the child has mounted (or failed) and reports that."""
    read_end, write_end = os.pipe()
    pid = os.fork()
    if pid:
        os.close(write_end)
        with os.fdopen(read_end, "rb") as pipe:
            message = pipe.read()
        if message == b"ok":
            click.echo(f"mounted (pid {pid})", err=True)
            return
        os.waitpid(pid, 0)
        fail(message.decode(errors="replace") or "the mount process exited before mounting")
    os.close(read_end)
    os.setsid()
    devnull = os.open(os.devnull, os.O_RDWR)
    for fd in (0, 1, 2):
        os.dup2(devnull, fd)
    if log_file:
        _setup_logging(log_file, debug)
    else:
        logging.disable(logging.CRITICAL)

    def ready() -> None:
        os.write(write_end, b"ok")
        os.close(write_end)

    try:
        run(ready)
    except BaseException as err:  # report to the waiting parent, whatever happened
        try:
            os.write(write_end, str(err).encode() or type(err).__name__.encode())
        except OSError:
            pass
        os._exit(1)
    os._exit(0)


@click.command("umount")
@click.argument("mountpoint", type=click.Path(exists=True, file_okay=False, path_type=Path))
@click.option("--lazy", "-z", is_flag=True, help="Detach now, finish when no longer busy.")
@user_errors
def umount_cmd(mountpoint: Path, lazy: bool) -> None:
    """Unmount a gadgetstore mount."""
    tool = shutil.which("fusermount3") or shutil.which("fusermount")
    command = [tool, "-u", *(["-z"] if lazy else []), str(mountpoint)] if tool else ["umount", str(mountpoint)]
    result = subprocess.run(command, capture_output=True, text=True, check=False)
    if result.returncode != 0:
        fail(result.stderr.strip() or f"{command[0]} failed with exit code {result.returncode}")


def register(group: click.Group) -> None:
    group.add_command(mount_cmd)
    group.add_command(umount_cmd)


@click.group(context_settings={"help_option_names": ["-h", "--help"]})
@click.option("--store", "store_root", type=click.Path(file_okay=False, path_type=Path), envvar="GADGETSTORE_ROOT")
@click.pass_context
def _standalone(ctx: click.Context, store_root: Path | None) -> None:
    """Only mount/umount, for ``python -m gadgetstore.cli.mount`` (tests, minimal installs)."""
    ctx.obj = AppContext(store_root=store_root)


register(_standalone)

if __name__ == "__main__":
    _standalone(prog_name="gadgetstore", args=sys.argv[1:])
