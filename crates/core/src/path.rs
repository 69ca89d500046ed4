//! Request path normalisation, so that a policy and the backend always see
//! the same path: `/public/%2e%2e/admin`, `/public//../admin` and
//! `/admin%2Fusers` must all be judged as what the backend will serve.

#[derive(Debug, thiserror::Error, PartialEq, Eq)]
#[error("malformed request path: {0}")]
pub struct PathError(pub &'static str);

/// Real paths are far shorter; the cap bounds policy matching work.
const MAX_SEGMENTS: usize = 1024;

fn is_unreserved(b: u8) -> bool {
    b.is_ascii_alphanumeric() || matches!(b, b'-' | b'.' | b'_' | b'~')
}

/// Normalises an origin-form path (no query):
/// 1. percent-escapes of unreserved characters and of `/` are decoded
///    (decoding `%2F` is what stops `/admin%2Fusers` slipping past a rule
///    for `/admin/**`); other escapes are kept, with upper-case hex;
/// 2. runs of `/` collapse to one;
/// 3. `.` and `..` segments are resolved (RFC 3986 §5.2.4), never above `/`.
///
/// The gateway forwards the normalised path, so what policy checked is
/// exactly what the upstream receives.
pub fn normalize_path(raw: &str) -> Result<String, PathError> {
    if !raw.starts_with('/') {
        return Err(PathError("it must start with '/'"));
    }
    let bytes = raw.as_bytes();
    let mut decoded = String::with_capacity(raw.len());
    let mut i = 0;
    while i < bytes.len() {
        let b = bytes[i];
        if b == b'%' {
            let hex = bytes
                .get(i + 1..i + 3)
                .ok_or(PathError("truncated percent-escape"))?;
            let s = std::str::from_utf8(hex).map_err(|_| PathError("bad percent-escape"))?;
            let v = u8::from_str_radix(s, 16).map_err(|_| PathError("bad percent-escape"))?;
            if is_unreserved(v) || v == b'/' {
                decoded.push(v as char);
            } else {
                decoded.push_str(&format!("%{v:02X}"));
            }
            i += 3;
        } else if b == b'\\' || b.is_ascii_control() || b == b' ' || b >= 0x80 {
            return Err(PathError(
                "it contains a backslash, space, control or non-ASCII byte",
            ));
        } else {
            decoded.push(b as char);
            i += 1;
        }
    }
    let trailing = decoded.ends_with('/') && decoded.len() > 1;
    let mut out: Vec<&str> = Vec::new();
    let segments: Vec<&str> = decoded.split('/').filter(|s| !s.is_empty()).collect();
    if segments.len() > MAX_SEGMENTS {
        return Err(PathError("more than 1024 path segments"));
    }
    let last_is_dot = matches!(segments.last(), Some(&".") | Some(&".."));
    for seg in segments {
        match seg {
            "." => {}
            ".." => {
                out.pop();
            }
            s => out.push(s),
        }
    }
    let mut path = format!("/{}", out.join("/"));
    if (trailing || last_is_dot) && path != "/" {
        path.push('/');
    }
    Ok(path)
}

/// A path or SPIFFE-ID pattern over `/`-separated segments: `*` matches
/// exactly one segment, `**` any number of segments (including none);
/// every other segment matches literally.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct SegmentGlob {
    prefix: String,
    segments: Vec<String>,
    trailing_slash: bool,
}

impl SegmentGlob {
    /// `prefix` is matched literally before the path (e.g. `spiffe://td`).
    pub fn new(prefix: &str, path: &str) -> SegmentGlob {
        SegmentGlob {
            prefix: prefix.to_string(),
            segments: path
                .split('/')
                .filter(|s| !s.is_empty())
                .map(str::to_string)
                .collect(),
            trailing_slash: path.ends_with('/') && path.len() > 1,
        }
    }

    pub fn matches(&self, prefix: &str, path: &str) -> bool {
        if prefix != self.prefix {
            return false;
        }
        let segs: Vec<&str> = path.split('/').filter(|s| !s.is_empty()).collect();
        let ok = glob(&self.segments, &segs);
        // "/a/" names a directory: it should not also match the file "/a".
        ok && (!self.trailing_slash
            || path.ends_with('/')
            || self.segments.last().is_some_and(|s| s == "**"))
    }
}

/// Dynamic programming over (pattern position, segment position): linear
/// in pattern length × path length, so no path can make a `**` pattern
/// backtrack exponentially (a request is attacker-controlled input).
fn glob(pat: &[String], segs: &[&str]) -> bool {
    let (p, s) = (pat.len(), segs.len());
    // next[j]: does pat[i+1..] match segs[j..]?
    let mut next = vec![false; s + 1];
    next[s] = true;
    for i in (0..p).rev() {
        let mut cur = vec![false; s + 1];
        for j in (0..=s).rev() {
            cur[j] = if pat[i] == "**" {
                next[j] || (j < s && cur[j + 1])
            } else {
                j < s && (pat[i] == "*" || pat[i] == segs[j]) && next[j + 1]
            };
        }
        next = cur;
    }
    next[0]
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn traversal_tricks_normalise_to_what_the_backend_serves() {
        for (raw, want) in [
            ("/", "/"),
            ("/a/b", "/a/b"),
            ("/a/b/", "/a/b/"),
            ("/public/../admin", "/admin"),
            ("/public/%2e%2e/admin", "/admin"),
            ("/public/%2E%2E/admin", "/admin"),
            ("/public/.%2e/admin", "/admin"),
            ("//admin", "/admin"),
            ("/public//..//admin", "/admin"),
            ("/admin%2Fusers", "/admin/users"),
            ("/admin%2fusers", "/admin/users"),
            ("/../../etc/passwd", "/etc/passwd"),
            ("/a/./b/.", "/a/b/"),
            ("/%61dmin", "/admin"),
            ("/a%20b", "/a%20b"),
            ("/a%3fb", "/a%3Fb"),
        ] {
            assert_eq!(normalize_path(raw).unwrap(), want, "{raw}");
        }
        for bad in [
            "admin",
            "/a%2",
            "/a%zz",
            "/a\\..\\admin",
            "/a b",
            "/caf\u{e9}",
        ] {
            assert!(normalize_path(bad).is_err(), "{bad:?} accepted");
        }
    }

    #[test]
    fn globs_match_whole_segments() {
        let g = SegmentGlob::new("", "/api/*/items/**");
        assert!(g.matches("", "/api/v1/items"));
        assert!(g.matches("", "/api/v1/items/3/x"));
        assert!(!g.matches("", "/api/v1/v2/items"));
        assert!(!g.matches("", "/api/items"));
        assert!(!g.matches("", "/apix/v1/items"));
        let all = SegmentGlob::new("", "/**");
        assert!(all.matches("", "/") && all.matches("", "/x/y"));
        let exact = SegmentGlob::new("spiffe://td", "/ns/prod/sa/web");
        assert!(exact.matches("spiffe://td", "/ns/prod/sa/web"));
        assert!(!exact.matches("spiffe://other", "/ns/prod/sa/web"));
        assert!(!exact.matches("spiffe://td", "/ns/prod/sa/webx"));
        // A hostile path against a pattern with several `**` stays cheap.
        let nasty = SegmentGlob::new("", "/**/a/**/a/**/x");
        let long = format!("/{}", vec!["a"; 1000].join("/"));
        let started = std::time::Instant::now();
        assert!(!nasty.matches("", &long));
        assert!(started.elapsed() < std::time::Duration::from_secs(1));
        assert!(nasty.matches("", "/q/a/b/a/x"));
        assert!(normalize_path(&format!("/{}", vec!["a"; 2000].join("/"))).is_err());
        let dir = SegmentGlob::new("", "/admin/");
        assert!(dir.matches("", "/admin/") && !dir.matches("", "/admin"));
    }
}
