//! Request paths: `normalize_path` (what policy judges and what the gateway
//! forwards) and `SegmentGlob` (how `paths` rules match it).
//!
//! - `normalize_path` never panics;
//! - an accepted path starts with `/`, has no empty, `.` or `..` segment,
//!   holds only visible ASCII without `\`, and every `%` starts an
//!   upper-case escape of a byte that must stay escaped (not unreserved,
//!   not `/`);
//! - normalising is idempotent: a backend that normalises again sees the
//!   very path policy judged;
//! - a path that is already clean (no `%`, no `.`/`..`/empty segment) is
//!   left exactly as it was;
//! - globs agree with plain string checks on every accepted path: `/p/**`
//!   matches exactly `/p` and what starts with `/p/`, `/*` exactly the
//!   one-segment paths, and a path's own segments as a pattern match it.
#![no_main]

use libfuzzer_sys::fuzz_target;
use symbolon_core::{SegmentGlob, normalize_path};

fn is_unreserved(b: u8) -> bool {
    b.is_ascii_alphanumeric() || matches!(b, b'-' | b'.' | b'_' | b'~')
}

/// No `%`, no `.`, `..` or empty segment (but for a trailing slash), only
/// visible ASCII without `\`: nothing for normalisation to do.
fn is_clean(raw: &str) -> bool {
    let Some(rest) = raw.strip_prefix('/') else {
        return false;
    };
    let segments: Vec<&str> = rest.split('/').collect();
    raw.bytes()
        .all(|b| b.is_ascii_graphic() && b != b'\\' && b != b'%')
        && segments
            .iter()
            .enumerate()
            .all(|(i, s)| *s != "." && *s != ".." && (!s.is_empty() || i == segments.len() - 1))
}

/// `normalize_path` refuses more than this many segments (a bound on
/// policy matching work), clean or not.
const MAX_SEGMENTS: usize = 1024;

fuzz_target!(|data: &[u8]| {
    let raw = String::from_utf8_lossy(data);
    let Ok(p) = normalize_path(&raw) else {
        assert!(
            !is_clean(&raw) || raw.split('/').filter(|s| !s.is_empty()).count() > MAX_SEGMENTS,
            "a clean path was refused: {raw:?}"
        );
        return;
    };

    assert!(p.starts_with('/'), "{raw:?} -> {p:?}");
    let segments: Vec<&str> = p[1..].split('/').collect();
    for (i, s) in segments.iter().enumerate() {
        let last = i == segments.len() - 1;
        assert!(
            (!s.is_empty() || last) && *s != "." && *s != "..",
            "segment {s:?} left in {raw:?} -> {p:?}"
        );
    }
    let b = p.as_bytes();
    assert!(
        b.iter().all(|&c| c.is_ascii_graphic() && c != b'\\'),
        "{raw:?} -> {p:?}"
    );
    let mut i = 0;
    while i < b.len() {
        if b[i] == b'%' {
            let hex = &b[i + 1..i + 3];
            assert!(
                hex.iter().all(|h| h.is_ascii_digit() || (b'A'..=b'F').contains(h)),
                "escape {:?} in {p:?}",
                String::from_utf8_lossy(hex)
            );
            let v = u8::from_str_radix(std::str::from_utf8(hex).unwrap(), 16).unwrap();
            assert!(
                !is_unreserved(v) && v != b'/',
                "%{v:02X} should have been decoded in {p:?}"
            );
            i += 3;
        } else {
            i += 1;
        }
    }

    assert_eq!(
        normalize_path(&p).as_deref(),
        Ok(p.as_str()),
        "not idempotent for {raw:?}"
    );
    if is_clean(&raw) {
        assert_eq!(p, raw, "a clean path was changed");
    }

    let under = SegmentGlob::new("", "/p/**");
    assert_eq!(
        under.matches("", &p),
        p == "/p" || p.starts_with("/p/"),
        "/p/** against {p:?}"
    );
    let one = SegmentGlob::new("", "/*");
    assert_eq!(
        one.matches("", &p),
        p.len() > 1 && !p[1..].trim_end_matches('/').contains('/'),
        "/* against {p:?}"
    );
    if !segments.iter().any(|s| s.contains('*')) {
        assert!(SegmentGlob::new("", &p).matches("", &p), "{p:?} against itself");
    }
});
