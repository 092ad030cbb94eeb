// The gateway filter {{name}}, made by `gateway plugin new js {{name}}`: change the functions.
//
// It answers 403 to requests under /private, tells the backend it passed (`x-filter: js`), and adds
// `x-hello: <greeting>` to responses, where the greeting is the route's config (a string; default
// "world").
//
// The module's exports are the world's (wit/world.wit, world `filter`), in camelCase: `init`,
// `onRequest`, `onRequestBody`, `onResponse`, `onResponseBody`. Host interfaces are imported as
// 'gateway:filter/<interface>@{{wit_version}}', the version of wit/world.wit (a copy of another
// version of the world needs its version here). WIT types in JavaScript: a record is an object with
// camelCase keys, an enum a string ('skip'), a variant `{tag, val}`, list<u8> a Uint8Array, an option
// the value or undefined. A host call that returns an error throws it (its `payload` is the WIT
// error); throwing from `init` rejects the config with the thrown string.
import { log } from 'gateway:filter/log@{{wit_version}}';

// Module state lives as long as the instance: with `instance_mode: reuse` (what a JavaScript filter
// wants), across requests. Keep only config here, nothing of one request.
let greeting = 'world';

export function init(config) {
  const g = config.trim() || 'world';
  if (/[\r\n]/.test(g)) {
    throw 'the greeting must be one line';
  }
  greeting = g;
  log('debug', `hello filter configured with greeting ${g}`);
  return { requestBody: 'skip', responseBody: 'skip' };
}

export function onRequest(req) {
  if (req.path().startsWith('/private')) {
    return {
      tag: 'respond',
      val: {
        status: 403,
        headers: [['content-type', 'text/plain']],
        body: new TextEncoder().encode('forbidden\n'),
      },
    };
  }
  req.setHeader('x-filter', 'js');
  return { tag: 'continue' };
}

export function onResponse(resp) {
  resp.setHeader('x-hello', greeting);
  return { tag: 'continue' };
}

// The body phases are not asked for (`skip` in init); the world still has them.
export function onRequestBody(req, endOfStream) {
  return { tag: 'continue' };
}

export function onResponseBody(resp, endOfStream) {
  return { tag: 'continue' };
}
