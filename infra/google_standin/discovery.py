"""Request checking against the calendar v3 discovery document shipped inside google-api-python-client.

The stand-in must reject what Google rejects: unknown query parameters, badly typed parameters and unknown body fields.
"""

from __future__ import annotations

import json
import re
import urllib.parse
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path
from typing import Any

from .clock import parse_rfc3339
from .errors import ApiError, bad_request, invalid, not_found, required

SERVICE_PATH = "/calendar/v3/"


def discovery_doc_path() -> Path:
    """Locate calendar.v3.json inside the installed googleapiclient package."""
    import googleapiclient

    return Path(googleapiclient.__file__).parent / "discovery_cache" / "documents" / "calendar.v3.json"


@lru_cache(maxsize=1)
def load_discovery() -> dict[str, Any]:
    return json.loads(discovery_doc_path().read_text(encoding="utf-8"))


@dataclass(frozen=True)
class ApiMethod:
    """One discovery method with a compiled path matcher."""

    method_id: str
    http_method: str
    path: str
    regex: re.Pattern[str]
    literal_segments: int
    spec: dict[str, Any]

    @property
    def parameters(self) -> dict[str, Any]:
        return self.spec.get("parameters", {})

    @property
    def scopes(self) -> list[str]:
        return self.spec.get("scopes", [])

    @property
    def request_schema(self) -> str | None:
        request = self.spec.get("request")
        return request.get("$ref") if request else None


def _iter_methods(resources: dict[str, Any]):
    for resource in resources.values():
        yield from resource.get("methods", {}).values()
        yield from _iter_methods(resource.get("resources", {}))


def _compile(path: str) -> tuple[re.Pattern[str], int]:
    parts = []
    literals = 0
    for segment in path.split("/"):
        match = re.fullmatch(r"\{\+?(\w+)\}", segment)
        if match:
            parts.append(f"(?P<{match.group(1)}>[^/]+)")
        else:
            parts.append(re.escape(segment))
            literals += 1
    return re.compile("^" + "/".join(parts) + "$"), literals


class Discovery:
    """Routes `/calendar/v3/...` requests to discovery methods and validates them."""

    def __init__(self, doc: dict[str, Any] | None = None) -> None:
        self.doc = doc or load_discovery()
        self.global_params: dict[str, Any] = self.doc.get("parameters", {})
        self.schemas: dict[str, Any] = self.doc["schemas"]
        methods = []
        for spec in _iter_methods(self.doc["resources"]):
            regex, literals = _compile(spec["path"])
            methods.append(ApiMethod(spec["id"], spec["httpMethod"], spec["path"], regex, literals, spec))
        # Literal segments win over placeholders: events/watch must not be read as events/{eventId}.
        self.methods = sorted(methods, key=lambda m: -m.literal_segments)
        self.by_id = {m.method_id: m for m in methods}

    def route(self, http_method: str, relative_path: str) -> tuple[ApiMethod, dict[str, str]]:
        """Find the method for a path below the service path; 404 like Google when nothing matches."""
        path_matches = False
        for method in self.methods:
            match = method.regex.match(relative_path)
            if not match:
                continue
            path_matches = True
            if method.http_method == http_method:
                params = {k: urllib.parse.unquote(v) for k, v in match.groupdict().items()}
                return method, params
        if path_matches:
            raise ApiError(405, "httpMethodNotAllowed", f"Method {http_method} is not allowed for this path.")
        raise not_found()

    # -- query parameters -------------------------------------------------------------------------------------------
    def parse_query(self, method: ApiMethod, query: dict[str, list[str]]) -> dict[str, Any]:
        """Type-check query parameters; unknown names or bad values are a 400 as on Google."""
        parsed: dict[str, Any] = {}
        for name, values in query.items():
            spec = method.parameters.get(name) or self.global_params.get(name)
            if spec is None or spec.get("location") == "path":
                raise bad_request(
                    f'Invalid JSON payload received. Unknown name "{name}": Cannot bind query parameter. '
                    f"Field '{name}' could not be found in request message."
                )
            converted = [self._convert(name, spec, value) for value in values]
            if spec.get("repeated"):
                parsed[name] = converted
            elif len(converted) > 1:
                raise invalid(f"Parameter {name} must not be repeated.", location=name)
            else:
                parsed[name] = converted[0]
        for name, spec in method.parameters.items():
            if spec.get("required") and spec.get("location") == "query" and name not in parsed:
                raise required(name)
        return parsed

    @staticmethod
    def _convert(name: str, spec: dict[str, Any], value: str) -> Any:
        kind = spec.get("type")
        if kind == "integer":
            if not re.fullmatch(r"-?\d+", value):
                raise invalid(f"Invalid value '{value}'. Values must match the following regular expression: "
                              "'-?\\d+'", location=name)
            number = int(value)
            if "minimum" in spec and number < int(spec["minimum"]):
                raise invalid(f"Invalid value '{value}'. Values must be at least {spec['minimum']}.", location=name)
            if "maximum" in spec and number > int(spec["maximum"]):
                raise invalid(f"Invalid value '{value}'. Values must be at most {spec['maximum']}.", location=name)
            return number
        if kind == "boolean":
            if value.lower() not in ("true", "false"):
                raise invalid(f"Invalid boolean value: '{value}'.", location=name)
            return value.lower() == "true"
        if "enum" in spec and value not in spec["enum"]:
            raise invalid(f"Invalid value for {name}: {value}", location=name)
        if spec.get("format") == "date-time":
            try:
                parse_rfc3339(value)
            except ValueError as error:
                raise ApiError(400, "badRequest", f"Bad Request: invalid {name}") from error
        return value

    # -- bodies -----------------------------------------------------------------------------------------------------
    def check_body(self, schema_name: str, body: Any) -> None:
        """Reject unknown fields and wrong JSON types, recursively through $ref schemas."""
        if not isinstance(body, dict):
            raise bad_request("Invalid JSON payload received. Expected an object.")
        self._check_value(self.schemas[schema_name], body, "resource")

    def _check_value(self, spec: dict[str, Any], value: Any, where: str) -> None:
        if value is None:  # null clears a field (patch semantics); Google accepts it anywhere.
            return
        if "$ref" in spec:
            spec = self.schemas[spec["$ref"]]
        kind = spec.get("type")
        if kind == "object" or (kind is None and "properties" in spec):
            if not isinstance(value, dict):
                raise self._type_error(where, "object", value)
            properties = spec.get("properties")
            extra = spec.get("additionalProperties")
            for key, item in value.items():
                if properties and key in properties:
                    self._check_value(properties[key], item, f"{where}.{key}")
                elif extra is not None:
                    self._check_value(extra, item, f"{where}.{key}")
                elif properties is not None or extra is None:
                    raise bad_request(f'Invalid JSON payload received. Unknown name "{key}" at \'{where}\': '
                                      "Cannot find field.")
        elif kind == "array":
            if not isinstance(value, list):
                raise self._type_error(where, "array", value)
            for index, item in enumerate(value):
                self._check_value(spec.get("items", {}), item, f"{where}[{index}]")
        elif kind == "string":
            if spec.get("format") in ("int64", "uint64"):
                if isinstance(value, bool) or not (isinstance(value, int) or
                                                   (isinstance(value, str) and re.fullmatch(r"-?\d+", value))):
                    raise self._type_error(where, "int64", value)
            elif not isinstance(value, str):
                raise self._type_error(where, "string", value)
            elif "enum" in spec and value not in spec["enum"]:
                raise invalid(f"Invalid value for {where}: {value}")
        elif kind == "integer":
            is_int = isinstance(value, int) and not isinstance(value, bool)
            if not is_int and not (isinstance(value, str) and re.fullmatch(r"-?\d+", value)):
                raise self._type_error(where, "integer", value)
        elif kind == "boolean" and not isinstance(value, bool):
            raise self._type_error(where, "boolean", value)

    @staticmethod
    def _type_error(where: str, expected: str, value: Any) -> ApiError:
        return bad_request(f"Invalid JSON payload received. Invalid value at '{where}' ({expected}), "
                           f"{json.dumps(value)[:80]}")
