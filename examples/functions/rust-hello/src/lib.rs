//! A function backend: answers `GET /fn/hello?name=Ada` with a greeting, as a `wasi:http/proxy`
//! component. The greeting comes from the `GREETING` environment variable (the function's `env:` in
//! the gateway's config); the request's method, path and the `x-consumer` a filter may have set are
//! echoed, so the route's filter chain around the function shows.

use wasi::http::types::{
    Fields, IncomingRequest, OutgoingBody, OutgoingResponse, ResponseOutparam,
};

struct Hello;

wasi::http::proxy::export!(Hello);

impl wasi::exports::http::incoming_handler::Guest for Hello {
    fn handle(request: IncomingRequest, out: ResponseOutparam) {
        let greeting = std::env::var("GREETING").unwrap_or_else(|_| "Hello".into());
        let path = request.path_with_query().unwrap_or_default();
        let name = path
            .split_once('?')
            .and_then(|(_, q)| q.split('&').find_map(|kv| kv.strip_prefix("name=")))
            .filter(|n| !n.is_empty())
            .unwrap_or("world");
        let text = format!("{greeting}, {name}! (a Wasm function answered {path})\n");

        let headers = Fields::from_list(&[
            (
                "content-type".to_string(),
                b"text/plain; charset=utf-8".to_vec(),
            ),
            ("x-function".to_string(), b"rust-hello".to_vec()),
        ])
        .expect("valid headers");
        let resp = OutgoingResponse::new(headers);
        let body = resp.body().expect("the body is taken once");
        ResponseOutparam::set(out, Ok(resp));
        let stream = body.write().expect("the stream is taken once");
        stream
            .blocking_write_and_flush(text.as_bytes())
            .expect("the client reads");
        drop(stream);
        OutgoingBody::finish(body, None).expect("the body is complete");
    }
}
