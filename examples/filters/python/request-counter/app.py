"""request-counter: counts requests in the shared store (kv increment by 1 on `key`, default the
route's name) and puts the request's number on its response as `x-request-count`; adds 1 to the
plugin counter `requests_total`. See examples/filters/README.md.

    config: {key: hits}
"""

import json

import wit_world
from componentize_py_types import Err
from wit_world.imports import facts, kv, log, metrics, types

key: str | None = None
# This request's number: an instance serves one request at a time, and on_request resets it.
count: int | None = None


def why(e: Err) -> str:
    """A host call's WIT error, as text."""
    v = e.value
    inner = getattr(v, "value", None)
    return type(v).__name__ + (f": {inner}" if inner is not None else "")


class WitWorld(wit_world.WitWorld):
    def init(self, config: str) -> types.Options:
        global key
        doc = {}
        if config.strip():
            try:
                doc = json.loads(config)
            except ValueError as e:
                raise Err(f"config: expected a map: {e}")
        if not isinstance(doc, dict):
            raise Err("config: expected a map")
        for k, v in doc.items():
            if k != "key":
                raise Err(f"config.{k}: unknown field `{k}`, expected `key`")
            if not isinstance(v, str) or not v:
                raise Err(f"config.key: expected a non-empty string, found {json.dumps(v)}")
        key = doc.get("key")
        return types.Options(types.BodyMode.SKIP, types.BodyMode.SKIP)

    def on_request(self, req: types.Request) -> types.Action:
        global count
        count = None
        k = key if key is not None else facts.get().route
        try:
            count = kv.increment(k, 1)
        except Err as e:
            log.log(log.Level.WARN, f"request-counter: cannot count `{k}`: {why(e)}")
        try:
            metrics.counter_add("requests_total", 1)
        except Err as e:
            log.log(log.Level.WARN, f"request-counter: requests_total: {why(e)}")
        return types.Action_Continue()

    def on_response(self, resp: types.Response) -> types.Action:
        global count
        if count is not None:
            resp.set_header("x-request-count", str(count))
            count = None
        return types.Action_Continue()

    def on_request_body(self, req: types.Request, end_of_stream: bool) -> types.Action:
        return types.Action_Continue()

    def on_response_body(self, resp: types.Response, end_of_stream: bool) -> types.Action:
        return types.Action_Continue()
