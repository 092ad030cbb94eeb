//! End-to-end tests: the real gateway on ephemeral ports, mock upstreams, real sockets.

mod harness;

mod acl;
mod admin;
mod basic_auth;
mod builtin_plugins;
mod cli;
mod components;
mod errors;
mod ext_auth;
mod filters;
mod framing;
mod go_sdk;
mod grpc_callouts;
mod guide;
mod ip_restriction;
mod jwt_auth;
mod key_auth;
mod limits;
mod malformed;
mod mirror;
mod oauth2_introspection;
mod paths;
mod plugin_sources;
mod pool;
mod rate_limiting;
mod rate_limiting_cluster;
mod reload;
mod routing;
mod sdk_examples;
mod shutdown;
mod stalls;
mod streaming;
mod tls;
mod traffic_split;
mod upstreams;
