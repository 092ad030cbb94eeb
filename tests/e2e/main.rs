//! End-to-end tests: the real gateway on ephemeral ports, mock upstreams, real sockets.

mod harness;

mod malformed;
mod limits;
mod routing;
mod reload;
mod admin;
mod cli;
mod streaming;
mod shutdown;
mod upstreams;
