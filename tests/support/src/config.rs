//! A config builder: the gateway YAML a test serves, written the way a user writes it, from typed
//! parts. Sections come out in the order plugins, upstreams, routes, then any raw YAML added; every
//! part takes extra YAML lines (`lines`) for the settings a test is about.
//!
//! ```
//! use gateway_test_support::{GatewayConfig, Route, Upstream};
//!
//! let yaml = GatewayConfig::new()
//!     .upstream(Upstream::new("up").endpoint("127.0.0.1:8080"))
//!     .route(Route::new("r").upstream("up").lines("    timeout: 1s\n"))
//!     .yaml();
//! assert_eq!(
//!     yaml,
//!     "upstreams:\n  - name: up\n    endpoints: [\"127.0.0.1:8080\"]\n\
//!      routes:\n  - name: r\n    upstream: up\n    timeout: 1s\n"
//! );
//! ```

use std::fmt::{self, Display};
use std::path::{Path, PathBuf};

/// A whole config (without listeners and admin, which the test gateways add).
#[derive(Clone, Debug, Default)]
pub struct GatewayConfig {
    plugins: Vec<Plugin>,
    upstreams: Vec<Upstream>,
    routes: Vec<Route>,
    raw: String,
}

impl GatewayConfig {
    /// An empty config.
    pub fn new() -> GatewayConfig {
        GatewayConfig::default()
    }

    /// Adds a `plugins:` entry.
    pub fn plugin(mut self, p: Plugin) -> GatewayConfig {
        self.plugins.push(p);
        self
    }

    /// Adds an `upstreams:` entry.
    pub fn upstream(mut self, u: Upstream) -> GatewayConfig {
        self.upstreams.push(u);
        self
    }

    /// Adds a `routes:` entry.
    pub fn route(mut self, r: Route) -> GatewayConfig {
        self.routes.push(r);
        self
    }

    /// Adds YAML text (other top-level sections, such as `server:` or `consumers:`) after the
    /// generated sections.
    pub fn raw(mut self, yaml: &str) -> GatewayConfig {
        self.raw.push_str(yaml);
        self
    }

    /// The YAML text.
    pub fn yaml(&self) -> String {
        self.to_string()
    }

    /// The config as the gateway parses it, with one listener `main` on 127.0.0.1:0 added.
    pub fn parse(&self) -> gateway::Config {
        let text = format!(
            "listeners:\n  - name: main\n    address: 127.0.0.1:0\n{}",
            self.yaml()
        );
        gateway::Config::parse(Path::new("test.yaml"), &text)
            .unwrap_or_else(|e| panic!("{e}\n{text}"))
    }
}

impl Display for GatewayConfig {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fn section<T: Display>(f: &mut fmt::Formatter<'_>, key: &str, items: &[T]) -> fmt::Result {
            if items.is_empty() {
                return Ok(());
            }
            writeln!(f, "{key}:")?;
            items.iter().try_for_each(|i| write!(f, "{i}"))
        }
        section(f, "plugins", &self.plugins)?;
        section(f, "upstreams", &self.upstreams)?;
        section(f, "routes", &self.routes)?;
        f.write_str(&self.raw)
    }
}

/// A `plugins:` entry: a name and a local path.
#[derive(Clone, Debug)]
pub struct Plugin {
    name: String,
    path: PathBuf,
    lines: String,
}

impl Plugin {
    /// The plugin `name` loaded from `path`.
    pub fn new(name: &str, path: impl AsRef<Path>) -> Plugin {
        Plugin {
            name: name.into(),
            path: path.as_ref().into(),
            lines: String::new(),
        }
    }

    /// Adds YAML lines to the entry (indented 4 spaces, each ending in a newline), such as
    /// `    instance_mode: reuse\n`.
    pub fn lines(mut self, yaml: &str) -> Plugin {
        self.lines.push_str(yaml);
        self
    }

    /// The entry as the gateway parses it (for tests that load plugins without a gateway).
    pub fn config(self) -> gateway::config::Plugin {
        GatewayConfig::new().plugin(self).parse().plugins.remove(0)
    }
}

impl Display for Plugin {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "  - name: {}\n    path: {}\n{}",
            self.name,
            self.path.display(),
            self.lines
        )
    }
}

/// An `upstreams:` entry: a name and its endpoints.
#[derive(Clone, Debug)]
pub struct Upstream {
    name: String,
    endpoints: Vec<String>,
    lines: String,
}

impl Upstream {
    /// The upstream `name`, without endpoints yet.
    pub fn new(name: &str) -> Upstream {
        Upstream {
            name: name.into(),
            endpoints: Vec::new(),
            lines: String::new(),
        }
    }

    /// Adds an endpoint (weight 1).
    pub fn endpoint(mut self, address: impl Display) -> Upstream {
        self.endpoints.push(format!("\"{address}\""));
        self
    }

    /// Adds an endpoint with a weight.
    pub fn weighted(mut self, address: impl Display, weight: u32) -> Upstream {
        self.endpoints
            .push(format!("{{address: \"{address}\", weight: {weight}}}"));
        self
    }

    /// Adds YAML lines to the entry (indented 4 spaces, each ending in a newline), such as
    /// `    balancer: least_request\n`.
    pub fn lines(mut self, yaml: &str) -> Upstream {
        self.lines.push_str(yaml);
        self
    }
}

impl Display for Upstream {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "  - name: {}\n    endpoints: [{}]\n{}",
            self.name,
            self.endpoints.join(", "),
            self.lines
        )
    }
}

/// A `routes:` entry: a name, what it matches, where it goes, and its filters.
#[derive(Clone, Debug)]
pub struct Route {
    name: String,
    prefix: Option<String>,
    strip_prefix: Option<String>,
    target: Option<String>,
    filters: Vec<String>,
    lines: String,
}

impl Route {
    /// The route `name`, matching every request, going nowhere yet.
    pub fn new(name: &str) -> Route {
        Route {
            name: name.into(),
            prefix: None,
            strip_prefix: None,
            target: None,
            filters: Vec::new(),
            lines: String::new(),
        }
    }

    /// Matches paths that start with `prefix`.
    pub fn prefix(mut self, prefix: &str) -> Route {
        self.prefix = Some(prefix.into());
        self
    }

    /// Strips `prefix` from the path before forwarding.
    pub fn strip_prefix(mut self, prefix: &str) -> Route {
        self.strip_prefix = Some(prefix.into());
        self
    }

    /// Forwards to the upstream `name`.
    pub fn upstream(mut self, name: &str) -> Route {
        self.target = Some(format!("upstream: {name}"));
        self
    }

    /// Answers every request itself with 200 and `body` (written inside double quotes).
    pub fn respond(mut self, body: &str) -> Route {
        self.target = Some(format!("direct_response: {{body: \"{body}\"}}"));
        self
    }

    /// Adds a filter: the plugin `plugin` with `config` (written inside double quotes).
    pub fn filter(self, plugin: &str, config: &str) -> Route {
        self.filter_with(plugin, config, "")
    }

    /// Adds a filter with more settings, written after the config inside the braces, such as
    /// `, failure: open`.
    pub fn filter_with(mut self, plugin: &str, config: &str, extra: &str) -> Route {
        self.filters
            .push(format!("{{plugin: {plugin}, config: \"{config}\"{extra}}}"));
        self
    }

    /// Adds YAML lines to the entry (indented 4 spaces, each ending in a newline), such as
    /// `    timeout: 1s\n`.
    pub fn lines(mut self, yaml: &str) -> Route {
        self.lines.push_str(yaml);
        self
    }
}

impl Display for Route {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        writeln!(f, "  - name: {}", self.name)?;
        if let Some(p) = &self.prefix {
            writeln!(f, "    match: {{path: {{prefix: {p}}}}}")?;
        }
        if let Some(p) = &self.strip_prefix {
            writeln!(f, "    rewrite: {{strip_prefix: {p}}}")?;
        }
        if let Some(t) = &self.target {
            writeln!(f, "    {t}")?;
        }
        if !self.filters.is_empty() {
            writeln!(f, "    filters: [{}]", self.filters.join(", "))?;
        }
        f.write_str(&self.lines)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn writes_the_yaml_a_user_writes() {
        let yaml = GatewayConfig::new()
            .plugin(Plugin::new("p", "/x/p.wasm").lines("    instance_mode: reuse\n"))
            .upstream(
                Upstream::new("up")
                    .endpoint("127.0.0.1:1")
                    .weighted("127.0.0.1:2", 3),
            )
            .route(
                Route::new("a")
                    .prefix("/a/")
                    .strip_prefix("/a")
                    .upstream("up")
                    .filter("p", "k=v")
                    .filter_with("p", "", ", failure: open"),
            )
            .route(Route::new("b").respond("hi").lines("    timeout: 1s\n"))
            .raw("server:\n  access_log: {enabled: false}\n")
            .yaml();
        assert_eq!(
            yaml,
            "plugins:\n  - name: p\n    path: /x/p.wasm\n    instance_mode: reuse\n\
             upstreams:\n  - name: up\n    endpoints: [\"127.0.0.1:1\", {address: \"127.0.0.1:2\", weight: 3}]\n\
             routes:\n  - name: a\n    match: {path: {prefix: /a/}}\n    rewrite: {strip_prefix: /a}\n    upstream: up\n    filters: [{plugin: p, config: \"k=v\"}, {plugin: p, config: \"\", failure: open}]\n\
             \x20 - name: b\n    direct_response: {body: \"hi\"}\n    timeout: 1s\n\
             server:\n  access_log: {enabled: false}\n"
        );
        let cfg = GatewayConfig::new()
            .upstream(Upstream::new("up").endpoint("127.0.0.1:1"))
            .route(Route::new("r").upstream("up"))
            .parse();
        assert_eq!(cfg.routes.len(), 1);
        assert_eq!(Plugin::new("p", "/x/p.wasm").config().name, "p");
    }
}
