//! IANA time zones for policy windows, read from the system's zoneinfo
//! (TZif files) once at load time.

use std::sync::Arc;

use symbolon_core::policy::ZoneResolver;
use time::{OffsetDateTime, UtcOffset};

#[derive(Debug)]
struct Zone(tz::TimeZone);

impl ZoneResolver for Zone {
    fn offset_at(&self, at: OffsetDateTime) -> UtcOffset {
        let secs = self
            .0
            .find_local_time_type(at.unix_timestamp())
            .map(|t| t.ut_offset())
            .unwrap_or(0);
        UtcOffset::from_whole_seconds(secs).unwrap_or(UtcOffset::UTC)
    }
}

/// Resolves an IANA name such as `Europe/Berlin`.
pub fn resolve(name: &str) -> Result<Arc<dyn ZoneResolver>, String> {
    if name.contains("..") || name.starts_with('/') {
        return Err(format!("{name:?} is not a time zone name"));
    }
    let path = format!("/usr/share/zoneinfo/{name}");
    let bytes = std::fs::read(&path).map_err(|e| {
        format!("unknown time zone {name:?} ({path}: {e}); use UTC, an offset like +02:00, or an IANA name like Europe/Berlin")
    })?;
    let tz =
        tz::TimeZone::from_tz_data(&bytes).map_err(|e| format!("{path}: not a TZif file: {e}"))?;
    Ok(Arc::new(Zone(tz)))
}
