"""The gateway filter {{name}}, made by `gateway plugin new python {{name}}`: change the methods.

It answers 403 to requests under /private, tells the backend it passed (`x-filter: python`), and
adds `x-hello: <greeting>` to responses, where the greeting is the route's config (a string;
default "world").

componentize-py builds this module against wit/world.wit (world `filter`): the class `WitWorld`
implements the world's exports, and `wit_world.imports` holds the host interfaces (generated at
build time; `componentize-py -d wit -w filter bindings .` writes them out for an editor). WIT types
in Python: records and variant cases are dataclasses (`types.Action_Continue()`), enums `Enum`s,
list<u8> `bytes`, an option the value or None. A host call that returns an error raises
`componentize_py_types.Err` (its `value` is the WIT error); raising `Err("...")` in `init` rejects
the config with that message.
"""

import wit_world
from componentize_py_types import Err
from wit_world.imports import log, types

# Module state lives as long as the instance: with `instance_mode: reuse` (what a Python filter
# wants), across requests. Keep only config here, nothing of one request.
greeting = "world"


class WitWorld(wit_world.WitWorld):
    def init(self, config: str) -> types.Options:
        global greeting
        g = config.strip() or "world"
        if "\r" in g or "\n" in g:
            raise Err("the greeting must be one line")
        greeting = g
        log.log(log.Level.DEBUG, f"hello filter configured with greeting {g}")
        return types.Options(request_body=types.BodyMode.SKIP, response_body=types.BodyMode.SKIP)

    def on_request(self, req: types.Request) -> types.Action:
        if req.path().startswith("/private"):
            body = b"forbidden\n"
            return types.Action_Respond(
                types.LocalResponse(403, [("content-type", "text/plain")], body)
            )
        req.set_header("x-filter", "python")
        return types.Action_Continue()

    def on_response(self, resp: types.Response) -> types.Action:
        resp.set_header("x-hello", greeting)
        return types.Action_Continue()

    # The body phases are not asked for (SKIP in init); the world still has them.
    def on_request_body(self, req: types.Request, end_of_stream: bool) -> types.Action:
        return types.Action_Continue()

    def on_response_body(self, resp: types.Response, end_of_stream: bool) -> types.Action:
        return types.Action_Continue()
