"""``image inspect`` output, byte for byte as ig writes it (cmd/common/image/inspect.go ``NewInspectCmd``).

``--extra-info`` of a ``text/yaml`` value goes through sigs.k8s.io/yaml ``YAMLToJSON`` and
``json.Unmarshal`` into a map (go-yaml v2's YAML 1.1 scalars: ``yes``/``y``/``off`` are bools and
``off`` as a key is ``"false"``; ``0x1F``/``017`` ints; every number a float64, so
12345678901234567890 prints as 12345678901234567000); ``jsonpretty`` is ``json.MarshalIndent``,
``json`` is ``json.Marshal`` (map keys sorted, HTML-escaped), both plus a newline; ``yaml`` is
sigs.k8s.io/yaml ``Marshal`` (go-yaml's quoting, natural key order a9 < a10). Checked against the
real ig v0.55.0-55 (/work/research/ig through ig-ns.sh, ``image import`` of this gadget.yaml built
with trace_demo's program, then ``image inspect --extra-info oci.metadata -o …`` and ``--jsonpath``):
the same bytes in all three modes.
"""

from __future__ import annotations

from pathlib import Path

import pytest
from click.testing import CliRunner

from gadgetstore.cli.main import cli

GADGET_YAML = (
    'name: golden\n'
    "description: 'keys out of order: YAML 1.1 scalars'\n"
    'version: 1.10\n'
    'enabled: yes\n'
    'short: y\n'
    'off: off\n'
    'count: 0x1F\n'
    'octal: 017\n'
    'big: 12345678901234567890\n'
    'ratio: 1.5e3\n'
    'small: 0.0000001\n'
    'when: 2023-11-14\n'
    'none: ~\n'
    'empty: ""\n'
    'annotations:\n'
    '  z: last\n'
    '  a: first\n'
    '  a10: ten\n'
    '  a9: nine\n'
    '  html: <b> & </b>\n'
    'list: [on, "on", 1_000, .5, "1.5", "null", "", "- dash", "#hash", "a: b", "it\'s"]\n'
    'text: |\n'
    '  two\n'
    '  lines\n'
)

EXPECTED = {
    "jsonpretty": (
    '{\n'
    '  "annotations": {\n'
    '    "a": "first",\n'
    '    "a10": "ten",\n'
    '    "a9": "nine",\n'
    '    "html": "\\u003cb\\u003e \\u0026 \\u003c/b\\u003e",\n'
    '    "z": "last"\n'
    '  },\n'
    '  "big": 12345678901234567000,\n'
    '  "count": 31,\n'
    '  "description": "keys out of order: YAML 1.1 scalars",\n'
    '  "empty": "",\n'
    '  "enabled": true,\n'
    '  "false": false,\n'
    '  "list": [\n'
    '    true,\n'
    '    "on",\n'
    '    1000,\n'
    '    0.5,\n'
    '    "1.5",\n'
    '    "null",\n'
    '    "",\n'
    '    "- dash",\n'
    '    "#hash",\n'
    '    "a: b",\n'
    '    "it\'s"\n'
    '  ],\n'
    '  "name": "golden",\n'
    '  "none": null,\n'
    '  "octal": 15,\n'
    '  "ratio": 1500,\n'
    '  "short": true,\n'
    '  "small": 1e-7,\n'
    '  "text": "two\\nlines\\n",\n'
    '  "version": 1.1,\n'
    '  "when": "2023-11-14"\n'
    '}\n'
),
    "json": (
    '{"annotations":{"a":"first","a10":"ten","a9":"nine","html":"\\u003cb\\u003e \\u0026 \\u003c/b\\u003e","z"'
    ':"last"},"big":12345678901234567000,"count":31,"description":"keys out of order: YAML 1.1 scalars","'
    'empty":"","enabled":true,"false":false,"list":[true,"on",1000,0.5,"1.5","null","","- dash","#hash","'
    'a: b","it\'s"],"name":"golden","none":null,"octal":15,"ratio":1500,"short":true,"small":1e-7,"text":"'
    'two\\nlines\\n","version":1.1,"when":"2023-11-14"}\n'
),
    "yaml": (
    'annotations:\n'
    '  a: first\n'
    '  a9: nine\n'
    '  a10: ten\n'
    '  html: <b> & </b>\n'
    '  z: last\n'
    'big: 12345678901234567000\n'
    'count: 31\n'
    "description: 'keys out of order: YAML 1.1 scalars'\n"
    'empty: ""\n'
    'enabled: true\n'
    '"false": false\n'
    'list:\n'
    '- true\n'
    '- "on"\n'
    '- 1000\n'
    '- 0.5\n'
    '- "1.5"\n'
    '- "null"\n'
    '- ""\n'
    "- '- dash'\n"
    "- '#hash'\n"
    "- 'a: b'\n"
    "- it's\n"
    'name: golden\n'
    'none: null\n'
    'octal: 15\n'
    'ratio: 1500\n'
    'short: true\n'
    'small: 1e-07\n'
    'text: |\n'
    '  two\n'
    '  lines\n'
    'version: 1.1\n'
    'when: "2023-11-14"\n'
),
}


@pytest.fixture
def built(tmp_path: Path) -> Path:
    """The store holding ``golden:v1``, built from GADGET_YAML alone (no program: no compiler needed)."""
    gadget = tmp_path / "gadget"
    gadget.mkdir()
    (gadget / "gadget.yaml").write_text(GADGET_YAML)
    store = tmp_path / "store"
    result = CliRunner(env={"SOURCE_DATE_EPOCH": "1700000000"}).invoke(
        cli, ["--store", str(store), "image", "build", "-t", "golden:v1", str(gadget)])
    assert result.exit_code == 0, result.output
    return store


def inspect(store: Path, *args: str) -> tuple[int, str, str]:
    result = CliRunner().invoke(cli, ["--store", str(store), "image", "inspect", "golden:v1", *args])
    return result.exit_code, result.stdout, result.stderr


@pytest.mark.parametrize("output", ["jsonpretty", "json", "yaml"])
def test_extra_info_metadata_is_printed_as_ig_prints_it(built: Path, output: str) -> None:
    assert inspect(built, "--extra-info", "oci.metadata", "-o", output) == (0, EXPECTED[output], "")


@pytest.mark.parametrize(("path", "output", "expected"), [
    (".list[0]", "json", "true\n"),
    (".when", "yaml", "2023-11-14\n"),  # a string is printed as it is, in every mode
    (".version", "jsonpretty", "1.1\n"),
    (".big", "yaml", "12345678901234567000\n"),
    (".annotations", "yaml", "a: first\na9: nine\na10: ten\nhtml: <b> & </b>\nz: last\n"),
    (".annotations.html", "json", "<b> & </b>\n"),
])
def test_jsonpath_over_yaml_as_ig(built: Path, path: str, output: str, expected: str) -> None:
    assert inspect(built, "--extra-info", "oci.metadata", "--jsonpath", path, "-o", output) == (0, expected, "")


def test_default_yaml_quotes_plain_text_values_as_go_yaml(built: Path) -> None:
    """Every extra-info entry's content through yaml.Marshal: a timestamp is double-quoted (PyYAML
    wrote 'single' quotes), text with line breaks is a literal block."""
    code, out, _ = inspect(built, "-o", "yaml")
    assert code == 0
    assert 'oci.created:\n  content: "2023-11-14T22:13:20Z"\n  contentType: text/plain\n' in out
    assert ("oci.metadata:\n  content: |\n    name: golden\n"
            "    description: 'keys out of order: YAML 1.1 scalars'\n") in out
    assert out.endswith("oci.repository:\n  content: golden\n  contentType: text/plain\n"
                        "oci.tag:\n  content: v1\n  contentType: text/plain\n")
