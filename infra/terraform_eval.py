"""Evaluate the values the local front doors need straight from terraform/*.tf (python-hcl2's parse tree).

Why: the local Cloud Run IAM and API Gateway stand-ins must enforce exactly what Terraform deploys (the OpenAPI
document, the invokers, the audiences), so a change on the Terraform side changes what the local stack admits. This
is a small evaluator for the expression subset our configuration uses (literals, templates, references to `var.`,
`local.`, `each.`, a few resources, for-expressions, conditionals, comparisons and the functions listed in
`FUNCTIONS`); anything else raises `Unsupported`, so a new construct fails loudly instead of being guessed.

Resource attributes that only exist after an apply are computed the way Google computes them (a service account's
email from its account_id, a function's service name from its name) or supplied by the caller (`known`: the project
number, the gateway's hostname).
"""

from __future__ import annotations

import json
from abc import ABC, abstractmethod
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
TERRAFORM_DIR = ROOT / "terraform"


class Unsupported(ValueError):
    """An expression this evaluator does not model."""


def _trees(node: Any) -> list[Any]:
    from lark import Tree

    return [c for c in node.children if isinstance(c, Tree)]


def _token_text(node: Any) -> str:
    """The text of a leaf rule such as `identifier`, `int_lit`, `binary_operator`."""
    from lark import Token, Tree

    if isinstance(node, Token):
        return str(node)
    parts = []
    for child in node.children:
        parts.append(_token_text(child) if isinstance(child, Tree | Token) else str(child))
    return "".join(parts)


def _tostring(value: Any) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, float) and value.is_integer():
        return str(int(value))
    if isinstance(value, int | float | str):
        return str(value)
    raise Unsupported(f"cannot interpolate {type(value).__name__}")


def _merge(*maps: Any) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for item in maps:
        if item is None:
            continue
        if not isinstance(item, dict):
            raise Unsupported("merge() takes maps")
        out.update(item)
    return out


def _coalesce(*values: Any) -> Any:
    for value in values:
        if value is not None and value != "":
            return value
    raise Unsupported("coalesce(): no non-null argument")


FUNCTIONS: dict[str, Callable[..., Any]] = {
    "merge": _merge,
    "coalesce": _coalesce,
    "replace": lambda s, old, new: str(s).replace(old, new),
    "trimsuffix": lambda s, suffix: s[: -len(suffix)] if suffix and s.endswith(suffix) else s,
    "lower": lambda s: str(s).lower(),
    "join": lambda sep, items: sep.join(_tostring(i) for i in items),
    "keys": lambda m: sorted(m),
    "values": lambda m: [m[k] for k in sorted(m)],
    "contains": lambda items, value: value in items,
    "toset": lambda items: sorted(set(items), key=str),
    "setsubtract": lambda a, b: sorted(set(a) - set(b), key=str),
    "length": len,
    "tostring": _tostring,
    "base64encode": lambda s: __import__("base64").b64encode(str(s).encode()).decode(),
    "jsonencode": lambda v: json.dumps(v, separators=(",", ":")),
    "jsondecode": json.loads,
}


@dataclass
class Scope:
    """Names bound by `for` expressions and `each` of for_each."""

    names: dict[str, Any] = field(default_factory=dict)

    def child(self, **names: Any) -> Scope:
        return Scope({**self.names, **names})


class TerraformModule:
    """One directory of .tf files; values on demand, memoised."""

    def __init__(
        self,
        directory: Path = TERRAFORM_DIR,
        *,
        variables: Mapping[str, Any] | None = None,
        known: Mapping[str, Any] | None = None,
    ) -> None:
        import hcl2

        self.directory = Path(directory)
        self.known = dict(known or {})
        self.locals_: dict[str, Any] = {}
        self.resources: dict[tuple[str, str], Any] = {}
        self.data: dict[tuple[str, str], Any] = {}
        self.variable_defaults: dict[str, Any] = {}
        self._local_values: dict[str, Any] = {}
        for path in sorted(self.directory.glob("*.tf")):
            tree = hcl2.parses_to_tree(path.read_text(encoding="utf-8"))
            self._index(tree, path)
        self.variables = {**self.variable_defaults, **dict(variables or {})}

    # -- indexing ----------------------------------------------------------------------------------------------------
    def _index(self, tree: Any, path: Path) -> None:
        (body,) = [t for t in _trees(tree) if t.data == "body"]
        for block in _trees(body):
            if block.data != "block":
                continue
            parts = _trees(block)
            kind = _token_text(parts[0])
            labels = [self._literal_label(p) for p in parts[1:] if p.data in ("string_lit", "identifier", "string")]
            inner = next(p for p in parts if p.data == "body")
            if kind == "locals":
                for name, expr in self._attributes(inner).items():
                    self.locals_[name] = expr
            elif kind in ("resource", "data"):
                target = self.resources if kind == "resource" else self.data
                target[(labels[0], labels[1])] = inner
            elif kind == "variable":
                default = self._attributes(inner).get("default")
                if default is not None:
                    self.variable_defaults[labels[0]] = self.evaluate(default, Scope())

    @staticmethod
    def _literal_label(node: Any) -> str:
        return _token_text(node).strip('"')

    @staticmethod
    def _attributes(body: Any) -> dict[str, Any]:
        found = {}
        for item in _trees(body):
            if item.data == "attribute":
                name, expr = _trees(item)[0], _trees(item)[-1]
                found[_token_text(name)] = expr
        return found

    @staticmethod
    def _blocks(body: Any, name: str) -> list[Any]:
        out = []
        for item in _trees(body):
            if item.data == "block" and _token_text(_trees(item)[0]) == name:
                out.append(next(p for p in _trees(item) if p.data == "body"))
        return out

    # -- public API --------------------------------------------------------------------------------------------------
    def local(self, name: str) -> Any:
        if name not in self._local_values:
            if name not in self.locals_:
                raise Unsupported(f"local.{name} is not declared")
            self._local_values[name] = self.evaluate(self.locals_[name], Scope())
        return self._local_values[name]

    def resource_body(self, rtype: str, name: str) -> Any:
        if (rtype, name) not in self.resources:
            raise Unsupported(f"terraform declares no {rtype}.{name}")
        return self.resources[(rtype, name)]

    def attribute(self, body: Any, path: str, scope: Scope | None = None) -> Any:
        """Evaluate `a.b.c` inside a resource body (nested blocks are walked by name, first of each)."""
        *blocks, attr = path.split(".")
        for name in blocks:
            found = self._blocks(body, name)
            if not found:
                raise Unsupported(f"no block {name}")
            body = found[0]
        expr = self._attributes(body).get(attr)
        if expr is None:
            raise Unsupported(f"no attribute {attr}")
        return self.evaluate(expr, scope or Scope())

    def has_attribute(self, body: Any, name: str) -> bool:
        return name in self._attributes(body)

    def instances(self, rtype: str, name: str) -> dict[Any, Scope]:
        """{key: scope with each.key / each.value} for a for_each resource, or {None: Scope()} for a single one."""
        body = self.resource_body(rtype, name)
        expr = self._attributes(body).get("for_each")
        if expr is None:
            return {None: Scope()}
        items = self.evaluate(expr, Scope())
        if isinstance(items, list):
            items = {k: k for k in items}
        return {k: Scope({"each": {"key": k, "value": v}}) for k, v in items.items()}

    # -- references to resources -------------------------------------------------------------------------------------
    def _resource_value(self, rtype: str, name: str) -> Any:
        key = f"{rtype}.{name}"
        if key in self.known:
            return self.known[key]
        if rtype == "google_service_account":
            return self._per_instance(rtype, name, self._service_account)
        if rtype == "google_cloudfunctions2_function":
            return self._per_instance(rtype, name, self._function)
        # Anything else: its own arguments (an attribute computed only by an apply raises Unsupported).
        return self._per_instance(rtype, name, lambda body, scope: _ResourceArgs(self, body, scope, key))

    def _per_instance(self, rtype: str, name: str, build: Callable[[Any, Scope], Any]) -> Any:
        body = self.resource_body(rtype, name)
        instances = self.instances(rtype, name)
        if list(instances) == [None]:
            return build(body, Scope())
        return {k: build(body, scope) for k, scope in instances.items()}

    def _service_account(self, body: Any, scope: Scope) -> dict[str, Any]:
        account_id = self.attribute(body, "account_id", scope)
        project = self.variables["project_id"]
        return {"account_id": account_id, "email": f"{account_id}@{project}.iam.gserviceaccount.com"}

    def _function(self, body: Any, scope: Scope) -> dict[str, Any]:
        # A gen2 function's Cloud Run service carries the function's name.
        service = self.attribute(body, "name", scope)
        return {"name": service, "service_config": [{"service": service}]}

    # -- expressions -------------------------------------------------------------------------------------------------
    def evaluate(self, node: Any, scope: Scope) -> Any:
        kind = node.data
        kids = _trees(node)
        if kind in ("expr_term", "new_line_or_comment") and len(kids) == 1:
            return self.evaluate(kids[0], scope)
        if kind == "expr_term":
            # A parenthesised expression: "(" expr ")".
            inner = [k for k in kids if k.data != "new_line_or_comment"]
            if len(inner) == 1:
                return self.evaluate(inner[0], scope)
        if kind == "int_lit":
            return int(_token_text(node))
        if kind == "float_lit":
            return float(_token_text(node))
        if kind == "literal_value":
            text = _token_text(node)
            return {"true": True, "false": False, "null": None}[text]
        if kind == "string":
            return self._string(node, scope)
        if kind == "heredoc_template":
            raise Unsupported("heredocs")
        if kind == "identifier":
            return self._name(_token_text(node), scope)
        if kind == "tuple":
            return [self.evaluate(k, scope) for k in kids if k.data != "new_line_or_comment"]
        if kind == "object":
            out = {}
            for elem in kids:
                if elem.data != "object_elem":
                    continue
                key_node, value_node = [k for k in _trees(elem) if k.data != "new_line_or_comment"][:2]
                out[self._object_key(key_node, scope)] = self.evaluate(value_node, scope)
            return out
        if kind == "get_attr_expr_term":
            base = self.evaluate(kids[0], scope) if not self._is_root(kids[0]) else None
            attr = _token_text(_trees(kids[1])[-1])
            if base is None and self._is_root(kids[0]):
                return self._reference(_token_text(_trees(kids[0])[0]), attr, scope)
            return self._get(base, attr)
        if kind == "index_expr_term":
            base = self.evaluate(kids[0], scope)
            index_node = [k for k in _trees(kids[1]) if k.data != "new_line_or_comment"]
            if kids[1].data != "braces_index" or len(index_node) != 1:
                raise Unsupported(f"index form {kids[1].data}")
            return self._get(base, self.evaluate(index_node[0], scope))
        if kind == "function_call":
            name = _token_text(kids[0])
            args_node = next((k for k in kids[1:] if k.data == "arguments"), None)
            return self._call(name, args_node, scope)
        if kind == "conditional":
            cond, yes, no = [k for k in kids if k.data != "new_line_or_comment"]
            return self.evaluate(yes if self.evaluate(cond, scope) else no, scope)
        if kind == "binary_op":
            left = self.evaluate(kids[0], scope)
            term = kids[1]
            op = _token_text(_trees(term)[0])
            right = self.evaluate(_trees(term)[1], scope)
            return self._binary(op, left, right)
        if kind == "unary_op":
            op = _token_text(node.children[0])
            value = self.evaluate(kids[-1], scope)
            return (not value) if op == "!" else -value
        if kind in ("for_tuple_expr", "for_object_expr"):
            return self._for(node, scope)
        raise Unsupported(f"expression {kind}")

    @staticmethod
    def _is_root(node: Any) -> bool:
        kids = _trees(node)
        return (
            node.data == "expr_term"
            and len(kids) == 1
            and kids[0].data == "identifier"
            and _token_text(kids[0]) in ("var", "local", "data")
        )

    def _reference(self, root: str, attr: str, scope: Scope) -> Any:
        if root == "var":
            if attr not in self.variables:
                raise Unsupported(f"var.{attr} has no value")
            return self.variables[attr]
        if root == "local":
            return self.local(attr)
        return _DataRef(self, attr)

    def _name(self, name: str, scope: Scope) -> Any:
        if name in scope.names:
            return scope.names[name]
        if name == "path":
            return {"module": str(self.directory), "root": str(self.directory), "cwd": str(self.directory)}
        if name in ("var", "local", "data"):
            raise Unsupported(f"bare {name}")
        return _ResourceType(self, name)

    def _object_key(self, node: Any, scope: Scope) -> str:
        kids = _trees(node)
        inner = kids[0] if kids else node
        while inner.data == "expr_term" and len(_trees(inner)) == 1:
            inner = _trees(inner)[0]
        if inner.data in ("identifier", "keyword"):  # a bare key may be a word HCL reserves elsewhere (`in`, `for`)
            return _token_text(inner)
        return str(self.evaluate(inner, scope))

    def _string(self, node: Any, scope: Scope) -> str:
        from lark import Tree

        out = []
        for part in node.children:
            if not isinstance(part, Tree) or part.data != "string_part":
                continue
            sub = _trees(part)
            if sub and sub[0].data == "interpolation":
                expr = next(iter(_trees(sub[0])))
                out.append(_tostring(self.evaluate(expr, scope)))
            else:
                text = _token_text(part)
                out.append(json.loads(f'"{text}"') if "\\" in text else text)
        return "".join(out)

    def _get(self, base: Any, key: Any) -> Any:
        if isinstance(base, _Lazy):
            return base.get(key)
        if isinstance(base, dict):
            if key not in base:
                raise KeyError(key)
            return base[key]
        if isinstance(base, list) and isinstance(key, int):
            return base[key]
        raise Unsupported(f"cannot index {type(base).__name__} with {key!r}")

    def _call(self, name: str, args_node: Any, scope: Scope) -> Any:
        arg_nodes = list(_trees(args_node)) if args_node is not None else []
        arg_nodes = [k for k in arg_nodes if k.data != "new_line_or_comment"]
        expand = args_node is not None and any(
            _token_text(c) == "..." for c in args_node.children if not hasattr(c, "data")
        )
        if name == "try":
            for arg in arg_nodes:
                try:
                    return self.evaluate(arg, scope)
                except (KeyError, IndexError, Unsupported, TypeError):
                    continue
            raise Unsupported("try(): every argument failed")
        if name == "file":
            path = self.evaluate(arg_nodes[0], scope)
            return Path(path).read_text(encoding="utf-8")
        if name not in FUNCTIONS:
            raise Unsupported(f"function {name}()")
        args = [self.evaluate(a, scope) for a in arg_nodes]
        if expand:
            args = [*args[:-1], *args[-1]]
        return FUNCTIONS[name](*args)

    @staticmethod
    def _binary(op: str, left: Any, right: Any) -> Any:
        ops: dict[str, Callable[[Any, Any], Any]] = {
            "==": lambda a, b: a == b,
            "!=": lambda a, b: a != b,
            "&&": lambda a, b: a and b,
            "||": lambda a, b: a or b,
            "<": lambda a, b: a < b,
            ">": lambda a, b: a > b,
            "<=": lambda a, b: a <= b,
            ">=": lambda a, b: a >= b,
            "+": lambda a, b: a + b,
            "-": lambda a, b: a - b,
            "*": lambda a, b: a * b,
            "/": lambda a, b: a / b,
        }
        if op not in ops:
            raise Unsupported(f"operator {op}")
        return ops[op](left, right)

    def _for(self, node: Any, scope: Scope) -> Any:
        kids = [k for k in _trees(node) if k.data != "new_line_or_comment"]
        intro = kids[0]
        names = [_token_text(k) for k in _trees(intro) if k.data == "identifier"]
        source = self.evaluate([k for k in _trees(intro) if k.data != "identifier"][-1], scope)
        cond = next((k for k in kids if k.data == "for_cond"), None)
        bodies = [k for k in kids[1:] if k.data != "for_cond"]
        pairs = list(source.items()) if isinstance(source, dict) else list(enumerate(source))
        tuple_form = node.data == "for_tuple_expr"
        out_list: list[Any] = []
        out_map: dict[str, Any] = {}
        for key, value in pairs:
            bound = {names[0]: key, names[1]: value} if len(names) == 2 else {names[0]: value}
            inner = scope.child(**bound)
            if cond is not None and not self.evaluate(_trees(cond)[-1], inner):
                continue
            if tuple_form:
                out_list.append(self.evaluate(bodies[0], inner))
            else:
                out_map[str(self.evaluate(bodies[0], inner))] = self.evaluate(bodies[1], inner)
        return out_list if tuple_form else out_map


class _Lazy(ABC):
    """A reference resolved one attribute at a time (a resource type, its arguments, a data source)."""

    @abstractmethod
    def get(self, key: Any) -> Any: ...


@dataclass
class _ResourceType(_Lazy):
    module: TerraformModule
    rtype: str

    def get(self, key: Any) -> Any:
        return self.module._resource_value(self.rtype, str(key))


@dataclass
class _ResourceArgs(_Lazy):
    module: TerraformModule
    body: Any
    scope: Scope
    ref: str

    def get(self, key: Any) -> Any:
        if not self.module.has_attribute(self.body, str(key)):
            raise Unsupported(f"{self.ref}.{key} has no value before apply; pass {self.ref} in `known`")
        return self.module.attribute(self.body, str(key), self.scope)


@dataclass
class _DataRef(_Lazy):
    module: TerraformModule
    dtype: str

    def get(self, key: Any) -> Any:
        ref = f"data.{self.dtype}.{key}"
        if ref in self.module.known:
            return self.module.known[ref]
        raise Unsupported(f"{ref} has no value before apply; pass it in `known`")
