// A function backend in JavaScript: answers `GET /fn/hello?name=Ada` with a greeting, as a
// `wasi:http/proxy` component (componentize-js, world `function` of ../wit). The greeting comes from
// the `GREETING` environment variable (the function's `env:` in the gateway's config); the method,
// path and the `x-consumer-username` header a filter (key-auth) may have set are echoed, so the
// route's filter chain around the function shows. A POST body is read and its size told, to show the
// request body streaming in.
//
// The handler is StarlingMonkey's fetch event (the Service Worker API): the engine exports
// `wasi:http/incoming-handler` and turns each call into an event with a `Request`.
import { getEnvironment } from 'wasi:cli/environment@0.2.10';

// The module's top level runs once, when the component is built (componentize-js snapshots the
// initialized engine with Wizer): host calls are made in the handler, not up here.
let env = null;

async function handle(request) {
  env ??= Object.fromEntries(getEnvironment());
  const url = new URL(request.url);
  const name = url.searchParams.get('name') || 'world';
  const greeting = env.GREETING || 'Hello';
  let text = `${greeting}, ${name}! (JavaScript answered ${request.method} ${url.pathname}${url.search})\n`;
  const consumer = request.headers.get('x-consumer-username');
  if (consumer) {
    text += `consumer: ${consumer}\n`;
  }
  if (request.method === 'POST') {
    const body = await request.arrayBuffer();
    text += `read ${body.byteLength} bytes\n`;
  }
  return new Response(text, {
    headers: { 'content-type': 'text/plain; charset=utf-8', 'x-function': 'js-hello' },
  });
}

addEventListener('fetch', (event) => event.respondWith(handle(event.request)));
