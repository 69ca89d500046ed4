// Temporary harness for developing gateway_http.rs on its own.
#![allow(clippy::unwrap_used, dead_code)]
#[path = "cli/gateway_http.rs"]
mod gateway_http;
#[path = "cli/gw_support.rs"]
mod gw_support;
#[path = "cli/support.rs"]
mod support;
