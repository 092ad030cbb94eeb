//! The benchmark's function backend: answers every request with the body the bench upstream
//! answers (the `BODY` environment variable, set by bench/run.py), so that a function route and a
//! proxied route give the client the same answer.

use wasi::http::types::{
    Fields, IncomingRequest, OutgoingBody, OutgoingResponse, ResponseOutparam,
};

struct Bench;

wasi::http::proxy::export!(Bench);

impl wasi::exports::http::incoming_handler::Guest for Bench {
    fn handle(_request: IncomingRequest, out: ResponseOutparam) {
        let body_text = std::env::var("BODY").unwrap_or_default();
        let headers =
            Fields::from_list(&[("content-type".to_string(), b"application/json".to_vec())])
                .expect("valid headers");
        let resp = OutgoingResponse::new(headers);
        let body = resp.body().expect("the body is taken once");
        ResponseOutparam::set(out, Ok(resp));
        let stream = body.write().expect("the stream is taken once");
        stream
            .blocking_write_and_flush(body_text.as_bytes())
            .expect("the client reads");
        drop(stream);
        OutgoingBody::finish(body, None).expect("the body is complete");
    }
}
