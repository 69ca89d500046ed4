//! CRL scale benchmark: how long signing and loading a CRL of N revoked
//! certificates takes, how large it is, and what holding it costs the
//! gateway in memory and per handshake.
//!
//! ```sh
//! cargo run --release -p symbolon-node --example crl_scale -- 1000000
//! ```
//!
//! The signing side creates a CA in memory (ECDSA P-256), N entries with
//! random 128-bit serials, and times `Issuer::sign_crl`. The loading side
//! runs in a fresh child process (this same binary with `--load`), so its
//! RSS numbers are not blurred by memory the signing side freed: it times
//! the gateway's `read_crl` (parse + signature check + entry extraction),
//! then builds the map the gateway keeps (`issuer\nserial` →
//! (reason, revoked_at), the way `Revocation::merge` fills it, minus the
//! per-entry log line), and times 1M lookups the way the handshake path
//! does them (build the key, one hash map lookup). Prints a Markdown table.
//!
//! RSS (VmRSS) after a step includes memory freed during it that malloc kept
//! for reuse, so next to it the example also counts the bytes the held data
//! structure really occupies.

use std::collections::HashMap;
use std::error::Error;
use std::hint::black_box;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant};

use symbolon_node::gateway::revocation::read_crl;
use symbolon_pki::{
    CaOptions, CertificateDer, Issuer, KeyPair, KeyType, RevocationReason, RevokedEntry, Serial,
    create_ca,
};
use time::OffsetDateTime;

type Res<T> = Result<T, Box<dyn Error>>;

const LOOKUPS: usize = 1_000_000;
const MIB: f64 = 1024.0 * 1024.0;

fn main() -> Res<()> {
    let args: Vec<String> = std::env::args().collect();
    if args.get(1).map(String::as_str) == Some("--load") {
        let (Some(crl), Some(anchor)) = (args.get(2), args.get(3)) else {
            return Err("usage: crl_scale --load CRL_FILE ANCHOR_FILE".into());
        };
        return load(Path::new(crl), Path::new(anchor));
    }
    let n: usize = match args.get(1) {
        Some(s) => s
            .replace('_', "")
            .parse()
            .map_err(|e| format!("N {s:?}: {e}"))?,
        None => 1_000_000,
    };
    sign_and_measure(n)
}

/// `VmRSS` and `VmHWM` (peak) of this process, in bytes.
fn memory() -> (u64, u64) {
    let status = std::fs::read_to_string("/proc/self/status").unwrap_or_default();
    let field = |name: &str| {
        status
            .lines()
            .find_map(|l| l.strip_prefix(name))
            .and_then(|v| v.trim().trim_end_matches("kB").trim().parse::<u64>().ok())
            .map_or(0, |kb| kb * 1024)
    };
    (field("VmRSS:"), field("VmHWM:"))
}

fn mib(bytes: u64) -> String {
    format!("{:.1} MiB", bytes as f64 / MIB)
}

fn secs(d: Duration) -> String {
    format!("{:.3} s", d.as_secs_f64())
}

fn machine() -> String {
    let cpuinfo = std::fs::read_to_string("/proc/cpuinfo").unwrap_or_default();
    let cpus = cpuinfo
        .lines()
        .filter(|l| l.starts_with("processor"))
        .count();
    let model = cpuinfo
        .lines()
        .find_map(|l| l.strip_prefix("model name"))
        .and_then(|l| l.split_once(':'))
        .map_or("unknown CPU".to_string(), |(_, m)| m.trim().to_string());
    let mem = std::fs::read_to_string("/proc/meminfo")
        .unwrap_or_default()
        .lines()
        .find_map(|l| l.strip_prefix("MemTotal:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse::<u64>().ok())
        .map_or("unknown RAM".to_string(), |kb| {
            format!("{:.1} GiB RAM", kb as f64 / 1024.0 / 1024.0)
        });
    format!("{cpus} logical CPUs, {model}, {mem}")
}

fn sign_and_measure(n: usize) -> Res<()> {
    let started = Instant::now();
    let now = OffsetDateTime::now_utc();
    let ca = create_ca(
        &CaOptions {
            name: "Bench".into(),
            key_type: KeyType::EcdsaP256,
            root_lifetime: Duration::from_secs(10 * 365 * 86_400),
            intermediate_lifetime: Duration::from_secs(365 * 86_400),
        },
        now,
    )?;
    let key = KeyPair::try_from(ca.intermediate_key_pkcs8.as_slice())?;
    let issuer = Issuer::new(ca.intermediate_der.clone(), key)?;

    let t = Instant::now();
    let entries: Vec<RevokedEntry> = (0..n)
        .map(|_| RevokedEntry {
            serial: Serial::random(),
            revoked_at: now,
            reason: RevocationReason::KeyCompromise,
        })
        .collect();
    let generate = t.elapsed();

    let t = Instant::now();
    let der = issuer.sign_crl(1, now, now + time::Duration::days(1), &entries)?;
    let sign = t.elapsed();
    let (_, sign_peak) = memory();
    drop(entries);

    // The loading side runs in a fresh process; the CRL goes through a file.
    let dir = std::env::temp_dir();
    let tag = format!("crl_scale-{}", std::process::id());
    let crl_path: PathBuf = dir.join(format!("{tag}.crl"));
    let anchor_path: PathBuf = dir.join(format!("{tag}.der"));
    std::fs::write(&crl_path, der.as_ref())?;
    std::fs::write(&anchor_path, ca.intermediate_der.as_ref())?;
    let child = Command::new(std::env::current_exe()?)
        .arg("--load")
        .arg(&crl_path)
        .arg(&anchor_path)
        .output();
    let _ = std::fs::remove_file(&crl_path);
    let _ = std::fs::remove_file(&anchor_path);
    let child = child?;
    if !child.status.success() {
        return Err(format!(
            "the loading process failed ({}): {}",
            child.status,
            String::from_utf8_lossy(&child.stderr)
        )
        .into());
    }
    let rows = String::from_utf8(child.stdout)?;

    let size = der.as_ref().len();
    let date = now
        .format(&time::format_description::well_known::Rfc3339)
        .unwrap_or_default();
    println!("CRL scale: {n} revoked certificates, ECDSA P-256 intermediate\n");
    println!("- date: {date}");
    println!("- machine: {}", machine());
    println!(
        "- build: {}",
        if cfg!(debug_assertions) {
            "DEBUG (numbers are not representative; use --release)"
        } else {
            "release"
        }
    );
    println!(
        "- RSS from /proc/self/status (VmRSS, peak = VmHWM); the load runs in a fresh process\n"
    );
    println!("| step | result |");
    println!("|---|---:|");
    println!("| generate {n} random serials | {} |", secs(generate));
    println!("| `Issuer::sign_crl` | {} |", secs(sign));
    println!(
        "| CRL size (DER) | {size} bytes = {:.1} MiB ({:.1} bytes/entry) |",
        size as f64 / MIB,
        size as f64 / n.max(1) as f64
    );
    println!("| peak RSS of the signing process | {} |", mib(sign_peak));
    print!("{rows}");
    println!("\nWhole run: {:.1} s.", started.elapsed().as_secs_f64());
    Ok(())
}

/// A small xorshift generator: the lookup pattern only needs to be
/// unpredictable to the hash map, not secure.
struct XorShift(u64);

impl XorShift {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        self.0
    }
}

/// The gateway's key for its revocation map.
fn key(issuer: &str, serial: &str) -> String {
    format!("{issuer}\n{}", serial.to_ascii_lowercase())
}

fn load(crl_path: &Path, anchor_path: &Path) -> Res<()> {
    let der = std::fs::read(crl_path)?;
    let anchors = vec![CertificateDer::from(std::fs::read(anchor_path)?)];
    let (rss_base, _) = memory();

    let t = Instant::now();
    let (_issuer, number, current, entries) = read_crl(&der, &anchors)?;
    let read = t.elapsed();
    let (rss_read, _) = memory();
    let count = entries.len();
    let entries_bytes = (entries.capacity()
        * std::mem::size_of::<symbolon_node::gateway::revocation::RevokedEntry>()
        + entries
            .iter()
            .map(|(i, s, r, a)| i.capacity() + s.capacity() + r.capacity() + a.capacity() + 4 * 16)
            .sum::<usize>()) as u64;
    if number != 1 || !current {
        return Err(format!("unexpected CRL: number {number}, current {current}").into());
    }
    let issuer = entries
        .first()
        .map(|e| e.0.clone())
        .unwrap_or_else(|| "none".into());

    // What `Revocation::merge` does for a first load: every entry is new, so
    // its key is also collected to close live connections; the map keeps
    // (reason, revoked_at). The per-entry warning line is left out.
    let t = Instant::now();
    let mut map: HashMap<String, (String, String)> = HashMap::new();
    let mut fresh = Vec::new();
    for (issuer, serial, reason, at) in entries {
        let k = key(&issuer, &serial);
        if !map.contains_key(&k) {
            fresh.push(k.clone());
        }
        map.insert(k, (reason, at));
    }
    let build = t.elapsed();
    drop(fresh);
    let (rss_map, peak) = memory();
    drop(der);
    // The map's own footprint, counted: the table (one control byte per
    // bucket) plus each string's heap buffer and malloc's 16-byte header.
    let table = map.capacity() * (std::mem::size_of::<(String, (String, String))>() + 1);
    let heap: usize = map
        .iter()
        .map(|(k, (r, a))| k.capacity() + r.capacity() + a.capacity() + 3 * 16)
        .sum();
    let map_bytes = (table + heap) as u64;

    // Lookups as on the handshake path: (issuer, serial) → key → get.
    let mut rng = XorShift(0x9E37_79B9_7F4A_7C15 ^ u64::from(std::process::id()));
    let misses: Vec<String> = (0..LOOKUPS).map(|_| Serial::random().to_hex()).collect();
    let revoked: Vec<&str> = map
        .keys()
        .filter_map(|k| k.split_once('\n').map(|(_, s)| s))
        .collect();
    let hits: Vec<&str> = if revoked.is_empty() {
        Vec::new()
    } else {
        (0..LOOKUPS)
            .map(|_| revoked[(rng.next() % revoked.len() as u64) as usize])
            .collect()
    };
    let time_lookups = |serials: &[&str]| {
        let t = Instant::now();
        let mut found = 0usize;
        for s in serials {
            if map.contains_key(&key(black_box(&issuer), black_box(s))) {
                found += 1;
            }
        }
        let ns = t.elapsed().as_nanos() as f64 / serials.len().max(1) as f64;
        (ns, found)
    };
    let miss_refs: Vec<&str> = misses.iter().map(String::as_str).collect();
    let (miss_ns, miss_found) = time_lookups(&miss_refs);
    let (hit_ns, hit_found) = time_lookups(&hits);
    if miss_found != 0 || hit_found != hits.len() {
        return Err(format!(
            "lookup check failed: {miss_found} random serials found, {hit_found} of {} revoked ones found",
            hits.len()
        )
        .into());
    }

    println!(
        "| `read_crl` (parse, verify signature, extract {count} entries) | {} |",
        secs(read)
    );
    println!(
        "| RSS before `read_crl` (CRL bytes loaded) | {} |",
        mib(rss_base)
    );
    println!(
        "| RSS holding `read_crl`'s result (and what its parser freed but malloc kept) | {} (+{}) |",
        mib(rss_read),
        mib(rss_read.saturating_sub(rss_base))
    );
    println!(
        "| `read_crl`'s result, counted (vector + string buffers + malloc headers) | {} ({:.0} bytes/entry) |",
        mib(entries_bytes),
        entries_bytes as f64 / count.max(1) as f64
    );
    println!(
        "| build the gateway's lookup map ({} keys) | {} |",
        map.len(),
        secs(build)
    );
    println!(
        "| RSS holding the map (entries consumed, freed memory not returned to the OS) | {} (+{} over the base) |",
        mib(rss_map),
        mib(rss_map.saturating_sub(rss_base))
    );
    println!(
        "| the map's own size, counted (table + string buffers + malloc headers) | {} ({:.0} bytes/entry) |",
        mib(map_bytes),
        map_bytes as f64 / map.len().max(1) as f64
    );
    println!("| peak RSS of the loading process | {} |", mib(peak));
    println!("| lookup, serial not revoked ({LOOKUPS} random) | {miss_ns:.0} ns/lookup |");
    println!(
        "| lookup, serial revoked ({} random picks) | {hit_ns:.0} ns/lookup |",
        hits.len()
    );
    Ok(())
}
