import subprocess
import sys
from pathlib import Path

import click
import pytest
from click.testing import CliRunner

from gadgetstore.cli.main import IMAGE_COMMANDS, ROOT_COMMANDS, cli, image


@pytest.mark.parametrize(("group", "name"), [(image, n) for n in IMAGE_COMMANDS] + [(cli, n) for n in ROOT_COMMANDS])
def test_every_named_command_resolves(group: click.Group, name: str) -> None:
    command = group.get_command(click.Context(group), name)
    assert isinstance(command, click.Command)
    assert command.name == {"ls": "list", "rm": "remove"}.get(name, name)


def test_help_lists_every_verb() -> None:
    result = CliRunner().invoke(cli, ["image", "--help"])
    for verb in ("build", "export", "import", "inspect", "list", "pull", "push", "remove", "sign", "tag", "verify"):
        assert f"  {verb} " in result.stdout


def test_listing_does_not_load_the_heavy_stacks() -> None:
    code = ("import sys; from gadgetstore.cli.main import cli\n"
            "try: cli(['image', 'list', '--help'])\nexcept SystemExit: pass\n"
            "print(sorted(m for m in ('trio', 'elftools', 'cryptography') if m in sys.modules))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert out.strip().endswith("[]")


@pytest.mark.parametrize(("args", "values"), [
    (["image", "list"], "columns, json, jsonpretty (default: columns)"),
    (["image", "inspect"], "yaml, json, jsonpretty (default: jsonpretty)"),
    (["image", "import"], "json, jsonpretty (default: plain lines)"),
])
def test_every_output_option_lists_its_values_in_help(args: list[str], values: str) -> None:
    """ig's wording (cmd/common/image/list.go, inspect.go, import.go): "Output mode, possible values are…"."""
    text = " ".join(CliRunner().invoke(cli, [*args, "--help"]).stdout.split())
    assert f"Output mode, possible values are: {values}." in text


def test_every_output_option_in_the_cli_is_documented() -> None:
    """Any -o/--output that takes a fixed set of modes names them in its help."""
    def walk(group: click.Group) -> list[click.Command]:
        ctx = click.Context(group)
        commands = [group.get_command(ctx, n) for n in group.list_commands(ctx)]
        return [c for cmd in commands if cmd is not None
                for c in (walk(cmd) if isinstance(cmd, click.Group) else [cmd])]
    for command in walk(cli):
        for param in command.params:
            if "--output" in getattr(param, "opts", ()) and isinstance(param.type, click.Choice):
                assert isinstance(param, click.Option) and param.help
                assert all(v in param.help for v in param.type.choices if v), command.name


@pytest.mark.parametrize(("group", "name"), [(image, n) for n in IMAGE_COMMANDS] + [(cli, n) for n in ROOT_COMMANDS])
def test_each_listed_help_line_is_the_commands_own(group: click.Group, name: str) -> None:
    commands = IMAGE_COMMANDS if group is image else ROOT_COMMANDS
    command = group.get_command(click.Context(group), name)
    assert command is not None and command.get_short_help_str(limit=10_000) == commands[name][1]


def _modules_after(args: list[str]) -> list[str]:
    code = ("import sys; from gadgetstore.cli.main import cli\n"
            f"try: cli({args!r})\nexcept SystemExit: pass\n"
            "print(sorted(m for m in ('trio', 'h11', 'cryptography', 'elftools', 'gadgetstore.engine.store',\n"
            "                         'gadgetstore.cli.registry_cmds') if m in sys.modules))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    return list(eval(out.strip().splitlines()[-1]))


def test_help_imports_no_command() -> None:
    assert _modules_after(["--help"]) == []
    assert _modules_after(["image", "--help"]) == []


def test_pull_help_starts_without_the_transfer_stack() -> None:
    assert _modules_after(["image", "pull", "--help"]) == ["gadgetstore.cli.registry_cmds"]


def test_a_pull_without_verification_loads_no_cryptography(tmp_path: Path) -> None:
    """An unsigned image pulled without --verify never needs the signature checking code."""
    args = ["--store", str(tmp_path / "s"), "image", "pull", "127.0.0.1:9/x/y:v1", "--timeout", "1s"]
    code = ("import sys; from gadgetstore.cli.main import cli\n"
            f"try: cli({args!r})\n"
            "except SystemExit: pass\n"
            "print('trio' in sys.modules, 'cryptography' in sys.modules)")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert out.strip().splitlines()[-1] == "True False"
