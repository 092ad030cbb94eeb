//! The Grafana dashboard in `deploy/grafana/gateway.json` queries only metrics the gateway exposes:
//! every query is parsed as Prometheus parses it, and each metric it selects must be a family on a
//! running gateway's `/metrics`.

use crate::harness::*;
use promql_parser::parser::{self, Expr};
use promql_parser::util::{walk_expr, ExprVisitor};
use std::collections::BTreeSet;

/// Collects the metric names of an expression's selectors.
struct Names(BTreeSet<String>);

impl ExprVisitor for Names {
    type Error = String;

    fn pre_visit(&mut self, e: &Expr) -> Result<bool, String> {
        let vs = match e {
            Expr::VectorSelector(vs) => vs,
            Expr::MatrixSelector(m) => &m.vs,
            _ => return Ok(true),
        };
        let name = vs
            .name
            .clone()
            .ok_or_else(|| format!("a selector without a metric name: {e}"))?;
        self.0.insert(name);
        Ok(true)
    }
}

/// Every PromQL query of the dashboard: panel targets, and the selector of each `label_values`
/// variable. Grafana's own variables are replaced by what they stand for.
fn queries(dash: &serde_json::Value) -> Vec<String> {
    let grafana = |q: &str| q.replace("$__rate_interval", "5m");
    let mut out = Vec::new();
    for p in dash["panels"].as_array().expect("panels") {
        for t in p["targets"].as_array().into_iter().flatten() {
            out.push(grafana(t["expr"].as_str().expect("a target's expr")));
        }
    }
    for v in dash["templating"]["list"].as_array().expect("templating") {
        if v["type"] == "query" {
            let q = v["query"].as_str().expect("a variable's query");
            let inner = q
                .strip_prefix("label_values(")
                .and_then(|r| r.rsplit_once(','))
                .map(|(sel, _)| sel)
                .unwrap_or_else(|| panic!("a variable is not label_values(selector, label): {q}"));
            out.push(grafana(inner));
        }
    }
    out
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn grafana_dashboard_queries_only_metrics_the_gateway_exposes() {
    let path =
        std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../deploy/grafana/gateway.json");
    let dash: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(&path).unwrap()).unwrap();
    let mut names = Names(BTreeSet::new());
    let queries = queries(&dash);
    assert!(queries.len() >= 20, "{}", queries.len());
    for q in &queries {
        let e = parser::parse(q).unwrap_or_else(|err| panic!("{q}: {err}"));
        walk_expr(&mut names, &e).unwrap_or_else(|err| panic!("{q}: {err}"));
    }
    // A gateway with what makes every family appear: a route with a filter, an upstream, a Redis
    // namespace (unreachable: its figures are shown all the same).
    let up = MockUpstream::start("up").await;
    let redis = free_port();
    let gw = TestGateway::start(
        &GatewayConfig::new()
            .upstream(Upstream::new("up").endpoint(up.addr))
            .route(
                Route::new("r")
                    .upstream("up")
                    .lines("    filters: [{plugin: cors, config: {allow_origins: [\"*\"]}}]\n"),
            )
            .raw(&format!(
                "kv_namespaces:\n  shared: {{backend: redis, redis: {{url: \"redis://127.0.0.1:{redis}\"}}}}\n"
            ))
            .yaml(),
    )
    .await;
    let (s, _, _) = get(&gw.url("/x")).await;
    assert_eq!(s, 200);
    let m = gw.metrics().await;
    let families: BTreeSet<(&str, &str)> = m
        .lines()
        .filter_map(|l| l.strip_prefix("# TYPE "))
        .filter_map(|l| l.split_once(' '))
        .collect();
    let exposed = |name: &str| {
        families.iter().any(|(f, _)| *f == name)
            || ["_bucket", "_sum", "_count"].iter().any(|s| {
                name.strip_suffix(s)
                    .is_some_and(|base| families.contains(&(base, "histogram")))
            })
    };
    let missing: Vec<&String> = names.0.iter().filter(|n| !exposed(n)).collect();
    assert!(
        missing.is_empty(),
        "the dashboard queries metrics /metrics does not have: {missing:?}\n{m}"
    );
    assert!(names.0.len() >= 25, "{:?}", names.0);
    // Panels are laid out on Grafana's 24-column grid without overlapping.
    let mut cells = BTreeSet::new();
    for p in dash["panels"].as_array().unwrap() {
        let g = &p["gridPos"];
        let (x, y, w, h) = (
            g["x"].as_u64().unwrap(),
            g["y"].as_u64().unwrap(),
            g["w"].as_u64().unwrap(),
            g["h"].as_u64().unwrap(),
        );
        assert!(x + w <= 24, "{p}");
        for cx in x..x + w {
            for cy in y..y + h {
                assert!(
                    cells.insert((cx, cy)),
                    "panel {} overlaps another",
                    p["title"]
                );
            }
        }
    }
}
