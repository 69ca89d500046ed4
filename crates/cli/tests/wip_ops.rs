// Temporary harness for developing gateway_ops.rs on its own.
#![allow(clippy::unwrap_used, dead_code)]
#[path = "cli/gateway_ops.rs"]
mod gateway_ops;
#[path = "cli/gw_support.rs"]
mod gw_support;
#[path = "cli/support.rs"]
mod support;
