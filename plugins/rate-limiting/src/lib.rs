//! rate-limiting: limits per second, minute, hour and day for a route (Kong's `rate-limiting`,
//! APISIX's `limit-count` and `limit-req`), counted with a fixed window, a sliding window or a token
//! bucket, keyed by consumer, client IP, header, path or route, in the plugin's kv namespace (local,
//! or Redis shared by several gateway processes). A request over a limit gets a 429 with
//! `Retry-After`; every answer gets the rate-limit headers. See README.md.
//!
//! ```yaml
//! filters:
//!   - plugin: rate-limiting
//!     config:
//!       limits: [{per: minute, limit: 100}, {per: hour, limit: 1000, algorithm: sliding_window}]
//!       by: [consumer, "header:x-tenant"]
//! ```

mod answer;
mod config;
mod filter;
mod key;
mod limiter;
mod policy;
