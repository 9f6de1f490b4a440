"""Offline reading of terraform/*.tf with python-hcl2, normalised to one shape whatever hcl2 build is installed.

Why a normaliser: python-hcl2 8.x keeps string quotes ('"x"') and marks blocks with `__is_block__`, while the
`bc-python-hcl2` fork that checkov depends on installs into the same `hcl2` package and returns every attribute
wrapped in a one-element list with quotes stripped. Which one wins depends on install order, so the policy tests
accept both and see the same thing:

- a body is a dict: attributes map to plain values (strings unquoted; expressions stay `${...}` strings with
  double quotes), nested blocks map to a list of bodies, `dynamic "x"` blocks live under "dynamic" as {label: body};
- `Config.resources[(type, name)]`, `Config.locals`, `Config.variables`, `Config.outputs`, `Config.data`.
"""

from __future__ import annotations

import functools
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import hcl2

TERRAFORM_DIR = Path(__file__).resolve().parents[2] / "terraform"
_META_KEYS = frozenset({"__start_line__", "__end_line__", "__is_block__", "__comments__", "__inline_comments__"})
_LABELS = {"resource": 2, "data": 2, "variable": 1, "output": 1, "module": 1, "provider": 1, "dynamic": 1}


@functools.cache
def hcl2_style() -> str:
    """'legacy' (bc-python-hcl2: wrapped, unquoted), 'quoted' (python-hcl2 8.x) or 'plain'."""
    probe = hcl2.loads('a = "x"\n')["a"]
    if isinstance(probe, list):
        return "legacy"
    return "quoted" if probe == '"x"' else "plain"


def _unquote(text: str) -> str:
    if len(text) >= 2 and text[0] == '"' and text[-1] == '"':
        text = text[1:-1].replace('\\"', '"').replace("\\\\", "\\")
    if "${" in text:
        text = text.replace("'", '"')
    return text


def _value(value: Any) -> Any:
    """An attribute value: strings unquoted, containers walked (no unwrapping inside values)."""
    if isinstance(value, str):
        return _unquote(value)
    if isinstance(value, list):
        return [_value(v) for v in value]
    if isinstance(value, dict):
        return {_unquote(k): _value(v) for k, v in value.items() if k not in _META_KEYS}
    return value


def _is_block_list(value: Any, style: str) -> bool:
    if not isinstance(value, list) or not value or not all(isinstance(v, dict) for v in value):
        return False
    if style != "legacy":
        return all(v.get("__is_block__") for v in value)
    # Legacy: a block's own attributes are wrapped in lists; an object attribute's values are not.
    return all(all(isinstance(x, list) for k, x in v.items() if k not in _META_KEYS) for v in value)


def _labelled(value: dict[str, Any], depth: int, style: str) -> dict[str, Any]:
    if depth == 0:
        return _body(value, style)
    return {_unquote(k): _labelled(v, depth - 1, style) for k, v in value.items() if k not in _META_KEYS}


def _body(raw: dict[str, Any], style: str) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for key, value in raw.items():
        if key in _META_KEYS:
            continue
        if key in _LABELS and isinstance(value, list) and all(isinstance(v, dict) for v in value):
            out[key] = [_labelled(v, _LABELS[key], style) for v in value]
        elif _is_block_list(value, style):
            out[key] = [_body(v, style) for v in value]
        elif style == "legacy" and isinstance(value, list) and len(value) == 1:
            out[key] = _value(value[0])
        else:
            out[key] = _value(value)
    return out


@dataclass
class Config:
    resources: dict[tuple[str, str], dict[str, Any]] = field(default_factory=dict)
    data: dict[tuple[str, str], dict[str, Any]] = field(default_factory=dict)
    locals: dict[str, Any] = field(default_factory=dict)
    variables: dict[str, dict[str, Any]] = field(default_factory=dict)
    outputs: dict[str, dict[str, Any]] = field(default_factory=dict)
    texts: dict[str, str] = field(default_factory=dict)

    def resources_of(self, rtype: str) -> dict[str, dict[str, Any]]:
        return {name: body for (t, name), body in self.resources.items() if t == rtype}

    def resource(self, rtype: str, name: str) -> dict[str, Any]:
        assert (rtype, name) in self.resources, f"terraform declares no {rtype}.{name}"
        return self.resources[(rtype, name)]


def parse_text(text: str, config: Config | None = None, *, name: str = "snippet.tf") -> Config:
    """Parse one file's text into `config` (a new Config by default)."""
    config = config or Config()
    body = _body(hcl2.loads(text), hcl2_style())
    config.texts[name] = text
    for kind, target in (("resource", config.resources), ("data", config.data)):
        for item in body.get(kind, []):
            for rtype, named in item.items():
                for rname, rbody in named.items():
                    assert (rtype, rname) not in target, f"{kind} {rtype}.{rname} declared twice"
                    target[(rtype, rname)] = rbody
    for item in body.get("locals", []):
        for key, value in item.items():
            assert key not in config.locals, f"local.{key} declared twice"
            config.locals[key] = value
    for kind, target in (("variable", config.variables), ("output", config.outputs)):
        for item in body.get(kind, []):
            target.update(item)
    return config


def load_dir(directory: Path = TERRAFORM_DIR) -> Config:
    config = Config()
    files = sorted(directory.glob("*.tf"))
    assert files, f"no .tf files in {directory}"
    for path in files:
        parse_text(path.read_text(encoding="utf-8"), config, name=path.name)
    return config


def blocks(body: dict[str, Any], name: str) -> list[dict[str, Any]]:
    """Nested blocks `name` of a body (an empty block parsed as an object counts too)."""
    value = body.get(name)
    if value is None:
        return []
    if isinstance(value, dict):
        return [value]
    return [v for v in value if isinstance(v, dict)]


def dynamic_content(body: dict[str, Any], name: str) -> list[dict[str, Any]]:
    """The `content` bodies of `dynamic "name"` blocks."""
    found = []
    for item in blocks(body, "dynamic"):
        if name in item:
            for content in blocks(item[name], "content"):
                found.append({"for_each": item[name].get("for_each"), **content})
    return found


def blocks_or_dynamic(body: dict[str, Any], name: str) -> list[dict[str, Any]]:
    return blocks(body, name) + dynamic_content(body, name)


def refers(value: Any, pattern: str) -> bool:
    """Whether an expression string matches a regex (whitespace-tolerant references)."""
    return isinstance(value, str) and re.search(pattern, value) is not None


def all_values(node: Any, path: str = "") -> list[tuple[str, Any]]:
    """Every (dotted key path, leaf value) below a node, for whole-configuration scans."""
    if isinstance(node, dict):
        out: list[tuple[str, Any]] = []
        for key, value in node.items():
            out.extend(all_values(value, f"{path}.{key}" if path else str(key)))
        return out
    if isinstance(node, list):
        out = []
        for index, value in enumerate(node):
            out.extend(all_values(value, f"{path}[{index}]"))
        return out
    return [(path, node)]


def all_keys(node: Any) -> list[str]:
    """Every dict key below a node (attribute and block names)."""
    if isinstance(node, dict):
        return [str(k) for k in node] + [k for v in node.values() for k in all_keys(v)]
    if isinstance(node, list):
        return [k for v in node for k in all_keys(v)]
    return []
