//! proxy-cache: responses kept in the gateway's memory cache (WIT `cache`: bounded in bytes, least
//! recently used out, shared by every plugin) and answered from it (nginx `proxy_cache`, Kong and
//! APISIX `proxy-cache`). Keyed by method, host, path, query and the configured request headers, with
//! a variant per value of the headers the response's `Vary` names; fresh for the response's
//! `s-maxage`, `max-age` or `Expires`, else the config's `ttl`. Concurrent misses of a key make one upstream
//! request; `X-Cache-Status` says what happened. See README.md.
//!
//! ```yaml
//! filters:
//!   - plugin: proxy-cache
//!     config: {ttl: 60s, cache_key: {headers: [accept-language]}, stale_if_error: 5m}
//! ```

mod config;
mod policy;

use config::Config;
use gateway_plugin_sdk::cache::{self, CachedResponse, Entry, Key, Lookup};
use gateway_plugin_sdk::{
    clock, consumers, log, metrics, Action, BodyMode, Error, Filter, Options, Request, Response,
};
use policy::Lifetime;

/// The header that says what the cache did.
const STATUS_HEADER: &str = "x-cache-status";

/// A response being collected to be stored.
struct Pending {
    status: u16,
    headers: Vec<(String, String)>,
    life: Lifetime,
    body: Vec<u8>,
    /// The gateway's largest entry: a longer body is not collected further.
    max: u64,
}

/// What the cache did with the current request.
#[derive(Default)]
enum State {
    /// Nothing (no request yet, or its answer is complete).
    #[default]
    Idle,
    /// The request is not cached (method, `Cache-Control`, `Authorization`).
    Bypass,
    /// Answered from the cache: the response phase sees our own answer.
    Hit,
    /// Went upstream and fills the key: the response is stored if it may be.
    Fill {
        key: Key,
        label: &'static str,
        stale: Option<Entry>,
        pending: Option<Pending>,
    },
    /// Went upstream without filling (another request's fill stored nothing, or a `HEAD`).
    Pass {
        label: &'static str,
        stale: Option<Entry>,
    },
}

#[derive(Default)]
struct ProxyCache {
    config: Config,
    state: State,
}

/// The local answer for `entry`, with `X-Cache-Status: label` and its `Age` in seconds.
fn answer(entry: Entry, label: &str) -> Action {
    let mut headers = entry.response.headers;
    headers.push((STATUS_HEADER.into(), label.into()));
    headers.push(("age".into(), (entry.age_ms / 1000).to_string()));
    Action::Respond {
        status: entry.response.status,
        headers,
        body: entry.response.body,
    }
}

fn count(name: &str) {
    let _ = metrics::counter_add(name, 1);
}

impl ProxyCache {
    /// After an upstream failure, the expired entry kept for `stale-if-error`, if there is one.
    fn stale_answer(&mut self, status: u16) -> Option<Action> {
        if status < 500 {
            return None;
        }
        let entry = match &mut self.state {
            State::Fill { key, stale, .. } => {
                let e = stale.take()?;
                cache::release(key);
                e
            }
            State::Pass { stale, .. } => stale.take()?,
            _ => return None,
        };
        self.state = State::Idle;
        count("cache_stale_served_total");
        Some(answer(entry, "STALE"))
    }

    /// Decides whether the response of a fill is stored: now for a response without a body, after
    /// its body otherwise; the fill is released when it is not.
    fn start_fill(&mut self, resp: &Response) {
        let State::Fill { key, pending, .. } = &mut self.state else {
            return;
        };
        let status = resp.status();
        let headers = resp.headers();
        let now_secs = clock::now_ms() / 1000;
        let life = match policy::storable(&self.config, status, &headers, now_secs) {
            Ok(l) => l,
            Err(why) => {
                if log::debug_enabled() {
                    log::debug(&format!("not stored ({why}): {} {}", key.host, key.path));
                }
                cache::release(key);
                return;
            }
        };
        let declared: Option<u64> = policy::values(&headers, "content-length")
            .next()
            .and_then(|v| v.trim().parse().ok());
        let max = cache::max_entry_size();
        if declared.is_some_and(|n| n > max) {
            cache::release(key);
            return;
        }
        let p = Pending {
            status,
            headers: policy::kept_headers(headers),
            life,
            body: Vec::new(),
            max,
        };
        // No body phase comes for these: store them now.
        if declared == Some(0) || status == 204 || status == 304 {
            let key = key.clone();
            self.store(&key, p);
        } else {
            *pending = Some(p);
        }
    }

    fn store(&mut self, key: &Key, p: Pending) {
        let response = CachedResponse {
            status: p.status,
            headers: p.headers,
            body: p.body,
        };
        if let Err(e) = cache::put(key, &response, p.life.ttl_ms, p.life.stale_ms) {
            if log::debug_enabled() {
                log::debug(&format!("not stored: {e:?}"));
            }
        }
        self.state = State::Idle;
    }
}

gateway_plugin_sdk::export_filter! {
    impl Filter for ProxyCache {
        fn init(&mut self, config: &str) -> Result<(), String> {
            self.config = Config::parse(config)?;
            Ok(())
        }

        fn options(&self) -> Options {
            // Chunks, not `whole`: the response streams to the client as it comes (a body over the
            // route's max_body_size is not an error, only not stored); the plugin keeps a copy up to the
            // gateway's max_entry_size.
            Options {
                response_body: BodyMode::Chunks,
                ..Options::default()
            }
        }

        fn on_request(&mut self, req: &Request) -> Action {
            self.state = State::Idle;
            let method = req.method();
            let headers = req.headers();
            if policy::bypass(&self.config, &method, &headers).is_some() {
                count("cache_bypasses_total");
                self.state = State::Bypass;
                return Action::Continue;
            }
            let key = Key {
                host: policy::values(&headers, "host")
                    .next()
                    .unwrap_or_default()
                    .to_ascii_lowercase(),
                path: req.path(),
                extra: policy::key_extra(
                    &method,
                    req.query().as_deref(),
                    self.config
                        .key_consumer
                        .then(|| consumers::current().map(|c| c.name).unwrap_or_default())
                        .as_deref(),
                    &self.config.key_headers,
                    &headers,
                ),
            };
            let found = match cache::lookup(&key, self.config.lock_timeout_ms as u32) {
                Ok(f) => f,
                Err(e) => {
                    // A key over the gateway's length limit comes from what the client sent (a long
                    // path, query or key header): not worth a warning per request.
                    let m = format!("cache lookup failed, the request bypasses the cache: {e:?}");
                    match e {
                        Error::Invalid(_) => log::debug(&m),
                        _ => log::warn(&m),
                    }
                    count("cache_bypasses_total");
                    self.state = State::Bypass;
                    return Action::Continue;
                }
            };
            let label = match found {
                Lookup::Miss => "MISS",
                _ => "EXPIRED",
            };
            self.state = match found {
                Lookup::Hit(entry) => {
                    self.state = State::Hit;
                    return answer(entry, "HIT");
                }
                Lookup::Pass(stale) => State::Pass {
                    label: "MISS",
                    stale,
                },
                // A HEAD is answered from a GET's entry but does not fill it (its response has no
                // body to store).
                f if method == "HEAD" => {
                    cache::release(&key);
                    State::Pass {
                        label,
                        stale: stale_of(f),
                    }
                }
                f => State::Fill {
                    key,
                    label,
                    stale: stale_of(f),
                    pending: None,
                },
            };
            Action::Continue
        }

        fn on_response(&mut self, resp: &Response) -> Action {
            if let Some(a) = self.stale_answer(resp.status()) {
                return a;
            }
            let label = match &self.state {
                State::Idle | State::Hit => return Action::Continue,
                State::Bypass => "BYPASS",
                State::Pass { label, .. } | State::Fill { label, .. } => label,
            };
            let _ = resp.set_header(STATUS_HEADER, label);
            match &self.state {
                State::Fill { .. } => self.start_fill(resp),
                _ => self.state = State::Idle,
            }
            Action::Continue
        }

        fn on_response_body(&mut self, resp: &Response, end_of_stream: bool) -> Action {
            let State::Fill {
                key,
                pending: Some(p),
                ..
            } = &mut self.state
            else {
                return Action::Continue;
            };
            if let Some(chunk) = resp.body() {
                p.body.extend_from_slice(&chunk);
            }
            if p.body.len() as u64 > p.max {
                cache::release(key);
                self.state = State::Idle;
            } else if end_of_stream {
                let State::Fill {
                    key,
                    pending: Some(p),
                    ..
                } = std::mem::take(&mut self.state)
                else {
                    return Action::Continue;
                };
                self.store(&key, p);
            }
            Action::Continue
        }
    }
}

fn stale_of(l: Lookup) -> Option<Entry> {
    match l {
        Lookup::Stale(e) => Some(e),
        _ => None,
    }
}
