"""YAML as ig reads and writes it: sigs.k8s.io/yaml v1.6.0 over go-yaml v2 (go.yaml.in/yaml/v2 v2.4.3).

``image inspect`` reads a ``text/yaml`` extra-info value with ``yaml.YAMLToJSON`` and
``json.Unmarshal`` (so go-yaml's YAML 1.1 rules decide what is a bool, a number or null, and every
number ends up a float64), and ``-o yaml`` writes with ``yaml.Marshal`` (``json.Marshal``, read back
by go-yaml, written by go-yaml's libyaml-derived emitter). This module does both, following that
code: resolve.go for plain scalars, decode.go for the document tree, encode.go for the scalar style
each value asks for (a string that would read back as anything but a string is double-quoted, one
with a line break is a literal block) and emitterc.go for what the emitter makes of it (the
analysis of each scalar, quoting, folding long lines at 80 columns, indentation, natural key order).

PyYAML supplies only the parser's events; no PyYAML resolver or emitter is involved.
"""

from .decode import yaml_to_json_object
from .emit import marshal, string_style
from .scalars import GoYamlError

__all__ = ["GoYamlError", "marshal", "string_style", "yaml_to_json_object"]
