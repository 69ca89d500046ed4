//! The control plane: the CA's issuing logic and its HTTPS API
//! (`symbolon ca serve`).
#![forbid(unsafe_code)]

mod api;
mod authority;
mod feed;
mod openapi;
mod serve;
mod ui;

// === the public interface ===
pub use api::MAX_BODY;
pub use authority::{Authority, IssueError};
pub use serve::{Limits, METRICS, ServeOptions, run};
