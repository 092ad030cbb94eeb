"""A function backend in Python: answers `GET /fn/hello?name=Ada` with a greeting, as a
`wasi:http/proxy` component (componentize-py, world `function` of ../wit). The greeting comes from
the `GREETING` environment variable (the function's `env:` in the gateway's config); the method,
path and the `x-consumer-username` header a filter (key-auth) may have set are echoed, so the
route's filter chain around the function shows. A POST body is read and its size told, to show the
request body streaming in.

The class `IncomingHandler` implements the export `wasi:http/incoming-handler` with the WASI types
as componentize-py generates them (`wit_world.imports.types`), synchronously: each blocking call
waits in the host.
"""

import os
from urllib.parse import parse_qs, urlsplit

from componentize_py_types import Err, Ok
from wit_world import exports
from wit_world.imports import streams
from wit_world.imports.types import (
    Fields,
    IncomingRequest,
    Method_Post,
    OutgoingBody,
    OutgoingResponse,
    ResponseOutparam,
)

# At most this many bytes per `blocking-write-and-flush` (the WASI limit).
WRITE_MAX = 4096


def method_name(m) -> str:
    return getattr(m, "value", None) or type(m).__name__.removeprefix("Method_").upper()


def read_all(request: IncomingRequest) -> int:
    """Reads the request body to its end; returns its size."""
    size = 0
    with request.consume() as body:
        with body.stream() as stream:
            while True:
                try:
                    size += len(stream.blocking_read(65536))
                except Err as e:
                    if isinstance(e.value, streams.StreamError_Closed):
                        return size
                    raise


class IncomingHandler(exports.IncomingHandler):
    def handle(self, request: IncomingRequest, response_out: ResponseOutparam) -> None:
        method = request.method()
        path = request.path_with_query() or "/"
        with request.headers() as headers:
            consumer = headers.get("x-consumer-username")
        name = parse_qs(urlsplit(path).query).get("name", ["world"])[0] or "world"
        greeting = os.environ.get("GREETING", "Hello")
        text = f"{greeting}, {name}! (Python answered {method_name(method)} {path})\n"
        if consumer:
            text += f"consumer: {consumer[0].decode()}\n"
        if isinstance(method, Method_Post):
            text += f"read {read_all(request)} bytes\n"

        response = OutgoingResponse(
            Fields.from_list(
                [
                    ("content-type", b"text/plain; charset=utf-8"),
                    ("x-function", b"python-hello"),
                ]
            )
        )
        body = response.body()
        ResponseOutparam.set(response_out, Ok(response))
        data = text.encode()
        with body.write() as stream:
            for i in range(0, len(data), WRITE_MAX):
                stream.blocking_write_and_flush(data[i : i + WRITE_MAX])
        OutgoingBody.finish(body, None)
