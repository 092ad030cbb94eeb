//! Bodies (buffered and streaming, Envoy's set-buffer semantics) and trailers.

use crate::support::*;
use bytes::Bytes;
use gateway::filter::{ResponseHead, Verdict};

#[tokio::test]
async fn buffered_request_body_is_rewritten_at_the_end() {
    let p = load(plugin_cfg("body-buffer", &fixtures().kitchen), host().await).await;
    let f = filter(&p, "r", "").await;
    let (_, _, mut ctx) = request_headers(&f, &[("x-test", "body-buffer")], false).await;
    let mut chunk = Bytes::from_static(b"hello ");
    assert!(matches!(
        ctx.on_request_body(&mut chunk, false).await,
        Ok(Verdict::Buffer)
    ));
    let mut all = Bytes::from_static(b"hello world");
    assert!(matches!(
        ctx.on_request_body(&mut all, true).await,
        Ok(Verdict::Continue)
    ));
    assert_eq!(&all[..], b"HELLO WORLD");
}

#[tokio::test]
async fn set_buffer_prepends_appends_and_slices() {
    let p = load(plugin_cfg("body-edit", &fixtures().kitchen), host().await).await;
    let f = filter(&p, "r", "").await;
    let (_, _, mut ctx) = request_headers(&f, &[("x-test", "body-edit")], false).await;
    let mut chunk = Bytes::from_static(b"abc");
    assert!(matches!(
        ctx.on_request_body(&mut chunk, true).await,
        Ok(Verdict::Continue)
    ));
    assert_eq!(&chunk[..], b"<abc>");

    let (_, _, mut ctx) = request_headers(&f, &[("x-test", "body-slice")], false).await;
    let mut chunk = Bytes::from_static(b"0123456789");
    ctx.on_request_body(&mut chunk, true).await.unwrap();
    assert_eq!(&chunk[..], b"slice=234,past=None");
}

#[tokio::test]
async fn streaming_response_body_is_rewritten_per_chunk() {
    let p = load(plugin_cfg("resp-stream", &fixtures().kitchen), host().await).await;
    let f = filter(&p, "r", "").await;
    let (_, _, mut ctx) = request_headers(&f, &[("x-test", "resp-stream")], true).await;
    let mut resp = ResponseHead {
        status: http::StatusCode::OK,
        headers: Default::default(),
        upstream: None,
    };
    ctx.on_response_headers(&mut resp, false).await.unwrap();
    let mut out = Vec::new();
    for (chunk, eos) in [("a foo ", false), ("foofoo", false), (" end", true)] {
        let mut c = Bytes::from(chunk);
        assert!(matches!(
            ctx.on_response_body(&mut c, eos).await,
            Ok(Verdict::Continue)
        ));
        out.extend_from_slice(&c);
    }
    assert_eq!(String::from_utf8(out).unwrap(), "a bar barbar end");
}

#[tokio::test]
async fn buffered_response_body() {
    let p = load(plugin_cfg("resp-buffer", &fixtures().kitchen), host().await).await;
    let f = filter(&p, "r", "").await;
    let (_, _, mut ctx) = request_headers(&f, &[("x-test", "resp-buffer")], true).await;
    let mut resp = ResponseHead {
        status: http::StatusCode::OK,
        headers: Default::default(),
        upstream: None,
    };
    ctx.on_response_headers(&mut resp, false).await.unwrap();
    let mut c = Bytes::from_static(b"part");
    assert!(matches!(
        ctx.on_response_body(&mut c, false).await,
        Ok(Verdict::Buffer)
    ));
    let mut c = Bytes::from_static(b"part two");
    assert!(matches!(
        ctx.on_response_body(&mut c, true).await,
        Ok(Verdict::Continue)
    ));
    assert_eq!(&c[..], b"len=8 total=8 body=part two");
}

#[tokio::test]
async fn trailers_both_ways() {
    let p = load(plugin_cfg("trailers", &fixtures().kitchen), host().await).await;
    let f = filter(&p, "r", "").await;
    let (_, _, mut ctx) = request_headers(&f, &[], false).await;
    let mut t = http::HeaderMap::new();
    t.insert("x-trailer", "v".parse().unwrap());
    ctx.on_request_trailers(&mut t).await.unwrap();
    assert_eq!(hv(&t, "x-trailer-seen"), "v/1");
    let mut resp = ResponseHead {
        status: http::StatusCode::OK,
        headers: Default::default(),
        upstream: None,
    };
    ctx.on_response_headers(&mut resp, false).await.unwrap();
    let mut t = http::HeaderMap::new();
    ctx.on_response_trailers(&mut t).await.unwrap();
    assert_eq!(hv(&t, "x-resp-trailer"), "added");
}
