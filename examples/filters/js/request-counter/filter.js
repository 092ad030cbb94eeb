// request-counter: counts requests in the shared store (kv increment by 1 on `key`, default the
// route's name) and puts the request's number on its response as `x-request-count`; adds 1 to the
// plugin counter `requests_total`. See examples/filters/README.md.
//
//   config: {key: hits}
import { get as facts } from 'gateway:filter/facts@0.1.5';
import { increment } from 'gateway:filter/kv@0.1.5';
import { log } from 'gateway:filter/log@0.1.5';
import { counterAdd } from 'gateway:filter/metrics@0.1.5';

let key = null;
// This request's number: an instance serves one request at a time, and onRequest resets it.
let count = null;

export function init(config) {
  let doc = {};
  if (config.trim() !== '') {
    try {
      doc = JSON.parse(config);
    } catch (e) {
      throw `config: expected a map: ${e}`;
    }
  }
  if (typeof doc !== 'object' || doc === null || Array.isArray(doc)) {
    throw 'config: expected a map';
  }
  for (const [k, v] of Object.entries(doc)) {
    if (k !== 'key') {
      throw `config.${k}: unknown field \`${k}\`, expected \`key\``;
    }
    if (typeof v !== 'string' || v === '') {
      throw `config.key: expected a non-empty string, found ${JSON.stringify(v)}`;
    }
  }
  key = doc.key ?? null;
  return { requestBody: 'skip', responseBody: 'skip' };
}

// The WIT error a host call threw (jco's ComponentError carries it as `payload`), as text.
function why(e) {
  const p = e && e.payload;
  return p ? `${p.tag}${p.val === undefined ? '' : `: ${p.val}`}` : String(e);
}

export function onRequest(req) {
  count = null;
  const k = key ?? facts().route;
  try {
    count = increment(k, 1n);
  } catch (e) {
    log('warn', `request-counter: cannot count \`${k}\`: ${why(e)}`);
  }
  try {
    counterAdd('requests_total', 1n);
  } catch (e) {
    log('warn', `request-counter: requests_total: ${why(e)}`);
  }
  return { tag: 'continue' };
}

export function onResponse(resp) {
  if (count !== null) {
    resp.setHeader('x-request-count', count.toString());
    count = null;
  }
  return { tag: 'continue' };
}

export function onRequestBody(req, endOfStream) {
  return { tag: 'continue' };
}

export function onResponseBody(resp, endOfStream) {
  return { tag: 'continue' };
}
