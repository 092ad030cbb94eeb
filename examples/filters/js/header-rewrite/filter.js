// header-rewrite: sets, appends and removes request headers (in onRequest) and response headers (in
// onResponse), as the route's config says. See examples/filters/README.md.
//
//   config:
//     request:  {set: {x-env: prod}, add: {x-tag: a}, remove: [x-debug]}
//     response: {set: {x-frame-options: DENY}, remove: [server]}

// The edits of each direction, applied in the order remove, set, add.
let edits = { request: null, response: null };

const TOKEN = /^[!#$%&'*+\-.^_`|~0-9A-Za-z]+$/;

function headerName(field, name) {
  if (!TOKEN.test(name)) {
    throw `${field}: \`${name}\` is not a valid header name`;
  }
  return name.toLowerCase();
}

function pairs(field, value) {
  if (typeof value !== 'object' || value === null || Array.isArray(value)) {
    throw `${field}: expected a map of header names to strings`;
  }
  return Object.keys(value)
    .sort()
    .map((k) => {
      const f = `${field}.${k}`;
      const name = headerName(f, k);
      const v = value[k];
      if (typeof v !== 'string') {
        throw `${f}: the value must be a string, not ${JSON.stringify(v)}`;
      }
      if (/[\r\n\0]/.test(v)) {
        throw `${f}: the value must not contain CR, LF or NUL`;
      }
      return [name, v];
    });
}

function names(field, value) {
  if (!Array.isArray(value)) {
    throw `${field}: expected a list of header names`;
  }
  return value.map((n, i) => {
    if (typeof n !== 'string') {
      throw `${field}[${i}]: expected a header name`;
    }
    return headerName(`${field}[${i}]`, n);
  });
}

function section(field, value) {
  if (value === undefined || value === null) {
    return null;
  }
  if (typeof value !== 'object' || Array.isArray(value)) {
    throw `${field}: expected a map with set, add and remove`;
  }
  const out = { set: [], add: [], remove: [] };
  for (const [k, v] of Object.entries(value)) {
    const f = `${field}.${k}`;
    if (k === 'set' || k === 'add') {
      out[k] = pairs(f, v);
    } else if (k === 'remove') {
      out.remove = names(f, v);
    } else {
      throw `${f}: unknown key \`${k}\` (expected set, add or remove)`;
    }
  }
  return out;
}

export function init(config) {
  let doc = {};
  if (config.trim() !== '') {
    try {
      doc = JSON.parse(config);
    } catch (e) {
      throw `expected a map with request and response sections: ${e}`;
    }
  }
  if (typeof doc !== 'object' || doc === null || Array.isArray(doc)) {
    throw 'expected a map with request and response sections';
  }
  for (const k of Object.keys(doc)) {
    if (k !== 'request' && k !== 'response') {
      throw `unknown key \`${k}\` (expected request or response)`;
    }
  }
  edits = { request: section('request', doc.request), response: section('response', doc.response) };
  return { requestBody: 'skip', responseBody: 'skip' };
}

// `target` is the request or the response: both have removeHeader, setHeader and appendHeader.
function apply(target, e) {
  if (e === null) {
    return;
  }
  for (const name of e.remove) {
    target.removeHeader(name);
  }
  for (const [name, value] of e.set) {
    target.setHeader(name, value);
  }
  for (const [name, value] of e.add) {
    target.appendHeader(name, value);
  }
}

export function onRequest(req) {
  apply(req, edits.request);
  return { tag: 'continue' };
}

export function onResponse(resp) {
  apply(resp, edits.response);
  return { tag: 'continue' };
}

export function onRequestBody(req, endOfStream) {
  return { tag: 'continue' };
}

export function onResponseBody(resp, endOfStream) {
  return { tag: 'continue' };
}
