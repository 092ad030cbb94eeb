#!/usr/bin/env python3
"""The gateway's benchmark (issue 8): the gateway against nginx and against itself, in one run.

    cargo xtask bench            (or: python3 bench/run.py)
    python3 bench/run.py --help  (rounds, trial length, connections, a quick smoke run...)

What it does, in order:

1. Installs nginx, wrk, h2load and nghttp (nghttp2-client), valgrind and openssl from Debian if any is missing.
2. Builds `cargo build --release -p gateway`, the benchmark's Proxy-Wasm filters (bench/filters), its
   no-op WIT filter (bench/filters-wit, Rust SDK) and no-op Go filter (bench/filters-go, Go SDK), and
   makes a self-signed certificate that nginx and the gateway both serve in the TLS scenarios.
3. Starts the upstream (nginx answering a fixed 100-byte body, a 1 MiB file, and on an h2c port a
   fixed gRPC answer), nginx as a reverse proxy to it, and one gateway process per gateway scenario,
   all on 127.0.0.1. The proxies under test are pinned to core 1 (`taskset -c 1`), the upstream and
   the load generators to core 0 (the `-2w` rows: two gateway worker threads on both cores).
4. Load: wrk (HTTP/1.1 keep-alive, 1 thread, fixed connections) in short trials, the scenarios
   interleaved round by round; h2load for HTTP/2 and gRPC unary calls the same way. Per trial: requests/s, p50/p99
   latency, CPU time of the proxy process from /proc/<pid>/stat (utime+stime) divided by requests,
   RSS, and how much CPU other processes on the machine used meanwhile.
5. Callgrind: each gateway scenario (and nginx, for comparison) runs under valgrind; a simple client
   sends a warm-up, then a fixed number of requests between two `callgrind_control --dump`s, so the
   instructions per request exclude start-up; the idle cost (timers) is measured and subtracted.
6. Prints a table, writes bench/results/latest.json and BENCHMARKS.md (keeping its Notes section).

Standard library only. Everything started is killed on exit.
"""

import argparse
import datetime
import glob
import http.client
import json
import os
import re
import resource
import shutil
import signal
import socket
import ssl
import statistics
import subprocess
import sys
import time

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
WORK = os.environ.get("BENCH_WORK") or os.path.join(ROOT, "target", "bench", "run")
RESULTS = os.path.join(ROOT, "bench", "results", "latest.json")
BENCHMARKS_MD = os.path.join(ROOT, "BENCHMARKS.md")
# BENCH_GATEWAY: another build to measure (a baseline built elsewhere, for a before/after).
BUILT_GATEWAY = os.environ.get("BENCH_GATEWAY") or os.path.join(ROOT, "target", "release", "gateway")
GATEWAY = os.path.join(WORK, "gateway")  # a copy: other builds may replace target/release/gateway mid-run
FILTERS_DIR = os.path.join(ROOT, "bench", "filters")
FILTERS_TARGET = os.path.join(ROOT, "target", "bench")
FILTERS_WASM = os.path.join(FILTERS_TARGET, "wasm32-wasip1", "release", "bench_filters.wasm")
WIT_FILTERS_DIR = os.path.join(ROOT, "bench", "filters-wit")
WIT_FILTERS_TARGET = os.path.join(ROOT, "target", "bench-wit")
WIT_FILTERS_WASM = os.path.join(WIT_FILTERS_TARGET, "wasm32-wasip2", "release", "bench_filters_wit.wasm")
GO_FILTER_DIR = os.path.join("bench", "filters-go")  # relative: `cargo xtask go-filter build` takes it so
GO_FILTER_WASM = os.path.join(ROOT, "target", "bench-go", "bench_filters_go.wasm")
# The function backend in Rust (bench/function-rust): answers the upstream's body itself.
RUST_FUNCTION_DIR = os.path.join(ROOT, "bench", "function-rust")
RUST_FUNCTION_TARGET = os.path.join(ROOT, "target", "bench-function-rust")
RUST_FUNCTION_WASM = os.path.join(RUST_FUNCTION_TARGET, "wasm32-wasip2", "release", "bench_function_rust.wasm")
# The WebSocket echo upstream and load client (bench/ws-echo, native): wrk and h2load do not speak it.
WS_ECHO_DIR = os.path.join(ROOT, "bench", "ws-echo")
WS_ECHO_TARGET = os.path.join(ROOT, "target", "bench-ws-echo")
WS_ECHO = os.path.join(WS_ECHO_TARGET, "release", "bench-ws-echo")
WS_MESSAGE_BYTES = 128  # one binary message each way per round trip
# The JavaScript and Python examples (componentize-js, componentize-py), built by `cargo xtask guests`.
GUESTS_DIR = os.path.join(ROOT, "target", "guests")
JS_FILTER_WASM = os.path.join(GUESTS_DIR, "js_header_rewrite.wasm")
PY_FILTER_WASM = os.path.join(GUESTS_DIR, "python_header_rewrite.wasm")
JS_FUNCTION_WASM = os.path.join(GUESTS_DIR, "js_hello.wasm")
PY_FUNCTION_WASM = os.path.join(GUESTS_DIR, "python_hello.wasm")
TLS_DIR = os.path.join(WORK, "tls")  # the certificate both TLS proxies serve, made at bench time
TLS_CERT = os.path.join(TLS_DIR, "cert.pem")
TLS_KEY = os.path.join(TLS_DIR, "key.pem")

PROXY_CORE = "1"  # the proxy under test
LOAD_CORE = "0"  # wrk / h2load and the upstream
HOST = "127.0.0.1"
# BENCH_PORT_OFFSET moves every port below, so that two runs (say, a before and an after) can share
# the machine; each needs its own BENCH_WORK too.
PORT_OFFSET = int(os.environ.get("BENCH_PORT_OFFSET") or 0)
UPSTREAM_PORT = 18000 + PORT_OFFSET
REDIS_PORT = 18500 + PORT_OFFSET  # the redis-server of the rate-limiting scenario in Redis (load core)
NGINX_PORT = 18001 + PORT_OFFSET
NGINX_H2_PORT = 18002 + PORT_OFFSET
NGINX_TLS_PORT = 18003 + PORT_OFFSET
NGINX_GRPC_PORT = 18004 + PORT_OFFSET  # nginx's h2c listener with grpc_pass
WS_UPSTREAM_PORT = 18005 + PORT_OFFSET  # the WebSocket echo upstream (load core)
GRPC_UPSTREAM_PORT = 18006 + PORT_OFFSET  # the gRPC upstream: an h2c server of the upstream nginx
GATEWAY_PORT0 = 18010 + PORT_OFFSET  # + scenario index; admin on + 1000
UPSTREAM_BODY = '{"ok":true,"from":"bench-upstream","pad":"' + "x" * 55 + '"}\n'  # 100 bytes
assert len(UPSTREAM_BODY) == 100
AUTH_HEADERS = {"authorization": "Bearer bench-token", "x-internal": "1"}
DOWNLOAD_BYTES = 1 << 20  # the upstream's /get1m: a 1 MiB file
# gRPC unary (issue 21): one method, one fixed request and one fixed reply, each a length-prefixed
# message (flag 0, 4-byte big-endian length, then protobuf: field 1, a string).
GRPC_PATH = "/bench.v1.Bench/Unary"
GRPC_REQUEST_MSG = b"\x0a\x05bench"
GRPC_REPLY_MSG = b"\x0a\x14hello from upstream!"
GRPC_DIR = os.path.join(WORK, "grpc")
GRPC_REQUEST = os.path.join(GRPC_DIR, "request.bin")  # h2load -d
GRPC_H2LOAD_ARGS = ["-d", GRPC_REQUEST, "-H", "content-type: application/grpc", "-H", "te: trailers"]
CLOSE = {"connection": "close"}  # a new connection (and TLS handshake) per request

# ---------------------------------------------------------------------------------------------------
# Scenarios
#
# server: "upstream" (direct), "nginx", or a gateway config (dict below).
# Each gateway config becomes its own gateway process: CPU and RSS are that process's alone.


GUEST_REWRITE = {"response": {"set": {"x-bench": "1"}}}
FUNCTION_ROUTE = {"name": "bench", "match": {"path": {"prefix": "/"}}, "function": "hello"}


def function_entry(path, mode="reuse"):
    """A function on warm instances (or `fresh`), with room for the load's connections."""
    return {"functions": [{"name": "hello", "path": path, "instance_mode": mode,
                           "env": {"GREETING": "Hello"}, "limits": {"concurrency": 64}}]}


def gw_route(name, path_match, filters=(), **extra):
    r = {"name": name, "match": {"path": path_match}, "upstream": "up"}
    if filters:
        r["filters"] = [{"plugin": "bench", "config": c} if isinstance(c, str) else
                        {"plugin": c[0], "config": c[1]} for c in filters]
    r.update(extra)
    return r


def many_routes(n):
    """`n` routes of which one (`bench`, a template route) is benchmarked: the others are a third
    exact paths, a third prefixes and a third templates, none of which matches /bench/items/42."""
    routes = []
    for i in range(n - 1):
        kind = i % 3
        if kind == 0:
            m = {"exact": f"/s{i:05d}/health"}
        elif kind == 1:
            m = {"prefix": f"/s{i:05d}/"}
        else:
            m = {"template": f"/s{i:05d}/items/{{id}}"}
        routes.append(gw_route(f"r{i:05d}", m))
    routes.insert((n - 1) // 2, gw_route("bench", {"template": "/bench/items/{id}"}))
    return routes


REALISTIC_ROUTE = gw_route(
    "bench",
    {"prefix": "/"},
    filters=["auth", "ratelimit"],
    request_headers={"set": {"x-team": "bench"}, "add": {"x-via": "gateway"}, "remove": ["x-internal"]},
    response_headers={"set": {"cache-control": "no-store"}, "remove": ["server"]},
)

# The catalog's authentication chain: built-in key-auth (one consumer) and cors, no `plugins:` entry,
# with the route's own header rewrites.
AUTH_CHAIN_ROUTE = gw_route(
    "bench",
    {"prefix": "/"},
    filters=[("cors", {"allow_origins": ["https://app.example"]}),
             ("key-auth", {"key_names": ["apikey"], "hide_credentials": True})],
    request_headers={"set": {"x-team": "bench"}, "add": {"x-via": "gateway"}},
    response_headers={"set": {"cache-control": "no-store"}, "remove": ["server"]},
)
AUTH_CHAIN_HEADERS = {"apikey": "bench-key", "origin": "https://app.example"}
# What a gateway is asked for before its trials, to see it ready: the headers each filter chain the
# scenarios use lets through (the Proxy-Wasm auth filter's token, the catalog chain's key).
READY_HEADERS = {**AUTH_HEADERS, **AUTH_CHAIN_HEADERS}


def ratelimit_route(policy):
    """The built-in rate-limiting, one fixed-window limit per client IP that the benchmark never
    reaches (every request counts, none is refused)."""
    return gw_route("bench", {"prefix": "/"}, filters=[("rate-limiting", {
        "limits": [{"per": "minute", "limit": 1_000_000_000}], "by": "ip", "policy": policy})])


GATEWAYS = {
    "gw": [gw_route("bench", {"prefix": "/"})],
    "gw-auth": [AUTH_CHAIN_ROUTE],
    "gw-auth-reuse": [AUTH_CHAIN_ROUTE],
    "gw-ratelimit": [ratelimit_route("local")],
    # The built-in proxy-cache: after the first request every one is a hit, answered from the
    # gateway's memory (the upstream is not asked).
    "gw-cache": [gw_route("bench", {"prefix": "/"}, filters=[("proxy-cache", {"ttl": "1h"})])],
    "gw-ratelimit-redis": [ratelimit_route("cluster")],
    "gw-noop1": [gw_route("bench", {"prefix": "/"}, filters=["noop"])],
    "gw-noop10": [gw_route("bench", {"prefix": "/"}, filters=["noop"] * 10)],
    # The same no-op filter with `skip:` (issue 17): of the bodies and trailers only (what a header
    # filter would skip), and of every per-request callback (what a no-op is).
    "gw-noop1-headers": [gw_route("bench", {"prefix": "/"}, filters=[("bench-headers", "noop")])],
    "gw-noop1-skip": [gw_route("bench", {"prefix": "/"}, filters=[("bench-skip", "noop")])],
    "gw-noop10-skip": [gw_route("bench", {"prefix": "/"}, filters=[("bench-skip", "noop")] * 10)],
    # The realistic chain with its plugin told what it uses: request headers only.
    "gw-realistic-skip": [dict(REALISTIC_ROUTE, filters=[{"plugin": "bench-request-headers", "config": c}
                                                         for c in ("auth", "ratelimit")])],
    "gw-realistic": [REALISTIC_ROUTE],
    "gw-routes10": many_routes(10),
    "gw-routes10k": many_routes(10_000),
    "gw-wit": [gw_route("bench", {"prefix": "/"}, filters=[("wit-noop", "")])],
    "gw-wit-reuse": [gw_route("bench", {"prefix": "/"}, filters=[("wit-noop-reuse", "")])],
    "gw-go": [gw_route("bench", {"prefix": "/"}, filters=[("go-noop", "")])],
    "gw-go-reuse": [gw_route("bench", {"prefix": "/"}, filters=[("go-noop-reuse", "")])],
    "gw-tls": [gw_route("bench", {"prefix": "/"})],
    "gw-ws": [{"name": "bench-ws", "match": {"path": {"prefix": "/ws"}}, "upstream": "ws"},
              gw_route("bench", {"prefix": "/"})],
    # The JavaScript and Python header-rewrite examples (one response header set), and the hello
    # functions as the route's backend (no upstream request).
    "gw-js": [gw_route("bench", {"prefix": "/"}, filters=[("js-rewrite", GUEST_REWRITE)])],
    "gw-js-fresh": [gw_route("bench", {"prefix": "/"}, filters=[("js-rewrite-fresh", GUEST_REWRITE)])],
    "gw-py": [gw_route("bench", {"prefix": "/"}, filters=[("py-rewrite", GUEST_REWRITE)])],
    "gw-py-fresh": [gw_route("bench", {"prefix": "/"}, filters=[("py-rewrite-fresh", GUEST_REWRITE)])],
    "gw-js-fn": [FUNCTION_ROUTE],
    "gw-py-fn": [FUNCTION_ROUTE],
    # A Rust function answering the upstream's body (no upstream request): against `gw`.
    "gw-rust-fn": [FUNCTION_ROUTE],
    "gw-rust-fn-reuse": [FUNCTION_ROUTE],
    # Worker-thread scaling (issue 17): `gw` and `gw-noop1` again, with two tokio worker threads on
    # both cores (GATEWAY_WORKERS); the rows without `-2w` are their one-worker baselines.
    "gw-2w": [gw_route("bench", {"prefix": "/"})],
    "gw-noop1-2w": [gw_route("bench", {"prefix": "/"}, filters=["noop"])],
    # `gw` again for the 1 MiB bodies, so that the RSS column shows what they cost apart from `gw`'s.
    "gw-1m": [gw_route("bench", {"prefix": "/"})],
    # gRPC unary: the service's prefix to the HTTP/2 upstream, no filters; `/` for the readiness check.
    "gw-grpc": [{"name": "bench-grpc", "match": {"path": {"prefix": "/bench.v1.Bench/"}}, "upstream": "grpc"},
                gw_route("bench", {"prefix": "/"})],
}
# Tokio worker threads per gateway (TOKIO_WORKER_THREADS, which tokio's runtime builder reads) and
# the cores it is pinned to: one worker on the proxy core unless named here. Two workers get both
# cores, so they share core 0 with the load generator and the upstream: their req/s is what one
# process gets with a second core it must share, and a lock shows as req/s that does not rise and
# CPU per request that does.
GATEWAY_WORKERS = {"gw-2w": (2, "0,1"), "gw-noop1-2w": (2, "0,1")}
TLS_GATEWAYS = {"gw-tls"}  # their listener terminates TLS with TLS_CERT
# Top-level config a gateway needs besides its routes.
AUTH_CONSUMERS = [{"name": "bench", "credentials": {"key-auth": {"key": "bench-key"}}}]
GATEWAY_EXTRA = {
    "gw-ws": {"upstreams": [{"name": "up", "endpoints": [f"{HOST}:{UPSTREAM_PORT}"]},
                            {"name": "ws", "endpoints": [f"{HOST}:{WS_UPSTREAM_PORT}"]}]},
    "gw-grpc": {"upstreams": [{"name": "up", "endpoints": [f"{HOST}:{UPSTREAM_PORT}"]},
                              {"name": "grpc", "endpoints": [f"{HOST}:{GRPC_UPSTREAM_PORT}"], "protocol": "http2"}]},
    "gw-auth": {"consumers": AUTH_CONSUMERS},
    # The same built-in plugins on warm instances (entries that only set their instance mode).
    "gw-auth-reuse": {"consumers": AUTH_CONSUMERS,
                      "plugins": [{"name": "cors", "instance_mode": "reuse"},
                                  {"name": "key-auth", "instance_mode": "reuse"}]},
    # The counters in Redis: one increment (a Lua script) per request, over loopback.
    "gw-rust-fn": {"functions": [{"name": "hello", "path": RUST_FUNCTION_WASM, "env": {"BODY": UPSTREAM_BODY},
                                  "limits": {"concurrency": 64}}]},
    "gw-rust-fn-reuse": {"functions": [{"name": "hello", "path": RUST_FUNCTION_WASM, "instance_mode": "reuse",
                                        "env": {"BODY": UPSTREAM_BODY}, "limits": {"concurrency": 64}}]},
    # StarlingMonkey cannot serve a second fetch event on one instance (StarlingMonkey#247): fresh.
    "gw-js-fn": function_entry(JS_FUNCTION_WASM, "fresh"),
    "gw-py-fn": function_entry(PY_FUNCTION_WASM),
    "gw-ratelimit-redis": {"kv_namespaces": {"limits": {"backend": "redis", "redis": {
                               "url": f"redis://{HOST}:{REDIS_PORT}", "command_timeout": "1s"}}},
                           "plugins": [{"name": "rate-limiting", "capabilities": {"kv_namespace": "limits"}}]},
}

# The plugins a gateway config may use, by name (only those its routes name are loaded).
# 10 stages of one plugin take 10 of its contexts per request: 32 connections need 320+.
PLUGINS = {
    "bench": {"path": FILTERS_WASM, "limits": {"instances": 1000}},
    "bench-headers": {"path": FILTERS_WASM, "limits": {"instances": 1000},
                      "skip": ["on_request_body", "on_request_trailers", "on_response_body", "on_response_trailers"]},
    "bench-request-headers": {"path": FILTERS_WASM, "limits": {"instances": 1000},
                              "skip": ["on_request_body", "on_request_trailers", "on_response_headers",
                                       "on_response_body", "on_response_trailers", "on_done", "on_log"]},
    "bench-skip": {"path": FILTERS_WASM, "limits": {"instances": 1000},
                   "skip": ["on_request_headers", "on_request_body", "on_request_trailers", "on_response_headers",
                            "on_response_body", "on_response_trailers", "on_done", "on_log"]},
    "wit-noop": {"path": WIT_FILTERS_WASM, "instance_mode": "fresh", "limits": {"instances": 1000}},
    "wit-noop-reuse": {"path": WIT_FILTERS_WASM, "instance_mode": "reuse", "limits": {"instances": 1000}},
    "go-noop": {"path": GO_FILTER_WASM, "instance_mode": "fresh", "limits": {"instances": 1000}},
    "go-noop-reuse": {"path": GO_FILTER_WASM, "instance_mode": "reuse", "limits": {"instances": 1000}},
    "js-rewrite": {"path": JS_FILTER_WASM, "instance_mode": "reuse", "limits": {"instances": 1000}},
    "js-rewrite-fresh": {"path": JS_FILTER_WASM, "instance_mode": "fresh", "limits": {"instances": 1000}},
    "py-rewrite": {"path": PY_FILTER_WASM, "instance_mode": "reuse", "limits": {"instances": 1000}},
    "py-rewrite-fresh": {"path": PY_FILTER_WASM, "instance_mode": "fresh", "limits": {"instances": 1000}},
}

# name, server, path, body bytes (POST when > 0), extra request headers, description
SCENARIOS = [
    ("direct", "upstream", "/", 0, {}, "wrk -> upstream nginx (no proxy)"),
    ("nginx", "nginx", "/", 0, {}, "nginx reverse proxy, keep-alive upstream pool"),
    ("gw", "gw", "/", 0, {}, "gateway, one prefix route, no filters"),
    ("gw-noop1", "gw-noop1", "/", 0, {}, "gateway + 1 no-op Proxy-Wasm filter"),
    ("gw-noop10", "gw-noop10", "/", 0, {}, "gateway + chain of 10 no-op Proxy-Wasm filters"),
    ("gw-noop1-headers", "gw-noop1-headers", "/", 0, {},
     "gateway + 1 no-op Proxy-Wasm filter told to skip body and trailer callbacks (`skip:`)"),
    ("gw-noop1-skip", "gw-noop1-skip", "/", 0, {},
     "gateway + 1 no-op Proxy-Wasm filter told to skip every per-request callback (`skip:`)"),
    ("gw-noop10-skip", "gw-noop10-skip", "/", 0, {},
     "gateway + chain of 10 no-op Proxy-Wasm filters told to skip every per-request callback"),
    ("gw-2w", "gw-2w", "/", 0, {},
     "gateway without filters, 2 worker threads on both cores (load generator and upstream share core 0)"),
    ("gw-noop1-2w", "gw-noop1-2w", "/", 0, {},
     "gateway + 1 no-op Proxy-Wasm filter, 2 worker threads on both cores (shared with the load generator)"),
    ("gw-realistic", "gw-realistic", "/", 0, AUTH_HEADERS,
     "gateway + auth filter + shared-data rate-limit filter + route header rewrites"),
    ("gw-realistic-skip", "gw-realistic-skip", "/", 0, AUTH_HEADERS,
     "gw-realistic with its Proxy-Wasm plugin told to skip every callback but on_request_headers (`skip:`)"),
    ("gw-auth-chain", "gw-auth", "/", 0, AUTH_CHAIN_HEADERS,
     "gateway + built-in cors + key-auth (one consumer, hide_credentials) + route header rewrites"),
    ("gw-auth-chain-reuse", "gw-auth-reuse", "/", 0, AUTH_CHAIN_HEADERS,
     "the same chain with `instance_mode: reuse` stated in `plugins:` entries (the built-in plugins' default)"),
    ("gw-ratelimit", "gw-ratelimit", "/", 0, {},
     "gateway + built-in rate-limiting (fixed window per client IP, counters in the local store)"),
    ("gw-ratelimit-redis", "gw-ratelimit-redis", "/", 0, {},
     "gateway + built-in rate-limiting, counters in Redis (redis-server on the load core, loopback)"),
    ("gw-cache-hit", "gw-cache", "/", 0, {},
     "gateway + built-in proxy-cache, every request a hit (answered from memory, no upstream request)"),
    ("gw-routes10", "gw-routes10", "/bench/items/42", 0, {}, "gateway, benchmarked route among 10"),
    ("gw-routes10k", "gw-routes10k", "/bench/items/42", 0, {}, "gateway, benchmarked route among 10 000"),
    ("nginx-post1k", "nginx", "/post", 1024, {}, "nginx, POST 1 KiB body"),
    ("gw-post1k", "gw", "/post", 1024, {}, "gateway, POST 1 KiB body, no filters"),
    ("gw-noop1-post1k", "gw-noop1", "/post", 1024, {}, "gateway + 1 no-op filter, POST 1 KiB"),
    ("nginx-post1m", "nginx", "/post", 1 << 20, {}, "nginx, POST 1 MiB body"),
    ("gw-post1m", "gw-1m", "/post", 1 << 20, {}, "gateway, POST 1 MiB body, no filters (own process: its RSS)"),
    ("gw-noop1-post1m", "gw-noop1", "/post", 1 << 20, {}, "gateway + 1 no-op filter, POST 1 MiB"),
    ("nginx-get1m", "nginx", "/get1m", 0, {}, "nginx, GET a 1 MiB response body (a static file of the upstream)"),
    ("gw-get1m", "gw-1m", "/get1m", 0, {},
     "gateway, GET a 1 MiB response body, no filters (the same process as gw-post1m)"),
    ("gw-wit-noop1", "gw-wit", "/", 0, {},
     "gateway + 1 no-op WIT filter (component, Rust SDK, bench/filters-wit), instance_mode fresh"),
    ("gw-wit-noop1-reuse", "gw-wit-reuse", "/", 0, {},
     "gateway + 1 no-op WIT filter (component, Rust SDK), instance_mode reuse"),
    ("gw-go-noop1", "gw-go", "/", 0, {},
     "gateway + 1 no-op Go filter (component, Go SDK plugin-sdk/go, bench/filters-go), instance_mode fresh"),
    ("gw-go-noop1-reuse", "gw-go-reuse", "/", 0, {},
     "gateway + 1 no-op Go filter (component, Go SDK), instance_mode reuse"),
    ("gw-js-filter-reuse", "gw-js", "/", 0, {},
     "gateway + the JavaScript header-rewrite example (componentize-js, examples/filters/js), reuse"),
    ("gw-js-filter-fresh", "gw-js-fresh", "/", 0, {},
     "the same JavaScript filter, instance_mode fresh (a new engine instance per request)"),
    ("gw-py-filter-reuse", "gw-py", "/", 0, {},
     "gateway + the Python header-rewrite example (componentize-py, examples/filters/python), reuse"),
    ("gw-py-filter-fresh", "gw-py-fresh", "/", 0, {},
     "the same Python filter, instance_mode fresh (a new interpreter instance per request)"),
    ("gw-rust-function", "gw-rust-fn", "/", 0, {},
     "gateway, the route's backend a Rust function (bench/function-rust) answering the upstream's 100-byte body, fresh instance per request"),
    ("gw-rust-function-reuse", "gw-rust-fn-reuse", "/", 0, {},
     "the same Rust function, instance_mode reuse"),
    ("gw-js-function", "gw-js-fn", "/fn/hello?name=Ada", 0, {},
     "gateway, the route's backend the JavaScript function examples/functions/js-hello (fresh: StarlingMonkey#247)"),
    ("gw-py-function", "gw-py-fn", "/fn/hello?name=Ada", 0, {},
     "gateway, the route's backend the Python function examples/functions/python-hello (reuse)"),
    ("nginx-tls", "nginx-tls", "/", 0, {}, "nginx, HTTPS keep-alive (TLS 1.3, ECDSA P-256, same cert)"),
    ("gw-tls", "gw-tls", "/", 0, {}, "gateway, HTTPS keep-alive (TLS 1.3, ECDSA P-256, same cert), no filters"),
    ("nginx-tls-conn", "nginx-tls", "/", 0, CLOSE,
     "nginx, HTTPS, a new connection and full TLS handshake per request (`Connection: close`)"),
    ("gw-tls-conn", "gw-tls", "/", 0, CLOSE,
     "gateway, HTTPS, a new connection and full TLS handshake per request (`Connection: close`)"),
]
TLS_SERVERS = {"nginx-tls"} | TLS_GATEWAYS

# HTTP/2 downstream (h2c, prior knowledge), driven by h2load: nginx's h2 port and the plain gateway.
H2_SCENARIOS = [
    ("nginx-h2", "nginx-h2", "/", "nginx, HTTP/2 downstream (h2c), HTTP/1.1 upstream"),
    ("gw-h2", "gw", "/", "gateway, HTTP/2 downstream (h2c), HTTP/1.1 upstream, no filters"),
]

# WebSocket echo (issue 21): bench/ws-echo's client keeps --connections WebSockets open, each sending
# one message and waiting for its echo, again and again; a "request" is one round trip.
WS_SCENARIOS = [
    ("ws-direct", "ws-upstream", "/ws", "WebSocket echo straight to the echo upstream (no proxy)"),
    ("nginx-ws", "nginx", "/ws", "nginx, WebSocket (HTTP/1.1 Upgrade) tunnelled to the echo upstream"),
    ("gw-ws", "gw-ws", "/ws", "gateway, WebSocket (HTTP/1.1 Upgrade) tunnelled to the echo upstream, no filters"),
]
WS_NAMES = {n for n, *_ in WS_SCENARIOS}

# gRPC unary (issue 21), driven by h2load like the HTTP/2 rows (`-c32 -m1`), each request a POST of
# one fixed gRPC message (GRPC_H2LOAD_ARGS); the upstream answers one fixed message and the trailer
# grpc-status 0 (checked through both proxies before the trials, since h2load counts only 2xx).
GRPC_SCENARIOS = [
    ("nginx-grpc", "nginx-grpc", GRPC_PATH,
     "nginx, gRPC unary call (h2c) through `grpc_pass` to an h2c upstream, keep-alive upstream pool"),
    ("gw-grpc", "gw-grpc", GRPC_PATH,
     "gateway, gRPC unary call (h2c) to an upstream with `protocol: http2`, no filters"),
]
GRPC_NAMES = {n for n, *_ in GRPC_SCENARIOS}

NOT_AVAILABLE = []  # (scenario, what, why), filled when something cannot be built

# Targets of issue 17, as ratios: (label, scenario, baseline, limits) where limits is one maximum for
# both the CPU µs/req and the callgrind Ir/req ratio, or a (CPU, Ir) pair in which None means that
# figure is reported but has no limit (the issue's limit is on the other one), and None alone: no
# limit at all, the row states the figures.
TARGETS = [
    ("gateway without filters <= nginx CPU and <= 1.4x nginx Ir", "gw", "nginx", (1.0, 1.4)),
    ("one no-op Proxy-Wasm filter <= 1.10x gateway without filters", "gw-noop1", "gw", 1.10),
    ("one no-op WIT filter (reuse) <= 1.10x gateway without filters", "gw-wit-noop1-reuse", "gw", 1.10),
    ("one no-op WIT filter (fresh) <= 1.5x gateway without filters", "gw-wit-noop1", "gw", 1.5),
    ("10-filter Proxy-Wasm chain <= 1.6x gateway without filters", "gw-noop10", "gw", 1.6),
    # The chain as users write it (no `plugins:` entry): built-in plugins run on reused instances by
    # default, which gw-auth-chain-reuse only states explicitly.
    ("catalog chain (key-auth + cors + header rewrite) <= 1.3x gateway without filters", "gw-auth-chain", "gw",
     1.3),
    ("Go no-op filter, reused <= 1.15x the Rust one", "gw-go-noop1-reuse", "gw-wit-noop1-reuse", 1.15),
    ("Go no-op filter, fresh / the Rust one (no limit: the figure)", "gw-go-noop1", "gw-wit-noop1", None),
    ("1 MiB upload <= nginx CPU (RSS: the table's column)", "gw-post1m", "nginx-post1m", (1.0, None)),
    ("1 MiB download <= nginx CPU (RSS: the table's column)", "gw-get1m", "nginx-get1m", (1.0, None)),
    ("HTTP/2 downstream <= 1.2x nginx-h2 CPU", "gw-h2", "nginx-h2", (1.2, None)),
    ("10 000 routes <= 1.05x 10 routes", "gw-routes10k", "gw-routes10", 1.05),
    ("TLS handshake per request <= nginx CPU (kept from issue 8)", "gw-tls-conn", "nginx-tls-conn", (1.0, None)),
]

# Other ratios worth reading (not targets): (label, scenario, baseline)
COMPARISONS = [
    ("HTTPS keep-alive: gateway / nginx", "gw-tls", "nginx-tls"),
    ("HTTPS, handshake per request: gateway / nginx", "gw-tls-conn", "nginx-tls-conn"),
    ("HTTPS keep-alive / cleartext (gateway)", "gw-tls", "gw"),
    ("no-op WIT filter, fresh / Proxy-Wasm no-op filter", "gw-wit-noop1", "gw-noop1"),
    ("no-op WIT filter, reuse / fresh", "gw-wit-noop1-reuse", "gw-wit-noop1"),
    ("built-in cors + key-auth + header rewrites / gateway without filters", "gw-auth-chain", "gw"),
    ("built-in cors + key-auth / Proxy-Wasm auth + rate-limit chain", "gw-auth-chain", "gw-realistic"),
    ("built-in cors + key-auth, reused instances / gateway without filters", "gw-auth-chain-reuse", "gw"),
    ("built-in rate-limiting, local / gateway without filters", "gw-ratelimit", "gw"),
    ("built-in rate-limiting, counters in Redis / local", "gw-ratelimit-redis", "gw-ratelimit"),
    ("built-in proxy-cache hit / gateway without filters (which asks the upstream)", "gw-cache-hit", "gw"),
    ("WebSocket echo round trips: gateway / nginx", "gw-ws", "nginx-ws"),
    ("WebSocket echo round trips: gateway / direct", "gw-ws", "ws-direct"),
    ("gRPC unary: gateway / nginx", "gw-grpc", "nginx-grpc"),
    # Issue 17: req/s is the figure that shows a lock (it should rise with the second worker); CPU
    # per request should stay about the same.
    ("two workers / one: gateway without filters", "gw-2w", "gw"),
    ("two workers / one: 1 no-op Proxy-Wasm filter", "gw-noop1-2w", "gw-noop1"),
]

# ---------------------------------------------------------------------------------------------------
# Processes

STARTED = []  # Popen objects, killed on exit
UPSTREAM_PID = [0]


def log(msg):
    print(f"[bench {time.strftime('%H:%M:%S')}] {msg}", file=sys.stderr, flush=True)


def start(name, argv, core=None, env=None):
    if core is not None:
        argv = ["taskset", "-c", core] + argv
    out = open(os.path.join(WORK, f"{name}.log"), "ab")
    p = subprocess.Popen(argv, stdout=out, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
                         env=env, start_new_session=True)
    p.bench_name = name
    STARTED.append(p)
    return p


def stop(p, timeout=20):
    if p.poll() is None:
        try:
            os.kill(p.pid, signal.SIGTERM)
            p.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            os.killpg(p.pid, signal.SIGKILL)
            p.wait()
        except ProcessLookupError:
            pass
    if p in STARTED:
        STARTED.remove(p)


def stop_all(*_):
    for p in list(STARTED):
        try:
            if p.poll() is None:
                os.killpg(p.pid, signal.SIGKILL)
                p.wait(timeout=5)
        except (ProcessLookupError, subprocess.TimeoutExpired):
            pass
    STARTED.clear()


def on_signal(signum, _frame):
    stop_all()
    sys.exit(128 + signum)


def connection(port, tls, timeout):
    if not tls:
        return http.client.HTTPConnection(HOST, port, timeout=timeout)
    # The benchmark's own self-signed certificate: trusted as its own anchor, name checked.
    ctx = ssl.create_default_context(cafile=TLS_CERT)
    return http.client.HTTPSConnection("localhost", port, timeout=timeout, context=ctx)


def http_get(port, path="/", headers=None, timeout=2.0, tls=False):
    c = connection(port, tls, timeout)
    try:
        c.request("GET", path, headers=headers or {})
        r = c.getresponse()
        r.read()
        return r.status
    finally:
        c.close()


def wait_ready(p, port, path="/", headers=None, timeout=60.0, tls=False):
    deadline = time.monotonic() + timeout
    last = None
    while time.monotonic() < deadline:
        if p.poll() is not None:
            raise RuntimeError(f"{p.bench_name} exited ({p.returncode}); see {WORK}/{p.bench_name}.log")
        try:
            status = http_get(port, path, headers, tls=tls)
            if status == 200:
                return
            last = f"status {status}"
        except OSError as e:
            last = str(e)
        time.sleep(0.2)
    raise RuntimeError(f"{p.bench_name} not ready on {port}{path} after {timeout}s: {last}")


def wait_tcp(p, port, timeout=30.0):
    """Waits until `port` accepts connections (a server that does not speak HTTP)."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if p.poll() is not None:
            raise RuntimeError(f"{p.bench_name} exited ({p.returncode}); see {WORK}/{p.bench_name}.log")
        try:
            socket.create_connection((HOST, port), timeout=1).close()
            return
        except OSError:
            time.sleep(0.1)
    raise RuntimeError(f"{p.bench_name} not listening on {port} after {timeout}s")


def proc_cpu_seconds(pid):
    """utime + stime of the whole process (all threads), in seconds."""
    with open(f"/proc/{pid}/stat") as f:
        fields = f.read().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def proc_rss_kib(pid):
    with open(f"/proc/{pid}/status") as f:
        for line in f:
            if line.startswith("VmRSS:"):
                return int(line.split()[1])
    return 0


def machine_busy_seconds():
    """CPU seconds spent busy on the whole machine (all cores) so far."""
    with open("/proc/stat") as f:
        v = [int(x) for x in f.readline().split()[1:]]
    idle = v[3] + v[4]
    return (sum(v[:8]) - idle) / os.sysconf("SC_CLK_TCK")


def children_cpu_seconds():
    """CPU of this script's finished children (wrk, h2load)."""
    r = resource.getrusage(resource.RUSAGE_CHILDREN)
    return r.ru_utime + r.ru_stime


def loadavg():
    with open("/proc/loadavg") as f:
        return [float(x) for x in f.read().split()[:3]]


# ---------------------------------------------------------------------------------------------------
# Setup


def ensure_tools(allow_install):
    need = {"nginx": "nginx", ECHO_MODULE: "libnginx-mod-http-echo", "wrk": "wrk", "h2load": "nghttp2-client",
            "nghttp": "nghttp2-client",
            "valgrind": "valgrind", "callgrind_control": "valgrind", "taskset": "util-linux",
            "openssl": "openssl", "redis-server": "redis-server"}
    missing = sorted({pkg for tool, pkg in need.items()
                      if shutil.which(tool) is None and not os.path.exists(tool)})
    if not missing:
        return
    if not allow_install:
        sys.exit(f"missing tools (Debian packages {' '.join(missing)}); run without --no-install")
    if os.geteuid() != 0:
        sys.exit(f"missing Debian packages {' '.join(missing)}: run as root, or apt-get install them")
    log(f"installing {' '.join(missing)} from Debian")
    env = dict(os.environ, DEBIAN_FRONTEND="noninteractive")
    subprocess.run(["apt-get", "update"], check=True, env=env, timeout=600)
    subprocess.run(["apt-get", "install", "-y", "--no-install-recommends"] + missing, check=True,
                   env=env, timeout=900)
    # Debian starts nginx as a service on install; the benchmark runs its own instances.
    subprocess.run(["sh", "-c", "command -v systemctl >/dev/null && systemctl stop nginx; "
                    "nginx -s stop 2>/dev/null; true"], check=False)


def add_wasm_targets():
    """The wasm targets rust-toolchain.toml lists, as .ci/run adds them: rustup does not add targets to a
    toolchain that is already installed, and the gateway's build script builds the built-in plugins for
    wasm32-wasip2 (a fresh machine's first run failed there)."""
    if not shutil.which("rustup"):
        return
    with open(os.path.join(ROOT, "rust-toolchain.toml")) as f:
        m = re.search(r"^targets\s*=\s*\[(.*)\]", f.read(), re.M)
    targets = re.findall(r'"([^"]+)"', m.group(1)) if m else []
    if targets:
        subprocess.run(["rustup", "target", "add"] + targets, cwd=ROOT, check=True)


def build():
    cargo = os.environ.get("CARGO", "cargo")
    add_wasm_targets()
    log("building the gateway (release)")
    subprocess.run([cargo, "build", "--release", "-p", "gateway"], cwd=ROOT, check=True)
    log("building the benchmark filters (wasm32-wasip1)")
    env = {k: v for k, v in os.environ.items() if k not in ("RUSTFLAGS", "CARGO_ENCODED_RUSTFLAGS")}
    env["CARGO_TARGET_DIR"] = FILTERS_TARGET
    subprocess.run([cargo, "build", "--release", "--target", "wasm32-wasip1"], cwd=FILTERS_DIR,
                   env=env, check=True)
    log("building the benchmark's no-op WIT filter (wasm32-wasip2)")
    env["CARGO_TARGET_DIR"] = WIT_FILTERS_TARGET
    subprocess.run([cargo, "build", "--release", "--target", "wasm32-wasip2"], cwd=WIT_FILTERS_DIR,
                   env=env, check=True)
    log("building the benchmark's Rust function (wasm32-wasip2)")
    env["CARGO_TARGET_DIR"] = RUST_FUNCTION_TARGET
    subprocess.run([cargo, "build", "--release", "--target", "wasm32-wasip2"], cwd=RUST_FUNCTION_DIR,
                   env=env, check=True)
    log("building the WebSocket echo upstream and client (bench/ws-echo)")
    env["CARGO_TARGET_DIR"] = WS_ECHO_TARGET
    subprocess.run([cargo, "build", "--release"], cwd=WS_ECHO_DIR, env=env, check=True)
    build_go_filter(cargo)
    build_guests(cargo)


def build_guests(cargo):
    """The JavaScript and Python examples, with the pinned componentize-js and componentize-py that
    xtask installs into target/tools; when they cannot be built their rows are not available."""
    log("building the JavaScript and Python examples (cargo xtask guests)")
    r = subprocess.run([cargo, "run", "-q", "-p", "xtask", "--", "guests"], cwd=ROOT,
                       capture_output=True, text=True, timeout=1800)
    if r.returncode != 0:
        why = (r.stderr.strip().splitlines() or ["no output"])[-1]
        log(f"the JavaScript and Python examples could not be built: {why}")
        global SCENARIOS
        for n, _, _, _, _, d in SCENARIOS:
            if n.startswith(("gw-js-", "gw-py-")):
                NOT_AVAILABLE.append((n, d, f"not built: {why}"))
        SCENARIOS = [s for s in SCENARIOS if not s[0].startswith(("gw-js-", "gw-py-"))]


def build_go_filter(cargo):
    """The no-op Go filter, with the Go SDK's own build command; when it cannot be built the Go rows
    are reported as not available (with the reason) instead of failing the run."""
    log("building the benchmark's no-op Go filter (cargo xtask go-filter build)")
    r = subprocess.run([cargo, "run", "-q", "-p", "xtask", "--", "go-filter", "build", GO_FILTER_DIR,
                        "-o", GO_FILTER_WASM], cwd=ROOT, capture_output=True, text=True, timeout=1800)
    if r.returncode != 0 or not os.path.exists(GO_FILTER_WASM):
        why = (r.stderr.strip().splitlines() or ["no output"])[-1]
        log(f"the Go filter could not be built: {why}")
        go_not_available(f"the Go filter did not build: {why}")


def go_not_available(why):
    global SCENARIOS
    for n, _, _, _, _, d in SCENARIOS:
        if n.startswith("gw-go-"):
            NOT_AVAILABLE.append((n, d, why))
    SCENARIOS = [s for s in SCENARIOS if not s[0].startswith("gw-go-")]


def make_certificate():
    """A self-signed ECDSA P-256 certificate for `localhost` / 127.0.0.1, served by nginx and the
    gateway alike (so both do the same signature per handshake)."""
    os.makedirs(TLS_DIR, exist_ok=True)
    subprocess.run(["openssl", "req", "-x509", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1",
                    "-nodes", "-days", "7", "-subj", "/CN=localhost",
                    "-addext", "subjectAltName=DNS:localhost,IP:127.0.0.1",
                    "-keyout", TLS_KEY, "-out", TLS_CERT], check=True, capture_output=True, timeout=60)


ECHO_MODULE = "/usr/lib/nginx/modules/ngx_http_echo_module.so"


def nginx_conf(name, server_block, modules=()):
    d = os.path.join(WORK, name)
    os.makedirs(d, exist_ok=True)
    temps = "\n".join(f"    {t}_temp_path {d}/{t};" for t in
                      ("client_body", "proxy", "fastcgi", "uwsgi", "scgi"))
    loads = "".join(f"load_module {m};\n" for m in modules)
    conf = f"""# generated by bench/run.py
{loads}daemon off;
master_process off;
worker_processes 1;
pid {d}/nginx.pid;
error_log {d}/error.log warn;
events {{ worker_connections 4096; }}
http {{
    access_log off;
    default_type text/plain;
    keepalive_requests 1000000;
    keepalive_timeout 60s;
    client_max_body_size 16m;
{temps}
{server_block}
}}
"""
    path = os.path.join(d, "nginx.conf")
    with open(path, "w") as f:
        f.write(conf)
    return path, d


def grpc_frame(msg):
    return b"\x00" + len(msg).to_bytes(4, "big") + msg


def start_upstream():
    os.makedirs(GRPC_DIR, exist_ok=True)
    with open(GRPC_REQUEST, "wb") as f:
        f.write(grpc_frame(GRPC_REQUEST_MSG))
    reply = grpc_frame(GRPC_REPLY_MSG).decode("ascii")  # bytes < 0x80: written to the file as they are
    assert not set(reply) & set('"\\$'), "the reply must need no escaping in nginx's quoted string"
    body = UPSTREAM_BODY.replace("\\", "\\\\").replace('"', '\\"').replace("\n", "\\n")
    # GET: `return`. POST (path /post): the whole body is read before answering, as an application
    # would; with `return`, nginx answers at once and discards the body afterwards, and a proxy that
    # gets the answer while still sending a 1 MiB body has to close the client connection.
    conf, d = nginx_conf("upstream", f"""    server {{
        listen {HOST}:{UPSTREAM_PORT};
        location / {{ return 200 "{body}"; }}
        location /post {{
            client_body_buffer_size 2m;
            echo_read_request_body;
            echo -n "{body}";
        }}
        location = /get1m {{ alias {os.path.join(WORK, "upstream", "get1m.bin")}; }}
    }}
    server {{
        # The gRPC upstream: reads the request's message, then answers one fixed message (its bytes,
        # zeros included, as they are in the quoted string) and the trailer grpc-status 0. (Answering
        # before the request body is read, as a static file would, makes nginx's grpc_pass see a frame
        # for a stream it has closed and fail the call now and then.)
        listen {HOST}:{GRPC_UPSTREAM_PORT} http2;
        location / {{
            default_type application/grpc;
            echo_read_request_body;
            echo -n "{reply}";
            add_trailer grpc-status 0 always;
        }}
    }}""", modules=[ECHO_MODULE])
    with open(os.path.join(d, "get1m.bin"), "wb") as f:
        f.write(b"x" * DOWNLOAD_BYTES)
    p = start("upstream", ["nginx", "-p", d, "-c", conf], core=LOAD_CORE)
    wait_ready(p, UPSTREAM_PORT)
    return p


def nginx_proxy_block():
    # Streams request bodies like the gateway does (no spooling to disk), HTTP/1.1 keep-alive pool.
    return f"""    upstream up {{
        server {HOST}:{UPSTREAM_PORT};
        keepalive 64;
        keepalive_requests 1000000;
    }}
    upstream ws {{
        server {HOST}:{WS_UPSTREAM_PORT};
    }}
    upstream grpc {{
        server {HOST}:{GRPC_UPSTREAM_PORT};
        keepalive 64;
        keepalive_requests 1000000;
    }}
    server {{
        listen {HOST}:{NGINX_GRPC_PORT} http2;
        location / {{ grpc_pass grpc://grpc; }}
    }}
    server {{
        listen {HOST}:{NGINX_PORT};
        listen {HOST}:{NGINX_H2_PORT} http2;
        listen {HOST}:{NGINX_TLS_PORT} ssl;
        ssl_certificate {TLS_CERT};
        ssl_certificate_key {TLS_KEY};
        ssl_protocols TLSv1.2 TLSv1.3;
        location / {{
            proxy_pass http://up;
            proxy_http_version 1.1;
            proxy_set_header Connection "";
            proxy_request_buffering off;
            proxy_max_temp_file_size 0;  # nor responses (1 MiB downloads): memory buffers only
        }}
        location /ws {{
            proxy_pass http://ws;
            proxy_http_version 1.1;
            proxy_set_header Upgrade $http_upgrade;
            proxy_set_header Connection "upgrade";
        }}
    }}"""


def start_nginx(name="nginx", core=PROXY_CORE, prefix=None):
    conf, d = nginx_conf(name, nginx_proxy_block())
    argv = ["nginx", "-p", d, "-c", conf]
    p = start(name, (prefix or []) + argv, core=core)
    return p


def gateway_config(name, routes, port, callgrind=False):
    """Writes the gateway's config; `callgrind`: a small Wasm instance pool (valgrind cannot map the
    default pool's address-space reservation) and `<name>-cg.yaml`."""
    used = sorted({f["plugin"] for r in routes for f in r.get("filters", [])})
    listener = {"name": "bench", "address": f"{HOST}:{port}"}
    if name in TLS_GATEWAYS:
        listener["tls"] = {"certificates": [{"cert": TLS_CERT, "key": TLS_KEY}]}
    cfg = {
        "listeners": [listener],
        "admin": {"address": f"{HOST}:{port + 1000}"},
        "server": {"access_log": {"enabled": False}},
        "upstreams": [{"name": "up", "endpoints": [f"{HOST}:{UPSTREAM_PORT}"],
                       "pool": {"max_idle_per_endpoint": 64}}],
        "routes": routes,
    }
    extra = dict(GATEWAY_EXTRA.get(name, {}))
    settings = extra.pop("plugins", [])
    cfg.update(extra)
    if used:
        # Built-in plugins (not in PLUGINS) need no entry, unless given settings.
        cfg["plugins"] = [dict(PLUGINS[u], name=u) for u in used if u in PLUGINS] + settings
        if callgrind:
            # Each slot reserves about 4 GiB of address space whatever the memory limit, and valgrind
            # maps at most a few tens of GiB. One request at a time needs one Proxy-Wasm VM per plugin,
            # or one component instance per stage in flight.
            cfg["server"]["wasm_pool"] = {"max_instances": 6, "max_instance_memory": "64MiB"}
            for pl in cfg["plugins"]:
                pl["limits"] = dict(pl.get("limits", {}), instances=20)
    if callgrind and cfg.get("functions"):
        # The same small pool for function backends (one request at a time: one instance).
        cfg["server"]["wasm_pool"] = {"max_instances": 6, "max_instance_memory": "64MiB"}
    path = os.path.join(WORK, f"{name}{'-cg' if callgrind else ''}.yaml")
    with open(path, "w") as f:
        f.write("# generated by bench/run.py\n")
        json.dump(cfg, f, indent=1)  # JSON is valid YAML
    return path


def gateway_env(workers=1):
    return dict(os.environ, GATEWAY_LOG="warn", TOKIO_WORKER_THREADS=str(workers))


def start_gateway(name, port, prefix=None, core=None, conf=None):
    conf = conf or os.path.join(WORK, f"{name}.yaml")
    workers, cores = GATEWAY_WORKERS.get(name, (1, PROXY_CORE))
    return start(name, (prefix or []) + [GATEWAY, "run", "--config", conf], core=core or cores,
                 env=gateway_env(workers))


# ---------------------------------------------------------------------------------------------------
# Load


WRK_LUA = """
{setup}
done = function(summary, latency, requests)
  local e = summary.errors
  io.write(string.format(
    'BENCHJSON {{"requests":%d,"duration_us":%d,"bytes":%d,"connect":%d,"read":%d,"write":%d,'
    .. '"status":%d,"timeout":%d,"p50_us":%d,"p90_us":%d,"p99_us":%d,"mean_us":%.1f}}\\n',
    summary.requests, summary.duration, summary.bytes, e.connect, e.read, e.write, e.status,
    e.timeout, latency:percentile(50), latency:percentile(90), latency:percentile(99), latency.mean))
end
"""


def wrk_script(name, body_bytes, headers):
    setup = []
    if body_bytes:
        setup.append('wrk.method = "POST"')
        setup.append(f'wrk.body = string.rep("x", {body_bytes})')
        setup.append('wrk.headers["content-type"] = "application/octet-stream"')
    for k, v in headers.items():
        setup.append(f'wrk.headers["{k}"] = "{v}"')
    path = os.path.join(WORK, f"wrk-{name}.lua")
    with open(path, "w") as f:
        f.write(WRK_LUA.format(setup="\n".join(setup)))
    return path


def run_wrk(port, path, script, seconds, connections, tls=False):
    url = f"https://localhost:{port}{path}" if tls else f"http://{HOST}:{port}{path}"
    argv = ["taskset", "-c", LOAD_CORE, "wrk", "-t1", f"-c{connections}", f"-d{seconds}s",
            "--timeout", "5s", "--latency", "-s", script, url]
    out = subprocess.run(argv, capture_output=True, text=True, timeout=seconds + 30).stdout
    m = re.search(r"^BENCHJSON (.*)$", out, re.M)
    if not m:
        raise RuntimeError(f"wrk gave no result:\n{out}")
    r = json.loads(m.group(1))
    r["errors"] = r.pop("connect") + r.pop("read") + r.pop("write") + r.pop("status") + r.pop("timeout")
    return r


def run_h2load(port, path, seconds, connections, extra=()):
    argv = ["taskset", "-c", LOAD_CORE, "h2load", "-t1", f"-c{connections}", "-m1",
            f"-D{seconds}", *extra, f"http://{HOST}:{port}{path}"]
    out = subprocess.run(argv, capture_output=True, text=True, timeout=seconds + 30).stdout
    m = re.search(r"requests: (\d+) total, (\d+) started, (\d+) done, (\d+) succeeded, (\d+) failed, "
                  r"(\d+) errored", out)
    mt = re.search(r"time for request:\s+(\S+)\s+(\S+)\s+(\S+)", out)
    if not m or not mt:
        raise RuntimeError(f"h2load gave no result:\n{out}")
    done, ok = int(m.group(3)), int(m.group(4))
    sc = re.search(r"status codes: (\d+) 2xx", out)
    two_xx = int(sc.group(1)) if sc else ok

    def us(s):
        for unit, f in (("us", 1), ("ms", 1e3), ("s", 1e6)):
            if s.endswith(unit):
                return float(s[: -len(unit)]) * f
        return float(s)

    # With -D, a request still in flight at the end can have its status counted but not be done.
    return {"requests": done, "duration_us": int(seconds * 1e6), "errors": max(0, done - two_xx),
            "mean_us": us(mt.group(3)), "p50_us": None, "p99_us": None, "max_us": us(mt.group(2))}


def run_ws(port, path, seconds, connections):
    argv = ["taskset", "-c", LOAD_CORE, WS_ECHO, "client", f"ws://{HOST}:{port}{path}", str(connections),
            str(seconds), str(WS_MESSAGE_BYTES)]
    out = subprocess.run(argv, capture_output=True, text=True, timeout=seconds + 30).stdout
    m = re.search(r"^BENCHJSON (.*)$", out, re.M)
    if not m:
        raise RuntimeError(f"bench-ws-echo gave no result:\n{out}")
    r = json.loads(m.group(1))
    r.update({"p50_us": None, "p99_us": None})
    return r


def trial(kind, name, pid, port, path, seconds, connections, script=None, tls=False, up_pid=None):
    up = up_pid or UPSTREAM_PID[0]
    busy0, cpu0, t0 = machine_busy_seconds(), proc_cpu_seconds(pid), time.monotonic()
    up0, load0 = proc_cpu_seconds(up), children_cpu_seconds()
    if kind == "h2":
        r = run_h2load(port, path, seconds, connections)
    elif kind == "grpc":
        r = run_h2load(port, path, seconds, connections, GRPC_H2LOAD_ARGS)
    elif kind == "ws":
        r = run_ws(port, path, seconds, connections)
    else:
        r = run_wrk(port, path, script, seconds, connections, tls)
    cpu = proc_cpu_seconds(pid) - cpu0
    busy, wall = machine_busy_seconds() - busy0, time.monotonic() - t0
    ours = cpu + (children_cpu_seconds() - load0) + (proc_cpu_seconds(up) - up0 if up != pid else 0)
    n = max(r["requests"], 1)
    r.update({
        "rps": r["requests"] / (r["duration_us"] / 1e6),
        "cpu_us_per_req": cpu * 1e6 / n,
        "proxy_core_util": cpu / wall,
        "rss_kib": proc_rss_kib(pid),
        "machine_busy_cores": busy / wall,
        # CPU used meanwhile by processes other than the proxy, the upstream and the load generator,
        # in cores: other people's builds and tests. Above ~0.1 the wall-clock figures are disturbed.
        "foreign_cores": max(0.0, busy - ours) / wall,
    })
    return r


def grpc_check(port, name):
    """One gRPC call with nghttp (nghttp2-client, like h2load): the answer must be the upstream's
    message in one DATA frame followed by trailers with grpc-status 0 (h2load counts only 2xx)."""
    argv = ["nghttp", "-v", "-d", GRPC_REQUEST, "-H", "content-type: application/grpc", "-H", "te: trailers",
            f"http://{HOST}:{port}{GRPC_PATH}"]
    out = subprocess.run(argv, capture_output=True, timeout=30).stdout.decode(errors="replace")
    after = out.split(f"recv DATA frame <length={len(grpc_frame(GRPC_REPLY_MSG))},", 1)
    if (":status: 200" not in after[0] or len(after) < 2 or GRPC_REPLY_MSG[2:].decode() not in out
            or not re.search(r"recv \(stream_id=\d+\) grpc-status: 0\n", after[1])
            or "END_STREAM" not in after[1]):
        raise RuntimeError(f"{name}: the gRPC call did not end with the reply and grpc-status 0:\n{out}")
    log(f"{name}: gRPC call answered with the upstream's message and trailer grpc-status 0")


# ---------------------------------------------------------------------------------------------------
# Callgrind


def callgrind_prefix(name):
    return ["valgrind", "--tool=callgrind", f"--callgrind-out-file={WORK}/callgrind/{name}.%p",
            "--dump-instr=no", "--collect-jumps=no"] + os.environ.get("BENCH_CALLGRIND_ARGS", "").split()


def callgrind_total(path):
    with open(path, errors="replace") as f:
        for line in f:
            if line.startswith(("summary:", "totals:")):
                return int(line.split()[1])
    raise RuntimeError(f"no totals in {path}")


def callgrind_dump(pid, name):
    before = set(glob.glob(f"{WORK}/callgrind/{name}.{pid}.*"))
    subprocess.run(["callgrind_control", "--dump", str(pid)], capture_output=True, timeout=120,
                   check=True)
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        new = set(glob.glob(f"{WORK}/callgrind/{name}.{pid}.*")) - before
        if new:
            f = new.pop()
            time.sleep(0.3)  # let it be written out
            return f
        time.sleep(0.1)
    raise RuntimeError(f"callgrind_control --dump of {pid} wrote no file")


def client(port, path, n, body_bytes, headers, h2=False, tls=False, h2_args=()):
    """Sends `n` requests one after another on one keep-alive connection (with `connection: close`
    in `headers`: a new connection each); all must answer 200. HTTP/2 (`h2`): h2load, with
    `h2_args` (gRPC: the request body and headers)."""
    if h2:
        out = subprocess.run(["taskset", "-c", LOAD_CORE, "h2load", "-n", str(n), "-c1", "-m1", *h2_args,
                              f"http://{HOST}:{port}{path}"], capture_output=True, text=True,
                             timeout=600).stdout
        if not re.search(rf"status codes: {n} 2xx", out):
            raise RuntimeError(f"h2load: not every request succeeded:\n{out}")
        return
    body = b"x" * body_bytes if body_bytes else None
    c = connection(port, tls, 120)
    try:
        for _ in range(n):
            c.request("POST" if body else "GET", path, body=body, headers=headers)
            r = c.getresponse()
            r.read()
            if r.status != 200:
                raise RuntimeError(f"callgrind client: status {r.status}")
    finally:
        c.close()


def callgrind_scenario(name, server, path, body_bytes, headers, n, idle_s, h2=False, h2_args=()):
    os.makedirs(f"{WORK}/callgrind", exist_ok=True)
    tag = f"cg-{name}"
    tls = server in TLS_SERVERS
    ready_port = None
    if server.startswith("nginx"):
        p = start_nginx(tag, prefix=callgrind_prefix(tag))
        port = NGINX_GRPC_PORT if h2_args else NGINX_H2_PORT if h2 else NGINX_TLS_PORT if tls else NGINX_PORT
        ready_port = NGINX_PORT if h2 else None  # GET / over HTTP/1.1
    else:
        port = GATEWAY_PORT0 + list(GATEWAYS).index(server)
        conf = gateway_config(server, GATEWAYS[server], port, callgrind=True)
        p = start_gateway(server, port, prefix=callgrind_prefix(tag), conf=conf)
        p.bench_name = tag
    try:
        wait_ready(p, ready_port or port, "/bench/items/1" if "routes" in server else "/", headers,
                   timeout=300, tls=tls)
        warm = max(20, n // 20)
        client(port, path, warm, body_bytes, headers, h2, tls, h2_args)
        callgrind_dump(p.pid, tag)  # start-up + warm-up
        time.sleep(idle_s)
        t = time.monotonic()
        idle = callgrind_total(callgrind_dump(p.pid, tag))
        idle_per_s = idle / (time.monotonic() - t + idle_s)
        t = time.monotonic()
        client(port, path, n, body_bytes, headers, h2, tls, h2_args)
        part = callgrind_dump(p.pid, tag)
        elapsed = time.monotonic() - t
        total = callgrind_total(part)
        per_req = (total - idle_per_s * elapsed) / n
        return {"requests": n, "ir_total": total, "seconds": elapsed, "idle_ir_per_s": idle_per_s,
                "ir_per_req": per_req, "ir_per_req_raw": total / n, "profile": os.path.relpath(part, ROOT)}
    finally:
        stop(p, timeout=60)


# ---------------------------------------------------------------------------------------------------
# Report


def med(xs):
    xs = [x for x in xs if x is not None]
    return statistics.median(xs) if xs else None


def summarize(trials):
    return {
        "rps": med(t["rps"] for t in trials),
        "cpu_us_per_req": med(t["cpu_us_per_req"] for t in trials),
        "p50_us": med(t.get("p50_us") for t in trials),
        "p99_us": med(t.get("p99_us") for t in trials),
        "mean_us": med(t.get("mean_us") for t in trials),
        "rss_kib": max(t["rss_kib"] for t in trials),
        "errors": sum(t["errors"] for t in trials),
        "proxy_core_util": med(t["proxy_core_util"] for t in trials),
        "cpu_spread": (max(t["cpu_us_per_req"] for t in trials) - min(t["cpu_us_per_req"] for t in trials))
        / max(med(t["cpu_us_per_req"] for t in trials), 1e-9),
    }


def fmt(v, spec=".1f"):
    return "-" if v is None else format(v, spec)


def ratio(a, b):
    return None if a is None or b in (None, 0) else a / b


def table(res):
    s = res["scenarios"]
    cg = res["callgrind"]
    base_g = s.get("gw", {}).get("summary", {})
    base_n = s.get("nginx", {}).get("summary", {})
    base_d = s.get("direct", {}).get("summary", {})
    cg_gw = cg.get("gw", {}).get("ir_per_req")
    rows = ["| scenario | req/s | CPU µs/req | p50 µs | p99 µs | RSS MiB | ×direct rps | ×nginx CPU | "
            "×gw CPU | Ir/req (callgrind) | ×gw Ir |",
            "|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|"]
    for name, *_ in SCENARIOS + H2_SCENARIOS + GRPC_SCENARIOS + WS_SCENARIOS:
        if name not in s and name not in cg:
            continue
        m = s[name]["summary"] if name in s else {k: None for k in (
            "rps", "cpu_us_per_req", "p50_us", "p99_us", "mean_us")}
        h2 = name.endswith("-h2") or name in WS_NAMES or name in GRPC_NAMES
        bd, bn, bg = base_d, base_n, base_g
        if name in WS_NAMES:  # WebSocket rows against their own baselines
            bd, bn, bg = (s.get(b, {}).get("summary", {}) for b in ("ws-direct", "nginx-ws", "gw-ws"))
        if name in GRPC_NAMES:  # gRPC rows too (no direct row: h2load straight to the upstream is not one)
            bd, bn, bg = (s.get(b, {}).get("summary", {}) for b in ("", "nginx-grpc", "gw-grpc"))
        c = cg.get(name, {}).get("ir_per_req")
        rows.append("| {} | {} | {} | {} | {} | {} | {} | {} | {} | {} | {} |".format(
            name, fmt(m["rps"], ",.0f"), fmt(m["cpu_us_per_req"], ".2f"),
            fmt(m["p50_us"] if not h2 else m["mean_us"], ".0f") + (" (mean)" if h2 else ""),
            fmt(m["p99_us"], ".0f"), fmt(m["rss_kib"] / 1024 if m.get("rss_kib") else None, ".1f"),
            fmt(ratio(m["rps"], bd.get("rps")), ".2f"),
            fmt(ratio(m["cpu_us_per_req"], bn.get("cpu_us_per_req")), ".2f"),
            fmt(ratio(m["cpu_us_per_req"], bg.get("cpu_us_per_req")), ".2f"),
            "n/a (1)" if "error" in cg.get(name, {}) else fmt(c, ",.0f"), fmt(ratio(c, cg_gw), ".2f")))
    for name, what, why in NOT_AVAILABLE:
        rows.append(f"| {name} | not available: {why} | | | | | | | | | |")
    errors = sorted({re.sub(r"^error: \S+?:\d+:\d+: ", "", c["error"]) for c in cg.values() if "error" in c})
    for e in errors:
        rows.append("")
        rows.append(f"(1) callgrind could not run this scenario: `{e}`")
    return "\n".join(rows)


def targets(res):
    s, cg = res["scenarios"], res["callgrind"]
    out = []
    for label, a, b, limit in TARGETS:
        missing = dict((k, y) for k, _, y in NOT_AVAILABLE)
        if a in missing or b in missing:
            out.append({"target": label, "limit": limit, "status": "not available",
                        "why": missing.get(a) or missing.get(b)})
            continue
        cpu = ratio(s.get(a, {}).get("summary", {}).get("cpu_us_per_req"),
                    s.get(b, {}).get("summary", {}).get("cpu_us_per_req"))
        ir = ratio(cg.get(a, {}).get("ir_per_req"), cg.get(b, {}).get("ir_per_req"))
        cpu_limit, ir_limit = limit if isinstance(limit, tuple) else (limit, limit)
        out.append({"target": label, "scenario": a, "baseline": b, "limit": limit,
                    "cpu_limit": cpu_limit, "ir_limit": ir_limit, "cpu_ratio": cpu,
                    "cpu_pass": None if cpu is None or cpu_limit is None else cpu <= cpu_limit,
                    "ir_ratio": ir, "ir_pass": None if ir is None or ir_limit is None else ir <= ir_limit})
    return out


def comparisons(res):
    s, cg = res["scenarios"], res["callgrind"]
    out = []
    for label, a, b in COMPARISONS:
        out.append({"what": label, "scenario": a, "baseline": b,
                    "cpu_ratio": ratio(s.get(a, {}).get("summary", {}).get("cpu_us_per_req"),
                                       s.get(b, {}).get("summary", {}).get("cpu_us_per_req")),
                    "rps_ratio": ratio(s.get(a, {}).get("summary", {}).get("rps"),
                                       s.get(b, {}).get("summary", {}).get("rps")),
                    "ir_ratio": ratio(cg.get(a, {}).get("ir_per_req"), cg.get(b, {}).get("ir_per_req"))})
    return out


def comparisons_table(cs):
    rows = ["| ratio | scenarios | CPU µs/req | req/s | Ir/req |", "|---|---|---:|---:|---:|"]
    for c in cs:
        rows.append(f"| {c['what']} | {c['scenario']} / {c['baseline']} | {fmt(c['cpu_ratio'], '.2f')} | "
                    f"{fmt(c['rps_ratio'], '.2f')} | {fmt(c['ir_ratio'], '.2f')} |")
    return "\n".join(rows)


def targets_table(ts):
    def mark(p, lim):
        return "no limit" if lim is None else "-" if p is None else ("pass" if p else "**miss**")

    def limits(lim):
        if isinstance(lim, tuple):
            return ", ".join(f"{what} {x}" for what, x in zip(("CPU", "Ir"), lim) if x is not None)
        return "none" if lim is None else str(lim)

    rows = ["| target | scenario / baseline | limit | CPU µs/req ratio | | callgrind Ir/req ratio | |",
            "|---|---|---:|---:|---|---:|---|"]
    for t in ts:
        if t.get("status") == "not available":
            rows.append(f"| {t['target']} | | {limits(t['limit'])} | not available: {t['why']} | | | |")
            continue
        rows.append(f"| {t['target']} | {t['scenario']} / {t['baseline']} | {limits(t['limit'])} | "
                    f"{fmt(t['cpu_ratio'], '.3f')} | {mark(t['cpu_pass'], t['cpu_limit'])} | "
                    f"{fmt(t['ir_ratio'], '.3f')} | {mark(t['ir_pass'], t['ir_limit'])} |")
    return "\n".join(rows)


def rss_line(res):
    """Issue 17's "RSS flat" for 1 MiB bodies: the RSS after each round's trial, the gateway's with
    them (gw-post1m and gw-get1m share a process) against gw's (small requests only)."""
    s = res["scenarios"]
    got = [(n, [t["rss_kib"] / 1024 for t in s[n]["trials"]])
           for n in ("gw", "gw-post1m", "gw-get1m", "nginx-post1m", "nginx-get1m") if n in s]
    return ("RSS after each round's trial (MiB): " + "; ".join(
        f"{n} {', '.join(f'{v:.1f}' for v in vs)}" for n, vs in got) + ".") if got else ""


def machine():
    model = "?"
    with open("/proc/cpuinfo") as f:
        for line in f:
            if line.startswith("model name"):
                model = line.split(":", 1)[1].strip()
                break
    commit = subprocess.run(["git", "rev-parse", "--short", "HEAD"], cwd=ROOT, capture_output=True,
                            text=True).stdout.strip()
    dirty = subprocess.run(["git", "status", "--porcelain", "gateway", "Cargo.lock"],
                           cwd=ROOT, capture_output=True, text=True).stdout.split("\n")
    dirty = [line[3:] for line in dirty if line.strip()]

    def version(argv):
        try:
            r = subprocess.run(argv, capture_output=True, text=True, timeout=10)
            return (r.stdout + r.stderr).strip().splitlines()[0]
        except (OSError, IndexError, subprocess.TimeoutExpired):
            return "?"

    return {"nproc": os.cpu_count(), "cpu": model, "kernel": os.uname().release, "commit": commit,
            "gateway_sources_modified": dirty,
            "nginx": version(["nginx", "-v"]), "wrk": version(["wrk", "-v"]),
            "h2load": version(["h2load", "--version"]), "valgrind": version(["valgrind", "--version"])}


NOTES_MARK = "<!-- Everything below this line is kept when bench/run.py rewrites this file. -->"


def write_markdown(res):
    m = res["machine"]
    o = res["options"]
    busy = res["load"]
    notes = "## Notes\n\n(none yet)\n"
    if os.path.exists(BENCHMARKS_MD):
        old = open(BENCHMARKS_MD).read()
        if NOTES_MARK in old:
            notes = old.split(NOTES_MARK, 1)[1].lstrip("\n")
    busy_line = (
        f"Load average before the run: {busy['before'][0]:.2f}, after: {busy['after'][0]:.2f}; "
        f"CPU taken by other processes during the trials (other than proxy, upstream and load generator): "
        f"median {busy['median_foreign_cores']:.2f} cores, max {busy['max_foreign_cores']:.2f}; "
        f"{busy['trials_disturbed']} of {busy['trials']} trials above 0.1 core. "
        + ("**The machine was busy with other work during this run (other engineers' builds/tests): "
           "wall-clock figures are noisy; prefer the callgrind figures.**" if busy["busy"] else
           "The machine was otherwise quiet."))
    text = f"""# Benchmarks

The gateway against nginx and against itself, measured in one run as ratios (issue 8). Written by
`cargo xtask bench` (`python3 bench/run.py`); raw figures: [bench/results/latest.json](bench/results/latest.json).

- Date: {res['date']}
- Commit: `{m['commit']}`{(' plus uncommitted changes in the working tree to ' + ', '.join(m['gateway_sources_modified'])) if m['gateway_sources_modified'] else ''}
- Machine: {m['nproc']} cores, {m['cpu']}, Linux {m['kernel']}
- Tools: {m['nginx']}; {m['wrk']}; {m['h2load']}; {m['valgrind']}
- Load: {o['rounds']} rounds × {len(res['scenarios'])} scenarios × {o['seconds']} s, interleaved; {o['connections']}
  keep-alive connections; wrk/h2load with 1 thread. Proxy under test on core {PROXY_CORE}, load generator
  and upstream on core {LOAD_CORE}. Medians over the rounds (RSS: maximum).
- {busy_line}

## Results

{table(res)}

- **CPU µs/req**: utime+stime of the proxy process (all its threads) over a trial, from /proc, divided by
  the requests of the trial. For `direct` it is the upstream nginx's (there is no proxy).
- **×direct rps**: requests/s relative to wrk straight to the upstream. **×nginx CPU**, **×gw CPU**: CPU
  per request relative to nginx as a proxy and to the gateway without filters (same method and body).
- **Ir/req**: instructions per request of the proxy under callgrind: {o['callgrind_requests']} requests
  (1 MiB bodies: {o['callgrind_requests_1m']}) sent one after another on one keep-alive connection after a
  warm-up, between two `callgrind_control --dump`s, minus the idle cost (timers) measured just before.
  This is the figure that does not move with machine load.
- HTTP/2 rows: h2load (`-c{o['connections']} -m1`); h2load reports no percentiles, so p50 shows the mean.
- WebSocket rows: `bench/ws-echo` keeps {o['connections']} WebSockets open, each sending one
  {WS_MESSAGE_BYTES}-byte binary message and waiting for its echo; req/s is round trips per second, CPU µs/req
  is per round trip, p50 shows the mean round trip; their ×direct, ×nginx and ×gw columns compare with
  `ws-direct`, `nginx-ws` and `gw-ws`. No callgrind figure (the tunnel is a byte copy after the handshake).
- gRPC rows: h2load (`-c{o['connections']} -m1`), each request a POST of one {len(grpc_frame(GRPC_REQUEST_MSG))}-byte
  gRPC message to `{GRPC_PATH}` (`content-type: application/grpc`, `te: trailers`); the upstream (an h2c
  server of the upstream nginx) answers one {len(grpc_frame(GRPC_REPLY_MSG))}-byte message and the trailer
  `grpc-status: 0`, which `nghttp` checks through each proxy before the trials (h2load counts 2xx only).
  nginx's `grpc_pass` keeps a pool of upstream connections (one call each at a time); the gateway
  shares one HTTP/2 connection per endpoint. Their ×nginx and ×gw columns compare with `nginx-grpc` and
  `gw-grpc`; callgrind drives both with `h2load -n N -c1 -m1` and the same request.
- Worker threads: every gateway runs one tokio worker thread (`TOKIO_WORKER_THREADS=1`) on core {PROXY_CORE},
  except the `-2w` rows: two workers on cores 0 and 1, which they share with the load generator and the
  upstream. "two workers / one" below compares them with the one-worker row of the same config; req/s
  is the figure that shows a lock (it does not rise), CPU per request should stay flat. No callgrind
  figure for them (valgrind runs one thread at a time).

## Targets (issue 17)

{targets_table(res['targets'])}

{rss_line(res)}

## Other ratios (same run)

{comparisons_table(res['comparisons'])}

## Scenarios

| scenario | what |
|---|---|
""" + "\n".join(f"| {n} | {d} |" for n, _, _, _, _, d in SCENARIOS) + "\n" + \
        "\n".join(f"| {n} | {d} |" for n, _, _, d in H2_SCENARIOS + GRPC_SCENARIOS + WS_SCENARIOS) + "\n" + \
        "\n".join(f"| {n} | not available: {why} |" for n, _, why in NOT_AVAILABLE) + f"""

- Upstream: nginx (`master_process off`, 1 worker, core {LOAD_CORE}) answering every request with a fixed
  100-byte body via `return 200`: C, steady, and no code of ours in the baseline.
- nginx proxy: 1 worker process (`master_process off`), keep-alive upstream pool (`keepalive 64`,
  HTTP/1.1), `proxy_request_buffering off` (streams bodies as the gateway does), access log off.
- Gateway: one process per configuration, access log off, `GATEWAY_LOG=warn`, upstream pool of 64 idle
  connections. Filters are the Proxy-Wasm module `bench/filters` (proxy-wasm 0.2.5 Rust SDK):
  `noop` does nothing (SDK defaults), `auth` requires `authorization: Bearer bench-token` then removes
  it and sets `x-auth-user`, `ratelimit` counts requests per one-second window in shared data
  (get + CAS set) with a limit never reached. The WIT rows use `bench/filters-wit`, a component
  written with the Rust SDK (`plugin-sdk`) that implements nothing (SDK defaults: continue, no body
  phases), once with `instance_mode: fresh` (a new instance per request) and once with `reuse`.
- TLS rows: one self-signed ECDSA P-256 certificate for `localhost`, made with `openssl` at bench time,
  served by nginx (OpenSSL, TLS 1.2/1.3, its default session settings) and the gateway (rustls); wrk
  negotiates TLS 1.3 and does not resume sessions. `-conn` rows send `Connection: close`, so every
  request is a new TCP connection and a full handshake.
- Realistic chain (`gw-realistic`): filters `auth`, then `ratelimit`, then the route's header rewrites:
  request `set x-team`, `add x-via`, `remove x-internal`; response `set cache-control`, `remove server`.
  wrk sends `authorization` and `x-internal`.
- 10 000 routes: the benchmarked route is the template route `/bench/items/{{id}}`, placed in the middle;
  the others are a third exact paths (`/sNNNNN/health`), a third prefixes (`/sNNNNN/`) and a third
  templates (`/sNNNNN/items/{{id}}`), none matching. `gw-routes10` is the same with 10 routes.

## Reproduce

```
cargo xtask bench                 # about 15 minutes; installs nginx, wrk, nghttp2-client, valgrind, openssl if missing
python3 bench/run.py --quick      # a smoke run (1 round of 2 s, fewer callgrind requests)
python3 bench/run.py --no-build --no-load --no-write --only gw   # callgrind of one scenario, nothing written
python3 bench/run.py --help       # rounds, seconds, connections, --no-callgrind, --no-load, --only SCENARIO...
callgrind_annotate --inclusive=yes target/bench/run/callgrind/cg-gw.<pid>.3 | head -60   # a profile
BENCH_CALLGRIND_ARGS=--cache-sim=yes python3 bench/run.py --no-build --no-load --no-write --only gw   # cache misses too
```

Needs root to install the tools (Debian), 2 cores or more, and ports 18000-18050, 18500 and 19010-19050 free (all moved by BENCH_PORT_OFFSET)
on 127.0.0.1. The Go rows need Go 1.24+ (`cargo xtask go-filter build` installs it from PyPI when
missing); if the Go filter cannot be built or loaded, its rows say why and the rest of the run goes on. Nothing is sent anywhere else. Run it on an otherwise idle machine when you can.

{NOTES_MARK}

{notes}"""
    with open(BENCHMARKS_MD, "w") as f:
        f.write(text)


# ---------------------------------------------------------------------------------------------------


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--seconds", type=int, default=5, help="length of one wrk/h2load trial")
    ap.add_argument("--connections", type=int, default=32)
    ap.add_argument("--callgrind-requests", type=int, default=2000)
    ap.add_argument("--no-callgrind", action="store_true")
    ap.add_argument("--no-load", action="store_true", help="skip the wrk/h2load trials (callgrind only)")
    ap.add_argument("--no-build", action="store_true")
    ap.add_argument("--no-install", action="store_true")
    ap.add_argument("--no-write", action="store_true", help="print only; keep BENCHMARKS.md and the JSON")
    ap.add_argument("--only", action="append", help="run only this scenario (repeatable)")
    ap.add_argument("--quick", action="store_true", help="1 round of 2 s, 300 callgrind requests")
    a = ap.parse_args()
    if a.quick:
        a.rounds, a.seconds, a.callgrind_requests = 1, 2, 300
    n1m = max(20, a.callgrind_requests // 20)

    signal.signal(signal.SIGTERM, on_signal)
    signal.signal(signal.SIGINT, on_signal)
    if (os.cpu_count() or 1) < 2:
        sys.exit("needs at least 2 cores (proxy on core 1, load on core 0)")
    shutil.rmtree(WORK, ignore_errors=True)
    os.makedirs(WORK)
    ensure_tools(not a.no_install)
    if not a.no_build:
        build()
    elif not os.path.exists(GO_FILTER_WASM):
        go_not_available(f"{os.path.relpath(GO_FILTER_WASM, ROOT)} is not built (--no-build)")
    make_certificate()
    shutil.copy2(BUILT_GATEWAY, GATEWAY)
    built = machine()  # the commit the binary was built from
    started_at = time.monotonic()
    load_before = loadavg()
    log(f"load average {load_before}")

    scenarios = [s for s in SCENARIOS if not a.only or s[0] in a.only]
    h2s = [s for s in H2_SCENARIOS if not a.only or s[0] in a.only]
    wss = [s for s in WS_SCENARIOS if not a.only or s[0] in a.only]
    grpcs = [s for s in GRPC_SCENARIOS if not a.only or s[0] in a.only]
    if a.no_load:
        scenarios, h2s, wss, grpcs = [], [], [], []
    servers = {s[1] for s in scenarios} | {s[1] for s in h2s} | {s[1] for s in wss} | {s[1] for s in grpcs}
    ports, pids = {}, {}
    res = {"date": datetime.datetime.now().astimezone().isoformat(timespec="seconds"),
           "options": {"rounds": a.rounds, "seconds": a.seconds, "connections": a.connections,
                       "callgrind_requests": a.callgrind_requests, "callgrind_requests_1m": n1m},
           "scenarios": {}, "callgrind": {}}
    try:
        up = start_upstream()
        ports["upstream"], pids["upstream"] = UPSTREAM_PORT, up.pid
        UPSTREAM_PID[0] = up.pid
        redis = start("redis", ["redis-server", "--port", str(REDIS_PORT), "--bind", HOST, "--save", "",
                                "--appendonly", "no", "--protected-mode", "no"], core=LOAD_CORE)
        wait_tcp(redis, REDIS_PORT)
        if wss:
            ws_up = start("ws-upstream", [WS_ECHO, "server", f"{HOST}:{WS_UPSTREAM_PORT}"], core=LOAD_CORE)
            wait_tcp(ws_up, WS_UPSTREAM_PORT)
            ports["ws-upstream"], pids["ws-upstream"] = WS_UPSTREAM_PORT, ws_up.pid
        if servers & {"nginx", "nginx-h2", "nginx-tls", "nginx-grpc"}:
            p = start_nginx()
            wait_ready(p, NGINX_PORT)
            ports["nginx"], ports["nginx-h2"], ports["nginx-tls"] = NGINX_PORT, NGINX_H2_PORT, NGINX_TLS_PORT
            ports["nginx-grpc"] = NGINX_GRPC_PORT
            pids["nginx"] = pids["nginx-h2"] = pids["nginx-tls"] = pids["nginx-grpc"] = p.pid
        for i, (g, routes) in enumerate(GATEWAYS.items()):
            port = GATEWAY_PORT0 + i
            gateway_config(g, routes, port)
            if g in servers:
                p = start_gateway(g, port)
                path = "/bench/items/1" if "routes" in g else "/"
                try:
                    wait_ready(p, port, path, READY_HEADERS, timeout=120, tls=g in TLS_SERVERS)
                except RuntimeError as e:
                    if not g.startswith("gw-go"):
                        raise
                    # The Go SDK is the newest part: a Go filter that cannot start is reported, and
                    # the rest of the run goes on.
                    stop(p)
                    errs = [ln.strip() for ln in open(os.path.join(WORK, f"{g}.log"), errors="replace")
                            if ln.startswith("error:")]
                    why = re.sub(r"^error: \S+?:\d+:\d+: ", "", errs[-1]) if errs else str(e)
                    log(f"{g} did not start: {why}")
                    go_not_available(f"the gateway did not start with the Go filter: {why}")
                    scenarios = [x for x in scenarios if not x[0].startswith("gw-go-")]
                    continue
                ports[g], pids[g] = port, p.pid
        scripts = {n: wrk_script(n, b, h) for n, _, _, b, h, _ in scenarios}
        for n, srv, _, _ in grpcs:
            grpc_check(ports[srv], n)

        # Warm-up (pools, caches, JIT): 1 s each, not recorded.
        for n, srv, path, _, _, _ in scenarios:
            run_wrk(ports[srv], path, scripts[n], 1, a.connections, srv in TLS_SERVERS)
        for n, srv, path, _ in wss:
            run_ws(ports[srv], path, 1, a.connections)
        for n, srv, path, _ in grpcs:
            run_h2load(ports[srv], path, 1, a.connections, GRPC_H2LOAD_ARGS)
        trials = {n: [] for n, *_ in scenarios + h2s + grpcs + wss}
        for r in range(a.rounds):
            for n, srv, path, _, _, _ in scenarios:
                t = trial("h1", n, pids[srv], ports[srv], path, a.seconds, a.connections, scripts[n],
                          srv in TLS_SERVERS)
                trials[n].append(t)
                log(f"round {r + 1}/{a.rounds} {n}: {t['rps']:,.0f} req/s, {t['cpu_us_per_req']:.2f} µs/req, "
                    f"p99 {t['p99_us']} µs, foreign cores {t['foreign_cores']:.2f}, errors {t['errors']}")
            for n, srv, path, _ in h2s:
                t = trial("h2", n, pids[srv], ports[srv], path, a.seconds, a.connections)
                trials[n].append(t)
                log(f"round {r + 1}/{a.rounds} {n}: {t['rps']:,.0f} req/s, {t['cpu_us_per_req']:.2f} µs/req, "
                    f"foreign cores {t['foreign_cores']:.2f}, errors {t['errors']}")
            for n, srv, path, _ in grpcs:
                t = trial("grpc", n, pids[srv], ports[srv], path, a.seconds, a.connections)
                trials[n].append(t)
                log(f"round {r + 1}/{a.rounds} {n}: {t['rps']:,.0f} calls/s, {t['cpu_us_per_req']:.2f} µs/call, "
                    f"foreign cores {t['foreign_cores']:.2f}, errors {t['errors']}")
            for n, srv, path, _ in wss:
                t = trial("ws", n, pids[srv], ports[srv], path, a.seconds, a.connections,
                          up_pid=pids["ws-upstream"])
                trials[n].append(t)
                log(f"round {r + 1}/{a.rounds} {n}: {t['rps']:,.0f} round trips/s, "
                    f"{t['cpu_us_per_req']:.2f} µs each, foreign cores {t['foreign_cores']:.2f}, errors {t['errors']}")
        for n, *_ in scenarios + h2s + grpcs + wss:
            res["scenarios"][n] = {"trials": trials[n], "summary": summarize(trials[n])}
        load_mid = loadavg()
        for p in list(STARTED):
            if p is not up and p is not redis:
                stop(p)

        if not a.no_callgrind:
            cg_list = [(n, srv, path, b, h, False, ()) for n, srv, path, b, h, _ in SCENARIOS
                       if n in ("nginx", "nginx-tls", "nginx-tls-conn", "nginx-post1m", "nginx-get1m")]
            cg_list += [(n, srv, path, b, h, False, ()) for n, srv, path, b, h, _ in SCENARIOS if srv in GATEWAYS]
            cg_list += [(n, srv, path, 0, {}, True, ()) for n, srv, path, _ in H2_SCENARIOS]
            cg_list += [(n, srv, path, 0, {}, True, GRPC_H2LOAD_ARGS) for n, srv, path, _ in GRPC_SCENARIOS]
            for n, srv, path, b, h, h2, h2_args in cg_list:
                if a.only and n not in a.only:
                    continue
                if srv in GATEWAY_WORKERS:
                    # valgrind runs one thread at a time: the Ir per request is the one-worker row's.
                    log(f"callgrind {n}: skipped (several worker threads; valgrind serializes them)")
                    continue
                if n.startswith(("gw-js-", "gw-py-")):
                    # A JavaScript or Python engine (12-19 MB of Wasm) under valgrind did not serve
                    # its first 300 requests in 5 minutes: these rows have wrk's CPU figures only.
                    res["callgrind"][n] = {"error": "not run: too slow under valgrind"}
                    log(f"callgrind {n}: skipped (a JavaScript or Python engine under valgrind)")
                    continue
                count = n1m if b >= (1 << 20) or n.endswith("get1m") else a.callgrind_requests
                if h.get("connection") == "close":  # a handshake each: slow under valgrind
                    count = max(20, count // 10)
                log(f"callgrind {n}: {count} requests")
                try:
                    c = callgrind_scenario(n, srv, path, b, h, count, 2.0, h2, h2_args)
                    res["callgrind"][n] = c
                    log(f"callgrind {n}: {c['ir_per_req']:,.0f} Ir/req (idle {c['idle_ir_per_s']:,.0f} Ir/s)")
                except Exception as e:  # one failed scenario must not lose the run
                    why = str(e)
                    logf = os.path.join(WORK, f"{srv}.log")
                    if os.path.exists(logf):  # the gateway's own reason, if it gave one
                        errs = [ln for ln in open(logf, errors="replace") if ln.startswith("error:")]
                        if errs:
                            why = errs[-1].strip()
                    log(f"callgrind {n} failed: {why}")
                    res["callgrind"][n] = {"error": why}
    finally:
        stop_all()

    foreign = [t["foreign_cores"] for s in res["scenarios"].values() for t in s["trials"]]
    own = [t["proxy_core_util"] for s in res["scenarios"].values() for t in s["trials"]]
    res["load"] = {"before": load_before, "after_load_trials": load_mid, "after": loadavg(),
                   "median_foreign_cores": med(foreign) or 0.0, "max_foreign_cores": max(foreign, default=0.0),
                   "trials_disturbed": sum(f > 0.1 for f in foreign), "trials": len(foreign),
                   # Busy: other processes took more than 0.1 core in a quarter of the trials. (The
                   # load average before the run is reported but not used: it still counts the build
                   # that just ended.)
                   "busy": bool(sum(f > 0.1 for f in foreign) * 4 > len(foreign)),
                   "median_proxy_core_util": med(own)}
    res["machine"] = built
    res["targets"] = targets(res)
    res["comparisons"] = comparisons(res)
    res["not_available"] = [{"scenario": n, "what": w, "why": y} for n, w, y in NOT_AVAILABLE]
    res["wall_seconds"] = time.monotonic() - started_at
    print(table(res))
    print()
    print(targets_table(res["targets"]))
    print(rss_line(res))
    print()
    print(comparisons_table(res["comparisons"]))
    if not a.no_write:
        os.makedirs(os.path.dirname(RESULTS), exist_ok=True)
        with open(RESULTS, "w") as f:
            json.dump(res, f, indent=1)
            f.write("\n")
        write_markdown(res)
        log(f"wrote {os.path.relpath(RESULTS, ROOT)} and BENCHMARKS.md")


if __name__ == "__main__":
    try:
        main()
    finally:
        stop_all()
