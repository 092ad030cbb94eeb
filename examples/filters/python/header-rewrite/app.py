"""header-rewrite: sets, appends and removes request headers (in on_request) and response headers
(in on_response), as the route's config says. See examples/filters/README.md.

    config:
      request:  {set: {x-env: prod}, add: {x-tag: a}, remove: [x-debug]}
      response: {set: {x-frame-options: DENY}, remove: [server]}
"""

import json
import re

import wit_world
from componentize_py_types import Err
from wit_world.imports import types

TOKEN = re.compile(r"^[!#$%&'*+\-.^_`|~0-9A-Za-z]+$")


class Edits:
    """The edits of one direction, applied in the order remove, set, add."""

    def __init__(self) -> None:
        self.set: list[tuple[str, str]] = []
        self.add: list[tuple[str, str]] = []
        self.remove: list[str] = []

    def apply(self, target) -> None:
        # `target` is the request or the response: both have the three calls.
        for name in self.remove:
            target.remove_header(name)
        for name, value in self.set:
            target.set_header(name, value)
        for name, value in self.add:
            target.append_header(name, value)


edits: dict[str, Edits | None] = {"request": None, "response": None}


def header_name(field: str, name: str) -> str:
    if not TOKEN.match(name):
        raise Err(f"{field}: `{name}` is not a valid header name")
    return name.lower()


def pairs(field: str, value) -> list[tuple[str, str]]:
    if not isinstance(value, dict):
        raise Err(f"{field}: expected a map of header names to strings")
    out = []
    for k in sorted(value):
        f = f"{field}.{k}"
        name = header_name(f, k)
        v = value[k]
        if not isinstance(v, str):
            raise Err(f"{f}: the value must be a string, not {json.dumps(v)}")
        if any(c in v for c in "\r\n\0"):
            raise Err(f"{f}: the value must not contain CR, LF or NUL")
        out.append((name, v))
    return out


def names(field: str, value) -> list[str]:
    if not isinstance(value, list):
        raise Err(f"{field}: expected a list of header names")
    out = []
    for i, n in enumerate(value):
        if not isinstance(n, str):
            raise Err(f"{field}[{i}]: expected a header name")
        out.append(header_name(f"{field}[{i}]", n))
    return out


def section(field: str, value) -> Edits | None:
    if value is None:
        return None
    if not isinstance(value, dict):
        raise Err(f"{field}: expected a map with set, add and remove")
    out = Edits()
    for k, v in value.items():
        f = f"{field}.{k}"
        if k == "set":
            out.set = pairs(f, v)
        elif k == "add":
            out.add = pairs(f, v)
        elif k == "remove":
            out.remove = names(f, v)
        else:
            raise Err(f"{f}: unknown key `{k}` (expected set, add or remove)")
    return out


class WitWorld(wit_world.WitWorld):
    def init(self, config: str) -> types.Options:
        doc = {}
        if config.strip():
            try:
                doc = json.loads(config)
            except ValueError as e:
                raise Err(f"expected a map with request and response sections: {e}")
        if not isinstance(doc, dict):
            raise Err("expected a map with request and response sections")
        for k in doc:
            if k not in ("request", "response"):
                raise Err(f"unknown key `{k}` (expected request or response)")
        edits["request"] = section("request", doc.get("request"))
        edits["response"] = section("response", doc.get("response"))
        return types.Options(types.BodyMode.SKIP, types.BodyMode.SKIP)

    def on_request(self, req: types.Request) -> types.Action:
        if edits["request"] is not None:
            edits["request"].apply(req)
        return types.Action_Continue()

    def on_response(self, resp: types.Response) -> types.Action:
        if edits["response"] is not None:
            edits["response"].apply(resp)
        return types.Action_Continue()

    def on_request_body(self, req: types.Request, end_of_stream: bool) -> types.Action:
        return types.Action_Continue()

    def on_response_body(self, resp: types.Response, end_of_stream: bool) -> types.Action:
        return types.Action_Continue()
