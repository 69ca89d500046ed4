//! Limits of the control-plane API that both ends must agree on: `ca serve`
//! enforces them, and clients (gateways reporting telemetry, agents) shape
//! their requests to fit, so that a busy gateway splits its report instead of
//! having all of it refused.

/// The largest request body `ca serve` reads; a larger one is refused with
/// `413 too_large` before it is parsed.
pub const MAX_BODY: usize = 64 * 1024;

/// The most counts one telemetry report may carry.
pub const MAX_TELEMETRY_COUNTS: usize = 10_000;

/// The longest client name (bytes) one telemetry count may carry. Client
/// names can come from certificates the gateway refused, which anyone can
/// make, so the gateway shortens longer ones rather than have the report
/// refused.
pub const MAX_TELEMETRY_CLIENT: usize = 2048;

/// The longest reason (a reason code or a policy rule's name) one telemetry
/// count may carry, in bytes.
pub const MAX_TELEMETRY_REASON: usize = 256;
