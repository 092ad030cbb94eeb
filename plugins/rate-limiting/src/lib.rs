//! rate-limiting: limits per second, minute, hour and day for a route (Kong's `rate-limiting`,
//! APISIX's `limit-count` and `limit-req`), counted with a fixed window, a sliding window or a token
//! bucket, keyed by consumer, client IP, header, path or route, in the plugin's kv namespace (local,
//! or Redis shared by several gateway processes). See README.md.

pub mod answer;
pub mod config;
pub mod key;
pub mod limiter;
pub mod policy;
