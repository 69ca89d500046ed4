//! Symbolon's vocabulary: identities, reason codes and durations.
//!
//! Plain data with no I/O and no TLS dependency, so every other crate (and the
//! policy engine later) can share one meaning for "who" and "why not".
#![forbid(unsafe_code)]

pub mod api_limits;
mod duration;
mod identity;
pub mod metrics;
mod namespace;
mod path;
mod peer;
pub mod policy;
mod reason;

// === the public interface ===
pub use duration::{DurationError, format_delta, format_duration, parse_duration};
pub use identity::{Identity, IdentityError, SpiffeId, dns_name_matches};
pub use metrics::{MetricHelp, Metrics};
pub use namespace::{IpNet, Namespace, NamespaceError};
pub use path::{PathError, SegmentGlob, normalize_path};
pub use peer::PeerCert;
pub use policy::{Decision, Policy, PolicyConfig, RequestFacts};
pub use reason::Reason;
