"""Partial responses: the `fields` selector (`items(id,status),nextSyncToken`, `a/b`)."""

from __future__ import annotations

from typing import Any

Tree = dict[str, "Tree"]


def parse(selector: str) -> Tree:
    tree: Tree = {}
    position = 0

    def parse_list(target: Tree, end: str | None) -> None:
        nonlocal position
        while position < len(selector):
            name_start = position
            while position < len(selector) and selector[position] not in ",()/":
                position += 1
            node = target.setdefault(selector[name_start:position].strip(), {})
            while position < len(selector) and selector[position] == "/":
                position += 1
                name_start = position
                while position < len(selector) and selector[position] not in ",()/":
                    position += 1
                node = node.setdefault(selector[name_start:position].strip(), {})
            if position < len(selector) and selector[position] == "(":
                position += 1
                parse_list(node, ")")
            if position < len(selector) and selector[position] == ",":
                position += 1
                continue
            if position < len(selector) and selector[position] == ")":
                if end != ")":
                    raise ValueError("unbalanced parenthesis")
                position += 1
                return
        if end == ")":
            raise ValueError("unbalanced parenthesis")

    parse_list(tree, None)
    return tree


def apply(value: Any, tree: Tree) -> Any:
    if not tree:
        return value
    if isinstance(value, list):
        return [apply(item, tree) for item in value]
    if isinstance(value, dict):
        return {key: apply(value[key], sub) for key, sub in tree.items() if key in value}
    return value
