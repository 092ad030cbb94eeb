//! End-to-end tests: the real gateway on ephemeral ports, mock upstreams, real sockets.

mod harness;

mod admin;
mod cli;
mod filters;
mod limits;
mod malformed;
mod reload;
mod routing;
mod shutdown;
mod streaming;
mod tls;
mod upstreams;
