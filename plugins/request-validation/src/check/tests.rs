//! The request checks end to end, with configs as the gateway passes them: the schemas
//! (`*_schema`), OpenAPI 3.0 and 3.1 documents, answers, and config errors.

use super::*;
use crate::config::parse;
use serde_json::json;

/// A request: method, path with query, headers.
struct Req {
    method: &'static str,
    path: String,
    query: Option<String>,
    headers: Vec<(String, String)>,
    path_params: Vec<(String, String)>,
}

fn req(method: &'static str, target: &str, headers: &[(&str, &str)]) -> Req {
    let (path, query) = match target.split_once('?') {
        Some((p, q)) => (p.to_string(), Some(q.to_string())),
        None => (target.to_string(), None),
    };
    Req {
        method,
        path,
        query,
        headers: headers
            .iter()
            .map(|(n, v)| (n.to_ascii_lowercase(), v.to_string()))
            .collect(),
        path_params: Vec::new(),
    }
}

/// Runs a request (with `body`, if any) through the validator: None if it passes, else the
/// answer's status and JSON body.
fn run(v: &Validator, r: &Req, body: Option<&str>) -> Option<(u16, Value)> {
    let head = Head {
        method: r.method,
        path: &r.path,
        query: r.query.as_deref(),
        headers: &r.headers,
        path_params: &r.path_params,
    };
    let announced = if body.is_some() {
        Announced::Yes
    } else {
        Announced::No
    };
    let step = match v.head(&head, || announced) {
        Step::Body(p) => v.body(p, body.unwrap_or_default().as_bytes()),
        other => other,
    };
    match step {
        Step::Pass => None,
        Step::Answer(a) => Some((a.status, serde_json::from_slice(&a.body).unwrap())),
        Step::Body(_) => panic!("asked for the body twice"),
    }
}

fn pointers(answer: &Option<(u16, Value)>) -> Vec<String> {
    let (_, body) = answer.as_ref().expect("refused");
    body["errors"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| {
            format!(
                "{}:{}",
                e["in"].as_str().unwrap(),
                e["pointer"].as_str().unwrap()
            )
        })
        .collect()
}

fn validator(config: Value) -> Validator {
    parse(&config.to_string()).unwrap_or_else(|e| panic!("{e}"))
}

#[test]
fn schemas_for_body_query_headers_and_path() {
    let v = validator(json!({
        "body_schema": {"type": "object", "required": ["name"],
                        "properties": {"name": {"type": "string"}, "price": {"type": "number", "minimum": 0}}},
        "query_schema": {"type": "object", "properties": {
            "limit": {"type": "integer", "maximum": 100},
            "tags": {"type": "array", "items": {"type": "string"}},
            "dry": {"type": "boolean"}}, "additionalProperties": false},
        "header_schema": {"type": "object", "required": ["X-Api-Version"],
                          "properties": {"X-Api-Version": {"enum": ["1", "2"]}}},
        "path_schema": {"type": "object", "properties": {"id": {"type": "integer"}, "slug": {"pattern": "^[a-z ]+$"}}}
    }));
    assert!(v.reads_bodies());
    let good = req(
        "POST",
        "/items/7?limit=10&tags=a&tags=b&dry=true",
        &[("x-api-version", "2"), ("content-type", "application/json")],
    );
    let mut good = good;
    good.path_params = vec![("id".into(), "7".into()), ("slug".into(), "a%20b".into())];
    assert_eq!(
        run(&v, &good, Some(r#"{"name": "pen", "price": 1.5}"#)),
        None
    );

    let mut bad = req(
        "POST",
        "/items/x?limit=1000&dry=maybe&other=1",
        &[("content-type", "application/json; charset=utf-8")],
    );
    bad.path_params = vec![("id".into(), "x".into()), ("slug".into(), "a%2Fb".into())];
    let a = run(&v, &bad, Some(r#"{"price": -1}"#));
    assert_eq!(a.as_ref().unwrap().0, 400);
    assert_eq!(
        pointers(&a),
        [
            "query:/dry",
            "query:/limit",
            "query:/other",
            "header:/x-api-version",
            "path:/id",
            "path:/slug",
            "body:/name",
            "body:/price",
        ]
    );
    let (_, body) = a.unwrap();
    assert_eq!(body["message"], "the request is not valid");
    assert_eq!(body["errors"][1]["expected"], "<= 100");
    assert_eq!(body["errors"][7]["expected"], ">= 0");

    // A body that is not JSON, or none.
    let r = req("POST", "/items/7", &[("x-api-version", "1")]);
    let a = run(&v, &r, Some("{"));
    assert_eq!(pointers(&a), ["body:"]);
    assert!(a.unwrap().1["errors"][0]["message"]
        .as_str()
        .unwrap()
        .starts_with("the body is not JSON"));
    let a = run(&v, &r, None);
    assert_eq!(
        a.as_ref().unwrap().1["errors"][0]["message"],
        "the request has no body"
    );
    assert_eq!(
        run(&v, &r, Some("")).unwrap().1["errors"][0]["expected"],
        "a body (required)"
    );
    // Not JSON: 415, before the body is read.
    let r = req(
        "POST",
        "/items/7",
        &[("x-api-version", "1"), ("content-type", "text/plain")],
    );
    let a = run(&v, &r, Some("{}"));
    assert_eq!(a.as_ref().unwrap().0, 415);
    assert_eq!(pointers(&a), ["header:/content-type"]);
}

#[test]
fn rejected_code_and_msg() {
    let v = validator(
        json!({"query_schema": {"required": ["q"]}, "rejected_code": 422, "rejected_msg": "bad search"}),
    );
    assert!(!v.reads_bodies());
    let (status, body) = run(&v, &req("GET", "/search", &[]), None).unwrap();
    assert_eq!(status, 422);
    assert_eq!(body["message"], "bad search");
    assert_eq!(
        body["errors"][0],
        json!({"in": "query", "pointer": "/q", "expected": "a value (required)", "message": "missing required property `q`"})
    );
}

fn petstore(version: &str) -> Value {
    json!({
        "openapi": version,
        "info": {"title": "pets", "version": "1"},
        "servers": [{"url": "https://api.example.com/v1"}],
        "paths": {
            "/pets": {
                "get": {"parameters": [
                    {"name": "limit", "in": "query", "schema": {"type": "integer", "format": "int32", "minimum": 1}},
                    {"name": "tags", "in": "query", "style": "form", "explode": false, "schema": {"type": "array", "items": {"type": "string"}, "maxItems": 2}},
                    {"$ref": "#/components/parameters/Trace"}
                ]},
                "post": {"requestBody": {"$ref": "#/components/requestBodies/Pet"}}
            },
            "/pets/{petId}": {
                "parameters": [{"name": "petId", "in": "path", "required": true, "schema": {"type": "integer", "minimum": 1}}],
                "get": {},
                "patch": {"requestBody": {"content": {
                    "application/merge-patch+json": {"schema": {"$ref": "#/components/schemas/Pet"}},
                    "text/*": {}
                }}}
            },
            "/pets/mine": {"get": {}}
        },
        "components": {
            "parameters": {"Trace": {"name": "X-Trace", "in": "header", "required": true, "schema": {"type": "string", "pattern": "^[0-9a-f]+$"}}},
            "requestBodies": {"Pet": {"required": true, "content": {"application/json": {"schema": {"$ref": "#/components/schemas/NewPet"}}}}},
            "schemas": {
                "Pet": {"type": "object", "properties": {
                    "name": {"type": "string"},
                    "tag": {"type": "string", "nullable": true},
                    "age": {"type": "integer", "minimum": 0, "exclusiveMinimum": true}}},
                "NewPet": {"allOf": [{"$ref": "#/components/schemas/Pet"}, {"required": ["name"]}]}
            }
        }
    })
}

#[test]
fn openapi_3_0_operations() {
    let v = validator(json!({"openapi": petstore("3.0.3")}));
    assert!(v.reads_bodies());
    let json = [("content-type", "application/json")];
    // Parameters: query (form, exploded and not), header by $ref, path.
    assert_eq!(
        run(
            &v,
            &req("GET", "/v1/pets?limit=5&tags=a,b", &[("x-trace", "ab12")]),
            None
        ),
        None
    );
    let a = run(&v, &req("GET", "/v1/pets?limit=0&tags=a,b,c", &[]), None);
    assert_eq!(
        pointers(&a),
        ["query:/limit", "query:/tags", "header:/x-trace"]
    );
    let a = run(
        &v,
        &req("GET", "/v1/pets?limit=99999999999", &[("X-Trace", "zz")]),
        None,
    );
    assert_eq!(pointers(&a), ["query:/limit", "header:/x-trace"]);
    assert_eq!(a.unwrap().1["errors"][0]["expected"], "<= 2147483647");
    assert_eq!(run(&v, &req("GET", "/v1/pets/12", &[]), None), None);
    let a = run(&v, &req("GET", "/v1/pets/0", &[]), None);
    assert_eq!(pointers(&a), ["path:/petId"]);
    // A literal path wins over the template.
    assert_eq!(run(&v, &req("GET", "/v1/pets/mine", &[]), None), None);

    // The body: $ref'd request body and schemas, nullable, boolean exclusiveMinimum.
    let post = req("POST", "/v1/pets", &json);
    assert_eq!(
        run(&v, &post, Some(r#"{"name": "rex", "tag": null, "age": 1}"#)),
        None
    );
    let a = run(&v, &post, Some(r#"{"tag": 5, "age": 0}"#));
    assert_eq!(pointers(&a), ["body:/age", "body:/name", "body:/tag"]);
    assert_eq!(a.as_ref().unwrap().1["errors"][0]["expected"], "> 0");
    assert_eq!(a.unwrap().1["errors"][2]["expected"], "null or string");
    // Required body missing; no content type is taken for JSON.
    let a = run(&v, &req("POST", "/v1/pets", &[]), None);
    assert_eq!(pointers(&a), ["body:"]);
    // A content type the operation does not list: 415.
    let a = run(
        &v,
        &req("POST", "/v1/pets", &[("content-type", "application/xml")]),
        Some("<pet/>"),
    );
    assert_eq!(a.as_ref().unwrap().0, 415);
    // A +json type and a range; a text body is not read.
    let patch = req(
        "PATCH",
        "/v1/pets/3",
        &[("content-type", "application/merge-patch+json")],
    );
    assert_eq!(
        pointers(&run(&v, &patch, Some(r#"{"age": -1}"#))),
        ["body:/age"]
    );
    assert_eq!(
        run(
            &v,
            &req("PATCH", "/v1/pets/3", &[("content-type", "text/plain")]),
            Some("x")
        ),
        None
    );
    // An optional body may be absent.
    assert_eq!(run(&v, &req("PATCH", "/v1/pets/3", &[]), None), None);

    // No operation: 404 for the path, 405 (with Allow) for the method; outside the base path.
    let a = run(&v, &req("GET", "/v1/owners", &[]), None).unwrap();
    assert_eq!(a.0, 404);
    assert_eq!(run(&v, &req("GET", "/pets", &[]), None).unwrap().0, 404);
    let head = Head {
        method: "DELETE",
        path: "/v1/pets/3",
        query: None,
        headers: &[],
        path_params: &[],
    };
    let Step::Answer(a) = v.head(&head, || Announced::No) else {
        panic!()
    };
    assert_eq!(a.status, 405);
    assert!(
        a.headers.contains(&("allow".into(), "GET, PATCH".into())),
        "{:?}",
        a.headers
    );
    // HEAD is checked as GET.
    assert_eq!(
        run(&v, &req("HEAD", "/v1/pets/0", &[]), None).unwrap().0,
        400
    );
}

#[test]
fn openapi_3_1_is_2020_12() {
    let mut doc = petstore("3.1.0");
    // 3.1 has no `nullable`: null is a type, and a boolean exclusiveMinimum is not a schema.
    doc["components"]["schemas"]["Pet"]["properties"]["tag"] = json!({"type": ["string", "null"]});
    doc["components"]["schemas"]["Pet"]["properties"]["age"] =
        json!({"type": "integer", "exclusiveMinimum": 0});
    doc["components"]["schemas"]["Pet"]["properties"]["dims"] = json!({"type": "array", "prefixItems": [{"type": "number"}, {"type": "number"}], "items": false});
    let v = validator(json!({"openapi": doc}));
    let post = req("POST", "/v1/pets", &[("content-type", "application/json")]);
    assert_eq!(
        run(
            &v,
            &post,
            Some(r#"{"name": "rex", "tag": null, "age": 1, "dims": [1, 2]}"#)
        ),
        None
    );
    let a = run(
        &v,
        &post,
        Some(r#"{"name": "rex", "age": 0, "dims": [1, "2", 3]}"#),
    );
    assert_eq!(pointers(&a), ["body:/age", "body:/dims/1", "body:/dims/2"]);

    let mut doc = petstore("3.1.0");
    doc["components"]["schemas"]["Pet"]["properties"]["age"] =
        json!({"type": "integer", "minimum": 0, "exclusiveMinimum": true});
    let e = parse(&json!({"openapi": doc}).to_string()).err().unwrap();
    assert!(
        e.starts_with(
            "openapi.components.schemas.Pet.properties.age.exclusiveMinimum: not a valid schema"
        ),
        "{e}"
    );
}

#[test]
fn unknown_operations_may_pass_and_base_path_overrides_servers() {
    let v = validator(
        json!({"openapi": petstore("3.0.0"), "unknown_operation": "allow", "base_path": "/"}),
    );
    assert_eq!(run(&v, &req("GET", "/v1/pets/0", &[]), None), None);
    assert_eq!(run(&v, &req("DELETE", "/pets/3", &[]), None), None);
    assert_eq!(
        pointers(&run(&v, &req("GET", "/pets/0", &[]), None)),
        ["path:/petId"]
    );
}

#[test]
fn config_errors_name_the_field() {
    let mut bad_param = petstore("3.0.3");
    bad_param["paths"]["/pets/{petId}"]["parameters"][0]["schema"]["minimum"] = json!("1");
    let mut bad_ref = petstore("3.0.3");
    bad_ref["paths"]["/pets"]["post"]["requestBody"] =
        json!({"$ref": "#/components/requestBodies/Nope"});
    let mut bad_style = petstore("3.0.3");
    bad_style["paths"]["/pets/{petId}"]["parameters"][0]["style"] = json!("matrix");
    let mut unknown_path_param = petstore("3.0.3");
    unknown_path_param["paths"]["/pets/{petId}"]["parameters"][0]["name"] = json!("id");
    for (config, field) in [
        (json!({}), "no config"),
        (
            json!({"body_schema": {"type": "objet"}}),
            "body_schema.type: not a valid schema",
        ),
        (
            json!({"body_schema": {"properties": {"a": {"pattern": "(x"}}}}),
            "body_schema.properties.a.pattern: ",
        ),
        (
            json!({"body_schema": {"$ref": "https://example.com/s.json"}}),
            "body_schema: ",
        ),
        (
            json!({"body_schema": 5}),
            "body_schema: expected a JSON Schema",
        ),
        (
            json!({"query_schema": {"properties": {"a": {"minimum": "x"}}}}),
            "query_schema.properties.a.minimum: ",
        ),
        (json!({"body_schema": {}, "draft": "8"}), "draft: "),
        (
            json!({"body_schema": {}, "rejected_code": 200}),
            "rejected_code: ",
        ),
        (
            json!({"body_schema": {}, "rejected_msg": 1}),
            "rejected_msg: ",
        ),
        (
            json!({"body_schema": {}, "unknown_operation": "allow"}),
            "unknown_operation: only with openapi",
        ),
        (
            json!({"body_schema": {}, "schema": {}}),
            "schema: unknown field",
        ),
        (
            json!({"openapi": petstore("3.0.3"), "body_schema": {}}),
            "body_schema: cannot be set with openapi",
        ),
        (json!({"openapi": petstore("2.0")}), "openapi.openapi: "),
        (json!({"openapi": {"openapi": "3.0.0"}}), "openapi.paths: "),
        (
            json!({"openapi": petstore("3.0.3"), "unknown_operation": "pass"}),
            "unknown_operation: ",
        ),
        (
            json!({"openapi": petstore("3.0.3"), "base_path": "v1"}),
            "base_path: ",
        ),
        (
            json!({"openapi": bad_param}),
            "openapi.paths./pets/{petId}.parameters[0].schema.minimum: not a valid schema",
        ),
        (
            json!({"openapi": bad_ref}),
            "openapi.paths./pets.post.requestBody.$ref: ",
        ),
        (
            json!({"openapi": bad_style}),
            "openapi.paths./pets/{petId}.parameters[0].style: ",
        ),
        (
            json!({"openapi": unknown_path_param}),
            "openapi.paths./pets/{petId}.parameters[0].name: ",
        ),
    ] {
        let e = parse(&config.to_string())
            .err()
            .unwrap_or_else(|| panic!("accepted: {config}"));
        assert!(e.starts_with(field), "{config}: {e}");
    }
}

#[test]
fn a_body_is_announced_by_length_or_encoding_and_may_come_over_http2() {
    let h = |pairs: &[(&str, &str)]| -> Vec<(String, String)> {
        pairs
            .iter()
            .map(|(n, v)| (n.to_string(), v.to_string()))
            .collect()
    };
    let never = || -> bool { panic!("asked for the protocol") };
    assert_eq!(
        announced(&h(&[("content-length", "2")]), never),
        Announced::Yes
    );
    assert_eq!(
        announced(&h(&[("content-length", "0")]), never),
        Announced::No
    );
    assert_eq!(
        announced(&h(&[("transfer-encoding", "chunked")]), never),
        Announced::Yes
    );
    assert_eq!(announced(&h(&[]), || false), Announced::No);
    assert_eq!(announced(&h(&[]), || true), Announced::Maybe);
}

#[test]
fn a_body_that_may_come_is_waited_for_and_a_route_without_body_rules_never_asks() {
    let v = validator(json!({"body_schema": {"type": "object"}}));
    let r = req("POST", "/x", &[]);
    let head = Head {
        method: r.method,
        path: &r.path,
        query: None,
        headers: &r.headers,
        path_params: &[],
    };
    // HTTP/2 without content-length: the body is checked if it comes.
    let Step::Body(p) = v.head(&head, || Announced::Maybe) else {
        panic!("not waiting for the body")
    };
    assert!(matches!(v.body(p, b"[]"), Step::Answer(a) if a.status == 400));
    let v = validator(json!({"query_schema": {"type": "object"}}));
    assert!(matches!(
        v.head(&head, || panic!("asked whether a body comes")),
        Step::Pass
    ));
}

#[test]
fn form_bodies_are_checked_like_query_parameters() {
    let schema = json!({"type": "object", "required": ["name"], "properties": {
        "name": {"type": "string", "minLength": 2},
        "age": {"type": "integer", "minimum": 18},
        "tags": {"type": "array", "items": {"type": "string"}, "maxItems": 2}}});
    let v = validator(json!({ "body_schema": schema }));
    let form = [("content-type", "application/x-www-form-urlencoded")];
    let post = req("POST", "/people", &form);
    assert_eq!(run(&v, &post, Some("name=Al+B&age=30&tags=a&tags=b")), None);
    let a = run(&v, &post, Some("name=A&age=12&tags=a&tags=b&tags=c"));
    assert_eq!(pointers(&a), ["body:/age", "body:/name", "body:/tags"]);
    assert_eq!(a.unwrap().1["errors"][0]["expected"], ">= 18");
    // Neither JSON nor a form: 415, naming both.
    let a = run(
        &v,
        &req("POST", "/people", &[("content-type", "text/plain")]),
        Some("x"),
    );
    let (status, body) = a.unwrap();
    assert_eq!(status, 415);
    assert_eq!(
        body["errors"][0]["expected"],
        "application/json or application/x-www-form-urlencoded"
    );

    // OpenAPI: a form media type with a schema ($ref'd) is checked; without one it is not read.
    let v = validator(json!({"openapi": {
        "openapi": "3.1.0", "info": {"title": "t", "version": "1"},
        "paths": {"/people": {"post": {"requestBody": {"content": {
            "application/x-www-form-urlencoded": {"schema": {"$ref": "#/components/schemas/P"}},
            "multipart/form-data": {}}}}}},
        "components": {"schemas": {"P": schema}}}}));
    assert_eq!(run(&v, &post, Some("name=Al&age=18")), None);
    assert_eq!(
        pointers(&run(&v, &post, Some("name=Al&age=x"))),
        ["body:/age"]
    );
    let multipart = req(
        "POST",
        "/people",
        &[("content-type", "multipart/form-data; boundary=b")],
    );
    assert_eq!(run(&v, &multipart, Some("--b--")), None);
}

#[test]
fn an_optional_body_of_another_type_may_be_left_out_over_http2() {
    let v = validator(json!({"openapi": {
        "openapi": "3.0.3", "info": {"title": "t", "version": "1"},
        "paths": {"/notes": {"put": {"requestBody": {"content": {"text/plain": {}}}}}}}}));
    let head = Head {
        method: "PUT",
        path: "/notes",
        query: None,
        headers: &[],
        path_params: &[],
    };
    assert!(matches!(v.head(&head, || Announced::Maybe), Step::Pass));
    assert!(matches!(v.head(&head, || Announced::No), Step::Pass));
    // A body that comes without a content type is taken for JSON, which the operation does not list.
    assert!(matches!(v.head(&head, || Announced::Yes), Step::Answer(a) if a.status == 415));
}
