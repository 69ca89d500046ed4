//! Integration tests: the real `symbolon` binary in temporary directories,
//! with OpenSSL and pkilint as independent checkers.
#![allow(clippy::unwrap_used)] // a failed unwrap is a failed test

mod gw_support;
mod support;

mod audit;
mod bad_input;
mod bench;
mod browser;
mod control_plane;
mod crash;
mod dashboard;
mod docs;
mod gateway_http;
mod gateway_ops;
mod init;
mod inspect;
mod issue;
mod limits;
mod lint;
mod negative_matrix;
mod ocsp;
mod quickstart;
mod regressions;
mod replicas;
mod revocation;
mod revoke;
mod sign;
mod store_faults;
mod telemetry;
mod tls_surface;
mod verify;
