import subprocess
import sys

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
