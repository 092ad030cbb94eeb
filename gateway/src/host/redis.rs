//! A key-value namespace in Redis, with the local store's rules.
//!
//! Layout: a key `K` of namespace `NS` is the hash `{prefix}{NS}:d:K` with fields `v` (the value) and
//! `n` (its version); the namespace's version counter is `{prefix}{NS}:version`. The braces make both
//! hash to one Redis Cluster slot. Every write is one Lua script (atomic on the server): it takes the
//! next version from the counter, writes value and version, and sets or keeps the expiry, so
//! increments and compare-and-swap are atomic across every gateway process using the server. Redis's
//! own expiry removes expired keys.
//!
//! Failure never hangs a request: each call is bounded by `command_timeout` (waiting for a
//! reconnection included) and fails as [`StoreError::Unavailable`]; the connection manager reconnects
//! in the background with exponential backoff.

use super::kv::StoreError;
use crate::config::stores::RedisSettings;
use crate::metrics::{Exposition, Histogram};
use redis::aio::{ConnectionManager, ConnectionManagerConfig};
use std::path::Path;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::LazyLock;
use std::time::{Duration, Instant};

/// Writes `ARGV[1]` with the next version; `ARGV[2]` is a TTL in ms or empty. KEYS: version counter,
/// data key.
const WRITE: &str = r"
local n = redis.call('INCR', KEYS[1])
local ver = (n - 1) % 4294967295 + 1
redis.call('HSET', KEYS[2], 'v', ARGV[1], 'n', ver)
if ARGV[2] ~= '' then redis.call('PEXPIRE', KEYS[2], ARGV[2]) else redis.call('PERSIST', KEYS[2]) end
return ver
";

/// [`WRITE`] as a script.
static SET: LazyLock<redis::Script> = LazyLock::new(|| redis::Script::new(WRITE));

/// [`WRITE`], only if the stored version is `ARGV[3]`; -1 otherwise.
static CAS: LazyLock<redis::Script> = LazyLock::new(|| {
    redis::Script::new(&format!(
        "local cur = redis.call('HGET', KEYS[2], 'n')\nif not cur or cur ~= ARGV[3] then return -1 end{WRITE}"
    ))
});

/// Adds `ARGV[1]` to the value (64-bit, Redis's HINCRBY: refuses a non-integer and an overflow);
/// a key this creates expires after `ARGV[2]` ms if given, an existing expiry is kept. Returns the
/// sum as text (a Lua number would lose precision past 2^53).
static INCR: LazyLock<redis::Script> = LazyLock::new(|| {
    redis::Script::new(
        r"
local existed = redis.call('EXISTS', KEYS[2])
redis.call('HINCRBY', KEYS[2], 'v', ARGV[1])
local n = redis.call('INCR', KEYS[1])
redis.call('HSET', KEYS[2], 'n', (n - 1) % 4294967295 + 1)
if existed == 0 and ARGV[2] ~= '' then redis.call('PEXPIRE', KEYS[2], ARGV[2]) end
return redis.call('HGET', KEYS[2], 'v')
",
    )
});

/// The fields of a namespace's settings an error of [`RedisStore::new`] can be about.
const URL: &str = ".redis.url";
const CA: &str = ".redis.ca";

/// Operations, for the figures.
#[derive(Clone, Copy)]
enum Op {
    Get,
    Set,
    Delete,
    Increment,
    Cas,
}

const OPS: [(Op, &str); 5] = [
    (Op::Get, "get"),
    (Op::Set, "set"),
    (Op::Delete, "delete"),
    (Op::Increment, "increment"),
    (Op::Cas, "compare_and_swap"),
];

#[derive(Default)]
struct OpStats {
    ok: AtomicU64,
    /// Answered with an error (refused command, lost connection).
    error: AtomicU64,
    /// No answer within `command_timeout`.
    timeout: AtomicU64,
    latency: Histogram,
}

/// One namespace's Redis client.
pub struct RedisStore {
    namespace: String,
    settings: RedisSettings,
    password: Option<zeroize::Zeroizing<String>>,
    conns: Vec<ConnectionManager>,
    next: AtomicUsize,
    version_key: String,
    data_prefix: String,
    stats: [OpStats; 5],
    /// Until when calls fail at once (milliseconds since `epoch`; 0: closed): set by a call that
    /// timed out or lost its connection, so that while Redis is down or frozen every call does not
    /// wait its whole timeout (a Proxy-Wasm VM, which runs one call at a time, would queue every
    /// request behind them). After it, calls go to Redis again, and the first failure opens it again.
    open_until: AtomicU64,
    epoch: Instant,
}

/// How long calls fail at once after a call timed out or lost its connection: the command timeout,
/// at least 250 ms and at most 2 s.
fn breaker_window(timeout: Duration) -> Duration {
    timeout.clamp(Duration::from_millis(250), Duration::from_secs(2))
}

impl RedisStore {
    /// A client for `settings` (not connected yet: the first call connects). `base` resolves a
    /// relative `ca`. An error is the field it is about (`.redis.url`, `.redis.ca`) and what is wrong.
    pub fn new(
        namespace: &str,
        settings: &RedisSettings,
        password: Option<zeroize::Zeroizing<String>>,
        base: &Path,
    ) -> Result<RedisStore, (&'static str, String)> {
        use redis::IntoConnectionInfo;
        let mut info = settings.url.as_str().into_connection_info().map_err(|e| {
            let why = e.detail().unwrap_or("invalid");
            (URL, format!("cannot use the URL: {why}"))
        })?;
        let mut redis_info = info.redis_settings().clone();
        if let Some(u) = &settings.username {
            redis_info = redis_info.set_username(u);
        }
        if let Some(p) = &password {
            redis_info = redis_info.set_password(p.as_str());
        }
        if let Some(db) = settings.database {
            redis_info = redis_info.set_db(db);
        }
        info = info.set_redis_settings(redis_info);
        let client = match &settings.ca {
            Some(ca) => {
                let path = base.join(ca);
                let pem = std::fs::read(&path)
                    .map_err(|e| (CA, format!("cannot read the CA `{}`: {e}", path.display())))?;
                redis::Client::build_with_tls(
                    info,
                    redis::TlsCertificates {
                        client_tls: None,
                        root_cert: Some(pem),
                    },
                )
            }
            None => redis::Client::open(info),
        }
        .map_err(|e| (URL, format!("cannot use the URL: {e}")))?;
        let config = ConnectionManagerConfig::new()
            .set_connection_timeout(Some(settings.connect_timeout.0))
            .set_response_timeout(Some(settings.command_timeout.0))
            // Reconnects: 50 ms, doubling, at most 2 s apart; then the next call starts over.
            .set_min_delay(Duration::from_millis(50))
            .set_exponent_base(2.0)
            .set_max_delay(Duration::from_secs(2))
            .set_number_of_retries(6);
        let conns = (0..settings.pool_size)
            .map(|_| ConnectionManager::new_lazy_with_config(client.clone(), config.clone()))
            .collect::<Result<Vec<_>, _>>()
            .map_err(|e| (URL, format!("cannot use the settings: {e}")))?;
        let tag = format!("{}{{{namespace}}}", settings.key_prefix);
        Ok(RedisStore {
            namespace: namespace.to_owned(),
            settings: settings.clone(),
            password,
            conns,
            next: AtomicUsize::new(0),
            version_key: format!("{tag}:version"),
            data_prefix: format!("{tag}:d:"),
            stats: Default::default(),
            open_until: AtomicU64::new(0),
            epoch: Instant::now(),
        })
    }

    /// How long one call may take, reconnecting included (`command_timeout`).
    fn timeout(&self) -> Duration {
        self.settings.command_timeout.0
    }

    /// Whether this client was made from these settings and password.
    pub fn same(&self, settings: &RedisSettings, password: Option<&str>) -> bool {
        self.settings == *settings && self.password.as_deref().map(|s| s.as_str()) == password
    }

    fn conn(&self) -> ConnectionManager {
        let i = self.next.fetch_add(1, Ordering::Relaxed) % self.conns.len();
        self.conns[i].clone()
    }

    fn data_key(&self, key: &str) -> String {
        let mut k = String::with_capacity(self.data_prefix.len() + key.len());
        k.push_str(&self.data_prefix);
        k.push_str(key);
        k
    }

    /// Runs `fut` within the command timeout, counting the outcome; maps Redis errors with `map`.
    async fn run<T>(
        &self,
        op: Op,
        fut: impl std::future::Future<Output = redis::RedisResult<T>>,
        map: impl FnOnce(&redis::RedisError) -> Option<StoreError>,
    ) -> Result<T, StoreError> {
        let stats = &self.stats[op as usize];
        let start = Instant::now();
        let now_ms = start.duration_since(self.epoch).as_millis() as u64;
        let open_until = self.open_until.load(Ordering::Relaxed);
        if now_ms < open_until {
            stats.error.fetch_add(1, Ordering::Relaxed);
            return Err(StoreError::Unavailable(format!(
                "redis failed a call less than {:?} ago; retrying after that",
                breaker_window(self.timeout())
            )));
        }
        let out = tokio::time::timeout(self.timeout(), fut).await;
        stats.latency.observe(start.elapsed());
        match out {
            Ok(Ok(v)) => {
                stats.ok.fetch_add(1, Ordering::Relaxed);
                Ok(v)
            }
            Ok(Err(e)) => {
                if let Some(mapped) = map(&e) {
                    stats.ok.fetch_add(1, Ordering::Relaxed);
                    return Err(mapped);
                }
                let timed_out = e.is_timeout();
                if timed_out
                    || e.is_io_error()
                    || e.is_connection_dropped()
                    || e.is_connection_refusal()
                {
                    self.trip();
                }
                let counter = if timed_out {
                    &stats.timeout
                } else {
                    &stats.error
                };
                counter.fetch_add(1, Ordering::Relaxed);
                tracing::debug!(namespace = %self.namespace, error = %e, "redis call failed");
                Err(StoreError::Unavailable(if timed_out {
                    format!("redis did not answer within {:?}", self.timeout())
                } else {
                    format!("redis: {e}")
                }))
            }
            Err(_) => {
                self.trip();
                stats.timeout.fetch_add(1, Ordering::Relaxed);
                Err(StoreError::Unavailable(format!(
                    "redis did not answer within {:?}",
                    self.timeout()
                )))
            }
        }
    }

    /// Opens the breaker: calls fail at once for [`breaker_window`] from now.
    fn trip(&self) {
        let until = Instant::now() + breaker_window(self.timeout());
        let ms = until.duration_since(self.epoch).as_millis() as u64;
        self.open_until.fetch_max(ms, Ordering::Relaxed);
    }

    /// Connects and loads the scripts in the background (bounded by the connect and command
    /// timeouts), so that the first calls after a config that made this client do not pay for it.
    pub fn warm_up(self: &std::sync::Arc<Self>) {
        let Ok(handle) = tokio::runtime::Handle::try_current() else {
            return;
        };
        for c in &self.conns {
            let mut c = c.clone();
            let bound = self.settings.connect_timeout.0 + self.timeout();
            handle.spawn(async move {
                let load = async {
                    for script in [&*SET, &*CAS, &*INCR] {
                        script.prepare_invoke().load_async(&mut c).await?;
                    }
                    redis::RedisResult::Ok(())
                };
                let _ = tokio::time::timeout(bound, load).await;
            });
        }
    }

    /// The value and version at `key`.
    pub async fn get(&self, key: &str) -> Result<Option<(bytes::Bytes, u32)>, StoreError> {
        let mut c = self.conn();
        let k = self.data_key(key);
        let (v, n): (Option<Vec<u8>>, Option<u32>) = self
            .run(
                Op::Get,
                redis::cmd("HMGET")
                    .arg(&k)
                    .arg("v")
                    .arg("n")
                    .query_async(&mut c),
                |_| None,
            )
            .await?;
        Ok(match (v, n) {
            (Some(v), Some(n)) => Some((bytes::Bytes::from(v), n)),
            _ => None,
        })
    }

    /// Writes `value`.
    pub async fn set(
        &self,
        key: &str,
        value: &[u8],
        ttl: Option<Duration>,
    ) -> Result<u32, StoreError> {
        let mut c = self.conn();
        let mut inv = SET.key(&self.version_key);
        inv.key(self.data_key(key)).arg(value).arg(ttl_arg(ttl));
        self.run(Op::Set, inv.invoke_async(&mut c), |_| None).await
    }

    /// Removes `key`.
    pub async fn delete(&self, key: &str) -> Result<(), StoreError> {
        let mut c = self.conn();
        let k = self.data_key(key);
        let _: i64 = self
            .run(
                Op::Delete,
                redis::cmd("DEL").arg(&k).query_async(&mut c),
                |_| None,
            )
            .await?;
        Ok(())
    }

    /// Adds `delta`.
    pub async fn increment(
        &self,
        key: &str,
        delta: i64,
        ttl: Option<Duration>,
    ) -> Result<i64, StoreError> {
        let mut c = self.conn();
        let mut inv = INCR.key(&self.version_key);
        inv.key(self.data_key(key)).arg(delta).arg(ttl_arg(ttl));
        let sum: String = self
            .run(Op::Increment, inv.invoke_async(&mut c), |e| {
                let text = e.to_string();
                if text.contains("not an integer") {
                    Some(StoreError::NotANumber)
                } else if text.contains("overflow") {
                    Some(StoreError::Overflow)
                } else {
                    None
                }
            })
            .await?;
        sum.parse()
            .map_err(|_| StoreError::Unavailable(format!("redis answered `{sum}` to an increment")))
    }

    /// Writes `value` only over `version`.
    pub async fn compare_and_swap(
        &self,
        key: &str,
        version: u32,
        value: &[u8],
        ttl: Option<Duration>,
    ) -> Result<u32, StoreError> {
        let mut c = self.conn();
        let mut inv = CAS.key(&self.version_key);
        inv.key(self.data_key(key))
            .arg(value)
            .arg(ttl_arg(ttl))
            .arg(version);
        let v: i64 = self
            .run(Op::Cas, inv.invoke_async(&mut c), |_| None)
            .await?;
        u32::try_from(v).map_err(|_| StoreError::VersionMismatch)
    }
}

/// The longest TTL written as one; a longer one is no expiry, as in the local store (where a TTL the
/// clock cannot add is none). Redis refuses a PEXPIRE whose deadline overflows. 100 years.
const MAX_TTL_MS: u128 = 100 * 365 * 24 * 3600 * 1000;

/// A TTL as the scripts take it: milliseconds (at least 1), or empty for none.
fn ttl_arg(ttl: Option<Duration>) -> String {
    match ttl.map(|t| t.as_millis()) {
        Some(ms) if ms <= MAX_TTL_MS => ms.max(1).to_string(),
        _ => String::new(),
    }
}

/// `gateway_kv_redis_commands_total{namespace, op, outcome}` and
/// `gateway_kv_redis_command_duration_seconds{namespace, op}`.
pub(super) fn expose(stores: &[&RedisStore], e: &mut Exposition) {
    let f = e.counter(
        "gateway_kv_redis_commands",
        "Key-value calls to Redis by namespace, operation and outcome (ok, error, timeout).",
    );
    for s in stores {
        for (op, name) in OPS {
            let st = &s.stats[op as usize];
            for (outcome, n) in [
                ("ok", &st.ok),
                ("error", &st.error),
                ("timeout", &st.timeout),
            ] {
                f.sample(
                    &[
                        ("namespace", &s.namespace),
                        ("op", name),
                        ("outcome", outcome),
                    ],
                    n.load(Ordering::Relaxed),
                );
            }
        }
    }
    let f = e.histogram(
        "gateway_kv_redis_command_duration_seconds",
        "Time of key-value calls to Redis, by namespace and operation (timeouts included).",
    );
    for s in stores {
        for (op, name) in OPS {
            f.sample(
                &[("namespace", &s.namespace), ("op", name)],
                s.stats[op as usize].latency.snapshot(),
            );
        }
    }
}
