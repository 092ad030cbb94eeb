use super::*;
use crate::config::parse;

fn h(pairs: &[(&str, &str)]) -> Vec<(String, String)> {
    pairs
        .iter()
        .map(|(n, v)| (n.to_string(), v.to_string()))
        .collect()
}

fn ok(status: u16, body: &str) -> Result<http::Response, Error> {
    Ok(http::Response {
        status,
        headers: h(&[("content-type", "application/json"), ("set-cookie", "s=1")]),
        body: body.as_bytes().to_vec(),
    })
}

fn body(c: &Composed) -> Value {
    serde_json::from_slice(&c.answer.body)
        .unwrap_or_else(|e| panic!("{e}: {}", String::from_utf8_lossy(&c.answer.body)))
}

const TWO: &str = r#"{"name": "user", "upstream": "users", "path": "/users/{id}"},
                     {"name": "orders", "upstream": "orders", "path": "/orders?user={id}"}"#;

fn config(extra: &str) -> Config {
    parse(&format!(r#"{{"calls": [{TWO}]{extra}}}"#)).unwrap()
}

#[test]
fn the_requests() {
    let c = parse(
        r#"{"calls": [
            {"name": "user", "upstream": "users", "path": "/users/{id}?fields={query.fields|all}",
             "headers": {"authorization": "{header.authorization}", "x-empty": "{query.none|}"},
             "timeout": "250ms"},
            {"name": "search", "upstream": "search", "method": "POST", "path": "/search",
             "headers": {"x-request-id": "mine", "accept": "*/*"},
             "body": {"user": "{id}", "q": "{query.q}", "n": 10, "tags": ["t", "{query.q}!"]}}
        ]}"#,
    )
    .unwrap();
    let params = h(&[("id", "a%20b")]);
    let headers = h(&[("authorization", "Bearer x"), ("cookie", "c=1")]);
    let inputs = Inputs {
        path_params: &params,
        query: Some("q=%22quoted%22+%7B%7D"),
        headers: &headers,
    };
    let calls = c.requests(&inputs, "req-1").unwrap();
    assert_eq!(calls.len(), 2);
    let (up, r) = &calls[0];
    assert_eq!(up, "users");
    assert_eq!(
        (r.method.as_str(), r.path_with_query.as_str()),
        ("GET", "/users/a%20b?fields=all")
    );
    assert_eq!(r.timeout_ms, 250);
    // Only what the call names: no cookie; the empty header left out.
    assert_eq!(
        r.headers,
        h(&[
            ("authorization", "Bearer x"),
            ("accept", "application/json"),
            ("x-request-id", "req-1")
        ])
    );
    assert!(r.body.is_empty());
    let (up, r) = &calls[1];
    assert_eq!(up, "search");
    assert_eq!((r.method.as_str(), r.timeout_ms), ("POST", 3000));
    let mut names: Vec<&str> = r.headers.iter().map(|(n, _)| n.as_str()).collect();
    names.sort();
    assert_eq!(names, ["accept", "content-type", "x-request-id"]);
    assert!(r.headers.contains(&("x-request-id".into(), "mine".into())));
    assert!(r.headers.contains(&("accept".into(), "*/*".into())));
    // Values are JSON strings whatever they hold: quotes and braces cannot change the body's shape.
    let sent: Value = serde_json::from_slice(&r.body).unwrap();
    assert_eq!(
        sent,
        json!({"user": "a b", "q": "\"quoted\" {}", "n": 10, "tags": ["t", "\"quoted\" {}!"]})
    );
}

#[test]
fn refusals() {
    let c = config("");
    let none = Inputs::default();
    let r = c.requests(&none, "r").unwrap_err();
    assert_eq!(r.call, "user");
    assert!(r.misconfigured());
    let a = r.answer("r");
    assert_eq!(a.status, 500);
    let v: Value = serde_json::from_slice(&a.body).unwrap();
    assert_eq!(v["error"], MISCONFIGURED_CODE);
    assert_eq!(
        v["message"],
        "call `user` needs the path parameter `id`, which the route's path template does not capture"
    );

    let c =
        parse(r#"{"calls": [{"name": "o", "upstream": "o", "path": "/o?since={query.since}"}]}"#)
            .unwrap();
    let r = c.requests(&none, "r").unwrap_err();
    assert!(!r.misconfigured());
    let a = r.answer("r-9");
    assert_eq!(a.status, 400);
    assert!(a.headers.contains(&("x-request-id".into(), "r-9".into())));
    let v: Value = serde_json::from_slice(&a.body).unwrap();
    assert_eq!(
        v,
        json!({"error": "bad_request", "request_id": "r-9",
               "message": "the request has no query parameter `since`, which call `o` needs"})
    );

    let params = h(&[("id", "..")]);
    let dots = Inputs {
        path_params: &params,
        ..Inputs::default()
    };
    let r = config("").requests(&dots, "r").unwrap_err();
    assert_eq!(r.answer("r").status, 400);
    assert!(r.message().contains("`.` or `..`"), "{}", r.message());
}

#[test]
fn merged_into_one_object_in_call_order() {
    let c = config("");
    let composed = c.compose(
        vec![
            ok(
                200,
                "{\"name\": \"Ann\", \"id\": 7, \"big\": 12345678901234567890123}\n",
            ),
            ok(203, " [1, 2.50] "),
        ],
        "r",
    );
    assert_eq!(composed.outcome, Outcome::Complete);
    assert!(composed.failures.is_empty());
    assert_eq!(composed.answer.status, 200);
    // No header of the answers (their cookies, caching, lengths) is copied.
    assert_eq!(
        composed.answer.headers,
        h(&[("content-type", "application/json")])
    );
    // The answers as they came: key order and numbers kept byte for byte.
    assert_eq!(
        String::from_utf8(composed.answer.body).unwrap(),
        "{\"user\":{\"name\": \"Ann\", \"id\": 7, \"big\": 12345678901234567890123},\"orders\":[1, 2.50]}\n"
    );
}

#[test]
fn merged_into_an_array() {
    let c = config(r#", "merge": "array""#);
    let composed = c.compose(vec![ok(200, "\"a\""), ok(200, "null")], "r");
    assert_eq!(composed.outcome, Outcome::Complete);
    assert_eq!(body(&composed), json!(["a", null]));

    let c = config(r#", "merge": "array", "on_error": "partial""#);
    let composed = c.compose(vec![ok(200, "{}"), Err(Error::Timeout)], "r");
    assert_eq!(composed.outcome, Outcome::Partial);
    assert_eq!(
        body(&composed),
        json!({"results": [{}, null], "errors": [
            {"call": "orders", "error": "timeout",
             "message": "upstream `orders` did not answer within 3000 ms"}
        ]})
    );
    let composed = c.compose(vec![ok(200, "1"), ok(200, "2")], "r");
    assert_eq!(body(&composed), json!({"results": [1, 2], "errors": []}));
}

#[test]
fn what_counts_as_a_failed_call() {
    let c = config(r#", "on_error": "partial""#);
    for (result, code, status) in [
        (ok(503, "{\"down\": true}"), "status", Some(503u16)),
        (ok(404, "{}"), "status", Some(404)),
        (ok(302, ""), "status", Some(302)),
        (ok(200, "<html>oops</html>"), "not_json", Some(200)),
        (ok(200, ""), "not_json", Some(200)),
        (ok(204, ""), "not_json", Some(204)),
        (ok(200, "{\"a\": 1} trailing"), "not_json", Some(200)),
        (Err(Error::Timeout), "timeout", None),
        (
            Err(Error::Failed("connection refused".into())),
            "unavailable",
            None,
        ),
    ] {
        let composed = c.compose(vec![ok(200, "{\"id\": 7}"), result], "r");
        assert_eq!(composed.outcome, Outcome::Partial, "{code}");
        assert_eq!(composed.answer.status, 200);
        let v = body(&composed);
        assert_eq!(v["user"], json!({"id": 7}));
        assert_eq!(v["orders"], Value::Null);
        let e = &v["errors"][0];
        assert_eq!(e["call"], "orders");
        assert_eq!(e["error"], code);
        assert_eq!(
            e.get("status").and_then(Value::as_u64),
            status.map(u64::from)
        );
        assert!(
            e["message"].as_str().unwrap().contains("upstream `orders`"),
            "{e}"
        );
    }
    let composed = c.compose(vec![ok(200, "{}"), ok(200, "{}")], "r");
    assert_eq!(composed.outcome, Outcome::Complete);
    assert_eq!(
        body(&composed),
        json!({"user": {}, "orders": {}, "errors": []})
    );
}

#[test]
fn fail_answers_502_naming_the_call() {
    let c = config("");
    let composed = c.compose(vec![ok(200, "{}"), ok(503, "down")], "req-7");
    assert_eq!(composed.outcome, Outcome::Failed);
    assert_eq!(composed.answer.status, 502);
    assert!(composed
        .answer
        .headers
        .contains(&("x-request-id".into(), "req-7".into())));
    assert_eq!(
        body(&composed),
        json!({
            "error": "composition_failed",
            "message": "call `orders` failed: upstream `orders` answered 503",
            "call": "orders",
            "errors": [{"call": "orders", "error": "status", "status": 503,
                        "message": "upstream `orders` answered 503"}],
            "request_id": "req-7",
        })
    );
    // Every failure is listed; the first in call order is named.
    let composed = c.compose(vec![Err(Error::Timeout), ok(500, "")], "r");
    let v = body(&composed);
    assert_eq!(v["call"], "user");
    assert_eq!(v["errors"].as_array().unwrap().len(), 2);
}

#[test]
fn a_required_call_or_a_config_fault_fails_even_partial() {
    let c = parse(
        r#"{"on_error": "partial", "calls": [
            {"name": "user", "upstream": "users", "required": true},
            {"name": "extra", "upstream": "extra"}]}"#,
    )
    .unwrap();
    let composed = c.compose(vec![Err(Error::Timeout), ok(200, "{}")], "r");
    assert_eq!(composed.outcome, Outcome::Failed);
    assert_eq!(body(&composed)["call"], "user");
    // The optional one may fail.
    let composed = c.compose(vec![ok(200, "{}"), Err(Error::Timeout)], "r");
    assert_eq!(composed.outcome, Outcome::Partial);
    // The 502 names the call that failed the request, even after an optional one that failed.
    let late = parse(
        r#"{"on_error": "partial", "calls": [
            {"name": "extra", "upstream": "extra"},
            {"name": "user", "upstream": "users", "required": true}]}"#,
    )
    .unwrap();
    let composed = late.compose(vec![ok(500, ""), ok(404, "{}")], "r");
    assert_eq!(composed.outcome, Outcome::Failed);
    let v = body(&composed);
    assert_eq!(v["call"], "user");
    assert_eq!(v["errors"][0]["call"], "extra");
    assert_eq!(v["errors"][1]["call"], "user");

    for e in [
        Error::Denied("upstream `extra` is not granted".into()),
        Error::BadRequest("bad header".into()),
    ] {
        let composed = c.compose(vec![ok(200, "{}"), Err(e)], "r");
        assert_eq!(composed.outcome, Outcome::Failed);
        assert_eq!(composed.answer.status, 502);
        let v = body(&composed);
        assert_eq!(v["call"], "extra");
        assert!(composed.failures[0].config_fault);
    }
    // A result the host did not give is a failure, not a panic.
    let composed = c.compose(vec![ok(200, "{}")], "r");
    assert_eq!(composed.outcome, Outcome::Failed);
    assert_eq!(body(&composed)["call"], "extra");
}
