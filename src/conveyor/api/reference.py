"""The API reference in Markdown, rendered from the app's OpenAPI schema:

    python -m conveyor.api.reference > docs/api.md

Every route with its method, path, summary, parameters, request body, responses and error codes;
then every shape the routes use. tests/api/test_reference.py checks docs/api.md is current.
"""

from __future__ import annotations

import sys
from collections.abc import Iterator, Mapping
from typing import Any

from conveyor.api import openapi_schema

Schema = Mapping[str, Any]

HEADER = """\
# The REST API reference

<!-- Generated from the OpenAPI schema by `python -m conveyor.api.reference > docs/api.md`.
     Do not edit: change the routes (src/conveyor/api/routes.py) or the views, then regenerate. -->

`conveyor server` serves this API (see [server.md](server.md)); the running server also serves
the schema at `/openapi.json` and interactive docs at `/docs`. Times are ISO 8601 in UTC,
durations are seconds. Once the server's store has a user, every route but `/healthz` needs a
token (`Authorization: Bearer cvy_...`) and a role in the team it acts on: see
[teams.md](teams.md).
"""

PROBLEM = '`{"detail": "..."}`'

#: The error answers: status, when, body.
ERRORS = [
    (
        "400",
        "the request cannot be carried out: the project's code does not load, a graph is wrong, "
        "a body is not JSON",
        PROBLEM,
    ),
    (
        "401",
        "no token, or one unknown, expired or revoked (only once the store has a user); "
        "`WWW-Authenticate: Bearer`",
        PROBLEM,
    ),
    ("403", "the caller's role is not enough: the answer names the role needed", PROBLEM),
    (
        "404",
        "no such run, pipeline, backfill or task (an unknown pipeline's answer lists the known ones), "
        "or one of a team the caller is not in",
        PROBLEM,
    ),
    ("405", "the path has no such method (`Allow` lists those it has)", PROBLEM),
    (
        "409",
        "the run is busy: still going, or driven by `conveyor run` elsewhere; the user or team exists",
        PROBLEM,
    ),
    ("413", "the request body is larger than the server's `--max-body` (default 1 MiB)", PROBLEM),
    (
        "422",
        'a field is invalid: one entry per bad field, `loc` says where (`["body", "params", NAME]`, '
        '`["query", NAME]`, ...)',
        '`{"detail": [{"loc": [...], "msg": "...", "type": "..."}]}`',
    ),
    ("503", "the store does not answer", PROBLEM),
]


def render(schema: Schema) -> str:
    return "\n".join(_lines(schema)).rstrip() + "\n"


def _lines(schema: Schema) -> Iterator[str]:
    yield HEADER
    yield "## Errors\n"
    yield "| status | when | body |"
    yield "| --- | --- | --- |"
    for status, when, body in ERRORS:
        yield f"| {status} | {when} | {body} |"
    yield "\nA 500 is a bug: its traceback is in the server's log.\n"
    info = schema["info"]
    yield f"Schema: {info['title']} {info['version']}, OpenAPI {schema['openapi']}.\n"
    operations = [
        (path, method.upper(), op) for path, ops in schema["paths"].items() for method, op in ops.items()
    ]
    yield "## Routes\n"
    yield "| method | path | summary |"
    yield "| --- | --- | --- |"
    for path, method, op in operations:
        yield f"| {method} | [`{path}`](#{_anchor(method, path)}) | {_cell(op['summary'])} |"
    yield ""
    for tag in schema.get("tags", []):
        tagged = [(p, m, op) for p, m, op in operations if op["tags"][0] == tag["name"]]
        if not tagged:
            continue
        yield f"## {tag['name'].capitalize()}\n"
        yield f"{tag['description']}.\n"
        for path, method, op in tagged:
            yield from _operation(path, method, op)
    yield "## Shapes\n"
    for name, shape in sorted(schema["components"]["schemas"].items()):
        if name in ("HTTPValidationError", "ValidationError"):
            continue  # FastAPI's own 422 shape: documented as Invalid
        yield f"### {name}\n"
        if shape.get("description"):
            yield f"{_text(shape['description'])}\n"
        yield from _fields(shape)


def _operation(path: str, method: str, op: Schema) -> Iterator[str]:
    yield f'### <a id="{_anchor(method, path)}"></a>`{method} {path}`\n'
    yield f"{op['summary']}.\n"
    params = op.get("parameters", [])
    if params:
        yield "| parameter | in | type | required | default | description |"
        yield "| --- | --- | --- | --- | --- | --- |"
        for p in params:
            s = p["schema"]
            yield (
                f"| `{p['name']}` | {p['in']} | {_type(s)} | {'yes' if p.get('required') else 'no'} | "
                f"{_default(s)} | {_cell(p.get('description', s.get('description', '')))} |"
            )
        yield ""
    body = op.get("requestBody")
    if body is not None:
        [(media, content)] = body["content"].items()
        required = "required" if body.get("required") else "optional"
        yield f"Request body ({media}, {required}): {_type(content['schema'])}.\n"
    yield "| status | meaning | body |"
    yield "| --- | --- | --- |"
    for status, answer in sorted(op["responses"].items()):
        kinds = [f"{_type(c.get('schema', {}))} ({media})" for media, c in answer.get("content", {}).items()]
        yield f"| {status} | {_cell(answer['description'])} | {'; '.join(kinds) or '-'} |"
    yield ""


def _fields(shape: Schema) -> Iterator[str]:
    props = shape.get("properties", {})
    if not props:
        return
    required = set(shape.get("required", []))
    yield "| field | type | required | default | description |"
    yield "| --- | --- | --- | --- | --- |"
    for name, s in props.items():
        yield (
            f"| `{name}` | {_type(s)} | {'yes' if name in required else 'no'} | {_default(s)} | "
            f"{_cell(s.get('description', ''))} |"
        )
    if shape.get("additionalProperties") is False:
        yield "\nNo other fields are accepted."
    yield ""


def _type(s: Schema) -> str:
    """A JSON schema as a short type: ``string (date-time)``, ``[RunView](#runview)``, ..."""
    if "$ref" in s:
        name = s["$ref"].rsplit("/", 1)[-1]
        return f"[{name}](#{name.lower()})"
    if "anyOf" in s:
        kinds = [k for k in s["anyOf"] if k.get("type") != "null"]
        text = " or ".join(_type(k) for k in kinds)
        return f"{text} or null" if len(kinds) < len(s["anyOf"]) else text
    if "enum" in s:
        return " \\| ".join(f"`{v}`" for v in s["enum"])
    kind = s.get("type")
    if kind == "array":
        return f"list of {_type(s.get('items', {}))}"
    if kind == "object":
        extra = s.get("additionalProperties")
        if isinstance(extra, Mapping) and extra:
            return f"object of {_type(extra)}"
        return "object"
    if kind is None:
        return "any JSON"
    bounds = []
    if "minimum" in s:
        bounds.append(f"≥ {_number(s['minimum'])}")
    if "maximum" in s:
        bounds.append(f"≤ {_number(s['maximum'])}")
    if "maxLength" in s:
        bounds.append(f"at most {s['maxLength']} characters")
    if "format" in s:
        bounds.insert(0, s["format"])
    return f"{kind} ({', '.join(bounds)})" if bounds else str(kind)


def _number(x: float) -> str:
    return str(int(x)) if float(x).is_integer() else str(x)


def _default(s: Schema) -> str:
    if "default" not in s:
        return ""
    value = s["default"]
    if value is None:
        return "null"
    if isinstance(value, bool):
        return f"`{str(value).lower()}`"
    return f"`{value}`" if not isinstance(value, str) else f'`"{value}"`'


def _anchor(method: str, path: str) -> str:
    cleaned = "".join(c if c.isalnum() else "-" for c in f"{method} {path}".lower())
    return "-".join(part for part in cleaned.split("-") if part)


def _text(text: str) -> str:
    return " ".join(text.split())


def _cell(text: str) -> str:
    return _text(text).replace("|", "\\|")


def main() -> None:
    sys.stdout.write(render(openapi_schema()))


if __name__ == "__main__":
    main()
