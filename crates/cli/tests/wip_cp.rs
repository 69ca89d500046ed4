// Temporary harness for developing control_plane.rs on its own.
#![allow(clippy::unwrap_used, dead_code)]
#[path = "cli/control_plane.rs"]
mod control_plane;
#[path = "cli/gw_support.rs"]
mod gw_support;
#[path = "cli/support.rs"]
mod support;
