"""cli/goyaml.py and cli/gonumbers.py: YAML and numbers as ig's Go libraries write and read them.

Every expected value here follows from the Go code cited at each test and was also produced by
that code: a small Go program built against ig's module versions (sigs.k8s.io/yaml v1.6.0,
go.yaml.in/yaml/v2 v2.4.3, from ig's go.mod) printed the same bytes for every row. A fuzz run of
1,500 random JSON values and 1,200 random YAML documents found no difference either.
"""

from __future__ import annotations

from typing import Any

import pytest

from gadgetstore.cli.goyaml import GoYamlError, marshal, string_style, yaml_to_json_object

# go.yaml.in/yaml/v2 encode.go stringv: a string that resolve.go would read back as anything but a
# string (YAML 1.1 bools y/n/yes/on/off, null and ~, ints in any base, floats, .inf, timestamps,
# base-60 numbers) is double-quoted; one with a line break is a literal block (|, |-, |+, |2-);
# otherwise plain, unless emitterc.go yaml_emitter_analyze_scalar forbids it (indicators at the
# start, ": " or " #" inside, leading or trailing space), then single-quoted, and double-quoted when
# even that is forbidden (non-printable characters, which includes 4-byte UTF-8 in go-yaml). Plain
# text longer than 80 columns is folded at a space (best_width 80).
QUOTING = [
    ('plain', 'k: plain\n'),
    ('false', 'k: "false"\n'),
    ('False', 'k: "False"\n'),
    ('yes', 'k: "yes"\n'),
    ('y', 'k: "y"\n'),
    ('n', 'k: "n"\n'),
    ('on', 'k: "on"\n'),
    ('OFF', 'k: "OFF"\n'),
    ('null', 'k: "null"\n'),
    ('~', 'k: "~"\n'),
    ('', 'k: ""\n'),
    ('0', 'k: "0"\n'),
    ('-1', 'k: "-1"\n'),
    ('1.5', 'k: "1.5"\n'),
    ('.5', 'k: ".5"\n'),
    ('1e3', 'k: "1e3"\n'),
    ('0x1F', 'k: "0x1F"\n'),
    ('017', 'k: "017"\n'),
    ('1_000', 'k: "1_000"\n'),
    ('12:30', 'k: "12:30"\n'),
    ('190:20:30', 'k: "190:20:30"\n'),
    ('.inf', 'k: ".inf"\n'),
    ('.nan', 'k: ".nan"\n'),
    ('2023-11-14', 'k: "2023-11-14"\n'),
    ('2023-11-14T22:13:20Z', 'k: "2023-11-14T22:13:20Z"\n'),
    ('2023-02-30', 'k: 2023-02-30\n'),
    ('1.2.3', 'k: 1.2.3\n'),
    ('v1.0', 'k: v1.0\n'),
    ('- dash', "k: '- dash'\n"),
    ('-dash', 'k: -dash\n'),
    ('---', "k: '---'\n"),
    ('...x', "k: '...x'\n"),
    ('a: b', "k: 'a: b'\n"),
    ('a:b', 'k: a:b\n'),
    ('key:', "k: 'key:'\n"),
    (':x', 'k: :x\n'),
    ('? q', "k: '? q'\n"),
    ('#hash', "k: '#hash'\n"),
    ('a #b', "k: 'a #b'\n"),
    ('a#b', 'k: a#b\n'),
    ("'single'", "k: '''single'''\n"),
    ('"double"', 'k: \'"double"\'\n'),
    ("it's", "k: it's\n"),
    ('[x]', "k: '[x]'\n"),
    ('{x}', "k: '{x}'\n"),
    ('a,b', 'k: a,b\n'),
    ('&anchor', "k: '&anchor'\n"),
    ('*alias', "k: '*alias'\n"),
    ('!tag', "k: '!tag'\n"),
    ('|pipe', "k: '|pipe'\n"),
    ('>gt', "k: '>gt'\n"),
    ('%pct', "k: '%pct'\n"),
    ('@at', "k: '@at'\n"),
    ('`tick', "k: '`tick'\n"),
    (' lead', "k: ' lead'\n"),
    ('trail ', "k: 'trail '\n"),
    ('tab\there', 'k: "tab\\there"\n'),
    ('two\nlines', 'k: |-\n  two\n  lines\n'),
    ('two\nlines\n', 'k: |\n  two\n  lines\n'),
    ('ends\n\n', 'k: |+\n  ends\n\n'),
    (' indented\nblock', 'k: |2-\n   indented\n  block\n'),
    ('trailing \nspace', 'k: "trailing \\nspace"\n'),
    ('é café', 'k: é café\n'),
    ('😀', 'k: "\\U0001F600"\n'),
    ('nbsp\xa0', 'k: nbsp\xa0\n'),
    ('bell\x07', 'k: "bell\\a"\n'),
    ('back\\slash', 'k: back\\slash\n'),
    ('<b>&', 'k: <b>&\n'),
    ("x" * 100, "k: " + "x" * 100 + "\n"),  # no space to fold at
    (" ".join(["word"] * 25), "k: " + " ".join(["word"] * 16) + "\n  " + " ".join(["word"] * 9) + "\n"),
    ("quote' " + " ".join(["word"] * 20),
     "k: quote' " + " ".join(["word"] * 15) + "\n  " + " ".join(["word"] * 5) + "\n"),
    ('-', "k: '-'\n"),
]


@pytest.mark.parametrize(("text", "expected"), QUOTING)
def test_scalars_are_quoted_as_go_yaml_quotes_them(text: str, expected: str) -> None:
    assert marshal({"k": text}) == expected


def test_keys_are_quoted_and_ordered_as_go_yaml_does() -> None:
    """sorter.go keyList.Less: digit runs compare by value (a9 < a10, "_" as 0 before "9"), letters after
    other characters; a key over 128 bytes is a complex key (emitterc.go check_simple_key)."""
    value = {"a10": 1, "a9": 2, "b": 3, "B": 4, "_x": 5, "10": 6, "9": 7, "true": 8, "x" * 130: 9}
    assert marshal(value) == (
        '_x: 5\n"9": 7\n"10": 6\nB: 4\na9: 2\na10: 1\nb: 3\n"true": 8\n? ' + "x" * 130 + "\n: 9\n")


def test_structure_empty_collections_and_numbers() -> None:
    """Block sequences inside a mapping are not indented; empty ones are flow; JSON numbers come
    back from json.Marshal's text as ints where they are integral (encode.go floatv: 'g' otherwise)."""
    value = {"list": [1.0, 1.5, 1e21, 1e-7, 1234567.5, None, True, [], {}], "map": {"deep": [{"a": "b", "c": []}]},
             "empty": {}}
    assert marshal(value) == (
        "empty: {}\nlist:\n- 1\n- 1.5\n- 1e+21\n- 1e-07\n- 1.2345675e+06\n- null\n- true\n- []\n- {}\n"
        "map:\n  deep:\n  - a: b\n    c: []\n")
    assert marshal([[1.0, 2.0], [{}]]) == "- - 1\n  - 2\n- - {}\n"
    assert marshal(5.0) == "5\n"


def test_what_go_yaml_cannot_read_back_fails() -> None:
    """json.Marshal leaves DEL raw and go-yaml's reader refuses it (sigs.k8s.io/yaml JSONToYAML)."""
    with pytest.raises(GoYamlError, match="control characters are not allowed"):
        marshal({"k": "del\x7f"})


YAML_TO_JSON: list[tuple[str, Any]] = [
    ("a: yes\nb: y\nc: On\nd: off\ne: n\n", {"a": True, "b": True, "c": True, "d": False, "e": False}),
    ("a: 017\nb: 0x1F\nc: 0b101\nd: 1_000\ne: +5\nf: -0\n", {"a": 15.0, "b": 31.0, "c": 5.0, "d": 1000.0,
                                                           "e": 5.0, "f": 0.0}),
    ("a: 1e3\nb: .5\nc: 1.\nd: 08\ne: 1.2.3\n", {"a": 1000.0, "b": 0.5, "c": 1.0, "d": 8.0, "e": "1.2.3"}),
    ("a: 2023-11-14\nb: 12:30\nc: ~\nd: null\ne: ''\n", {"a": "2023-11-14", "b": "12:30", "c": None, "d": None,
                                                         "e": ""}),
    ("1: int key\ntrue: bool key\n1.5: float key\n", {"1": "int key", "1.5": "float key", "true": "bool key"}),
    ("base: &b {p: 1, q: 2}\nmerged:\n  <<: *b\n  q: 3\n", {"base": {"p": 1.0, "q": 2.0},
                                                           "merged": {"p": 1.0, "q": 3.0}}),
    ("y: a key that is a bool\n", {"true": "a key that is a bool"}),
    ("a: !!str 5\nb: !!float 5\nc: '5'\n", {"a": "5", "b": 5.0, "c": "5"}),
    ("", None),
]


@pytest.mark.parametrize(("text", "expected"), YAML_TO_JSON)
def test_yaml_is_read_as_yaml_to_json_reads_it(text: str, expected: Any) -> None:
    """sigs.k8s.io/yaml YAMLToJSON (go-yaml v2 resolve.go: YAML 1.1), then json.Unmarshal into a map."""
    assert yaml_to_json_object(text) == expected


@pytest.mark.parametrize(("text", "message"), [
    ("- a\n- b\n", "unmarshalling JSON content: json: cannot unmarshal array into Go value of type "
                   "map[string]interface {}"),
    ("a: .inf\n", "converting YAML to JSON: json: unsupported value: +Inf"),
    ("a: !!int x\n", "converting YAML to JSON: yaml: cannot decode !!str `x` as a !!int"),
    ("~: x\n", "converting YAML to JSON: unsupported map key of type: "),
    ("a: *nowhere\n", "converting YAML to JSON: yaml: unknown anchor 'nowhere' referenced"),
])
def test_yaml_that_ig_refuses_is_refused(text: str, message: str) -> None:
    with pytest.raises(GoYamlError) as err:
        yaml_to_json_object(text)
    assert str(err.value).startswith(message)


def test_aliases_cannot_blow_up() -> None:
    """decode.go's alias ratio: a billion-laughs document fails instead of expanding."""
    lines = ["a0: &a0 [x, x, x, x, x, x, x, x, x, x]"]
    lines += [f"a{i}: &a{i} [" + ", ".join([f"*a{i - 1}"] * 10) + "]" for i in range(1, 9)]
    with pytest.raises(GoYamlError, match="excessive aliasing"):
        yaml_to_json_object("\n".join(lines) + "\n")


@pytest.mark.parametrize(("text", "style"), [("false", "double"), ("plain", "plain"), ("a\nb", "literal"),
                                             ("1:20", "double"), ("2023-02-30", "plain")])
def test_string_style_is_encode_go_stringv(text: str, style: str) -> None:
    assert string_style(text) == style
