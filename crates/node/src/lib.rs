//! The data plane: the mTLS gateway in server mode (terminate mTLS,
//! authorize, forward with the verified identity) and client mode
//! (originate mTLS from a local plain-text listener).
#![forbid(unsafe_code)]

pub mod agent;
pub mod gateway;
pub mod metrics_server;
mod zones;

// === the public interface ===
pub use gateway::config::{ConfigError, GatewayConfig, Loaded, load as load_config};
pub use gateway::{Metrics, run};
