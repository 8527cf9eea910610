"""Reading workflow source: YAML (or JSON, a subset) into plain values, with a line map.

Scalars are read as Cloud Workflows reads them (YAML 1.2 core: only true/false are booleans,
`010` is ten, dates stay strings); every map and list remembers its line, and every key its own
line, so the compiler can name `file:line` in each problem it reports.
"""
from __future__ import annotations

import base64
import math
import re
from typing import Any

import yaml

from localcloud.workflows.errors import LoadError

_STR = "tag:yaml.org,2002:str"
_INT = "tag:yaml.org,2002:int"
_FLOAT = "tag:yaml.org,2002:float"
_BOOL = "tag:yaml.org,2002:bool"
_NULL = "tag:yaml.org,2002:null"
_BINARY = "tag:yaml.org,2002:binary"


class _SourceLoader(yaml.SafeLoader):
    """YAML 1.2 core scalars, as Cloud Workflows reads them: only true/True/TRUE and
    false/False/FALSE are booleans (`yes`, `on` stay strings), `010` is ten, dates stay
    strings."""


_SourceLoader.yaml_implicit_resolvers = {
    first: [(tag, rx) for tag, rx in resolvers
            if tag not in (_BOOL, _INT, _FLOAT, _NULL, "tag:yaml.org,2002:timestamp")]
    for first, resolvers in yaml.SafeLoader.yaml_implicit_resolvers.items()
}
_SourceLoader.add_implicit_resolver(
    _BOOL, re.compile(r"^(?:true|True|TRUE|false|False|FALSE)$"), list("tTfF"))
_SourceLoader.add_implicit_resolver(
    _INT, re.compile(r"^(?:[-+]?[0-9]+|0o[0-7]+|0x[0-9a-fA-F]+)$"), list("-+0123456789"))
_SourceLoader.add_implicit_resolver(
    _FLOAT, re.compile(r"^(?:[-+]?(?:\.[0-9]+|[0-9]+(?:\.[0-9]*)?)(?:[eE][-+]?[0-9]+)?"
                       r"|[-+]?\.(?:inf|Inf|INF)|\.(?:nan|NaN|NAN))$"), list("-+.0123456789"))
_SourceLoader.add_implicit_resolver(
    _NULL, re.compile(r"^(?:~|null|Null|NULL|)$"), ["~", "n", "N", ""])


class Meta:
    """Line numbers of the loaded containers: id(container) -> (line, {key: line})."""

    def __init__(self) -> None:
        self.lines: dict[int, int] = {}
        self.key_lines: dict[int, dict[str, int]] = {}
        self.keep: list[Any] = []   # keeps containers alive so their ids stay unique

    def line(self, container: Any, key: str | None = None, default: int = 0) -> int:
        if key is not None:
            kl = self.key_lines.get(id(container))
            if kl and key in kl:
                return kl[key]
        return self.lines.get(id(container), default)


def parse_document(text: str, filename: str) -> tuple[Any, Meta]:
    meta = Meta()
    try:
        loader = _SourceLoader(text)
        try:
            node = loader.get_single_node()
        finally:
            loader.dispose()
    except yaml.MarkedYAMLError as exc:
        mark = exc.problem_mark or exc.context_mark
        line = mark.line + 1 if mark else 0
        what = exc.problem or str(exc)
        if exc.context:
            what = f"{exc.context}: {what}"
        raise LoadError([f"{filename}:{line}: not valid YAML/JSON: {what}"]) from exc
    except yaml.YAMLError as exc:
        raise LoadError([f"{filename}: not valid YAML/JSON: {exc}"]) from exc
    if node is None:
        raise LoadError([f"{filename}: the file is empty"])
    problems: list[str] = []
    value = _convert(node, meta, filename, problems)
    if problems:
        raise LoadError(problems)
    return value, meta


def _convert(node: yaml.Node, meta: Meta, filename: str, problems: list[str]) -> Any:
    line = node.start_mark.line + 1
    if isinstance(node, yaml.MappingNode):
        out: dict[str, Any] = {}
        key_lines: dict[str, int] = {}
        for key_node, value_node in node.value:
            key = _convert(key_node, meta, filename, problems)
            if type(key) is not str:
                key = _key_text(key)
            if key in out:
                problems.append(f"{filename}:{key_node.start_mark.line + 1}: duplicate key "
                                f"{key!r} (first at line {key_lines[key]})")
                continue
            key_lines[key] = key_node.start_mark.line + 1
            out[key] = _convert(value_node, meta, filename, problems)
        meta.lines[id(out)] = line
        meta.key_lines[id(out)] = key_lines
        meta.keep.append(out)
        return out
    if isinstance(node, yaml.SequenceNode):
        out_list = [_convert(item, meta, filename, problems) for item in node.value]
        meta.lines[id(out_list)] = line
        meta.keep.append(out_list)
        return out_list
    return _scalar(node, filename, problems)


def _key_text(key: Any) -> str:
    if key is None:
        return "null"
    if type(key) is bool:
        return "true" if key else "false"
    return str(key)


def _scalar(node: yaml.ScalarNode, filename: str, problems: list[str]) -> Any:
    text = node.value
    tag = node.tag
    if tag == _STR:
        return text
    if tag == _INT:
        if text.startswith("0x"):
            return int(text[2:], 16)
        if text.startswith("0o"):
            return int(text[2:], 8)
        return int(text, 10)
    if tag == _FLOAT:
        lowered = text.lower()
        if lowered.endswith(".inf"):
            return -math.inf if text.startswith("-") else math.inf
        if lowered == ".nan":
            return math.nan
        return float(text)
    if tag == _BOOL:
        return text.lower() == "true"
    if tag == _NULL:
        return None
    if tag == _BINARY:
        try:
            return base64.b64decode(text)
        except ValueError:
            pass
    problems.append(f"{filename}:{node.start_mark.line + 1}: unsupported YAML tag {tag!r}")
    return text
