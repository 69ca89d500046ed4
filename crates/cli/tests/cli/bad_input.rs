//! Unusable input: every case exits 2 with stderr naming the file (or flag)
//! and saying what is wrong, and leaves every file as it was.

use std::collections::BTreeMap;

use crate::support::{Run, Sandbox};

/// Every file in the sandbox with its bytes, except the SQLite store and its
/// WAL/SHM files: SQLite may checkpoint an earlier command's WAL into the
/// database file whenever it is opened, so their bytes change without any
/// record changing. Records are checked through `ca list` instead.
fn snapshot(sb: &Sandbox) -> BTreeMap<String, Vec<u8>> {
    sb.files()
        .into_iter()
        .filter(|f| !f.ends_with("-wal") && !f.ends_with("-shm") && !f.ends_with("symbolon.db"))
        .map(|f| {
            let bytes = std::fs::read(sb.path(&f)).unwrap();
            (f, bytes)
        })
        .collect()
}

fn assert_unchanged(before: &BTreeMap<String, Vec<u8>>, after: &BTreeMap<String, Vec<u8>>) {
    let names: std::collections::BTreeSet<&String> = before.keys().chain(after.keys()).collect();
    let changed: Vec<&&String> = names
        .iter()
        .filter(|n| before.get(**n) != after.get(**n))
        .collect();
    assert!(
        changed.is_empty(),
        "files added, removed or changed: {changed:?}"
    );
}

/// Runs `args`, which must fail as unusable input: exit 2, stderr contains
/// each of `says` (the file or flag, and what is wrong), nothing on stdout,
/// and no file added, removed or changed.
fn assert_unusable(sb: &Sandbox, args: &[&str], says: &[&str]) -> Run {
    let before = snapshot(sb);
    let r = sb.run(args);
    assert_eq!(
        r.code,
        2,
        "symbolon {args:?}: expected exit 2:\n{}",
        r.all()
    );
    for s in says {
        assert!(
            r.stderr.contains(s),
            "symbolon {args:?}: stderr does not say {s:?}:\n{}",
            r.all()
        );
    }
    assert!(
        r.stdout.is_empty(),
        "symbolon {args:?}: printed to stdout:\n{}",
        r.all()
    );
    assert_unchanged(&before, &snapshot(sb));
    r
}

fn record_count(sb: &Sandbox) -> usize {
    sb.ok(&["ca", "list", "--dir", "ca", "--json"])
        .json()
        .as_array()
        .unwrap()
        .len()
}

/// A CA with one issued certificate: `a.crt` (leaf + intermediate), `a.key`.
fn ca_with_leaf() -> Sandbox {
    let sb = Sandbox::new();
    sb.init_ca(&[]);
    sb.ok(&[
        "ca",
        "issue",
        "--dir",
        "ca",
        "--dns",
        "a.example.org",
        "--out",
        "a",
    ]);
    sb
}

/// Both read-only commands that take a certificate file.
fn inspect_and_verify(sb: &Sandbox, file: &str, says: &[&str]) {
    assert_unusable(sb, &["cert", "inspect", file], says);
    assert_unusable(sb, &["cert", "inspect", file, "--json"], says);
    // Exit 2 (unusable input), not 1 ("this certificate is not valid").
    assert_unusable(
        sb,
        &["cert", "verify", file, "--trust", "ca/root.crt"],
        says,
    );
}

#[test]
fn corrupt_pem_is_refused() {
    let sb = ca_with_leaf();
    let pem = std::fs::read_to_string(sb.path("a.crt")).unwrap();
    let lines: Vec<&str> = pem.lines().collect();

    // A character that is not base64 in the middle of the body.
    let mut bad = lines.clone();
    let damaged = format!("{}!!!!{}", &bad[3][..10], &bad[3][14..]);
    bad[3] = &damaged;
    std::fs::write(sb.path("damaged.pem"), bad.join("\n") + "\n").unwrap();
    inspect_and_verify(&sb, "damaged.pem", &["damaged.pem", "corrupt PEM"]);

    // Valid base64, but the body was cut short: the DER inside is incomplete.
    let end = lines
        .iter()
        .position(|l| l.starts_with("-----END"))
        .unwrap();
    let cut = [&lines[..end - 3], &lines[end..end + 1]]
        .concat()
        .join("\n")
        + "\n";
    std::fs::write(sb.path("truncated.pem"), cut).unwrap();
    inspect_and_verify(&sb, "truncated.pem", &["truncated.pem", "not valid DER"]);

    // Cut off before the END line: no complete block at all.
    std::fs::write(sb.path("unterminated.pem"), &pem[..200]).unwrap();
    inspect_and_verify(
        &sb,
        "unterminated.pem",
        &["unterminated.pem", "no complete PEM block"],
    );
}

#[test]
fn a_private_key_where_a_certificate_belongs_is_refused() {
    let sb = ca_with_leaf();
    let says = ["a.key", "expected a certificate, found a private key"];
    assert_unusable(
        &sb,
        &["cert", "verify", "a.key", "--trust", "ca/root.crt"],
        &says,
    );
    let says = [
        "ca/intermediate.key",
        "expected a certificate, found a private key",
    ];
    assert_unusable(
        &sb,
        &["cert", "verify", "a.crt", "--trust", "ca/intermediate.key"],
        &says,
    );

    // `cert inspect` refuses keys and never echoes key material.
    let r = assert_unusable(
        &sb,
        &["cert", "inspect", "a.key"],
        &["a.key", "private key"],
    );
    let key = std::fs::read_to_string(sb.path("a.key")).unwrap();
    let body_line = key.lines().nth(1).unwrap();
    assert!(
        !r.all().contains(body_line),
        "key material printed:\n{}",
        r.all()
    );
}

#[test]
fn a_missing_file_is_reported_as_not_found() {
    let sb = ca_with_leaf();
    inspect_and_verify(&sb, "missing.pem", &["missing.pem", "not found"]);
    let says = ["missing-root.pem", "not found"];
    assert_unusable(
        &sb,
        &["cert", "verify", "a.crt", "--trust", "missing-root.pem"],
        &says,
    );
    assert_unusable(
        &sb,
        &["ca", "sign", "missing.csr", "--dir", "ca"],
        &["missing.csr", "not found"],
    );
}

#[test]
fn verify_without_a_trust_anchor_names_the_flag() {
    let sb = ca_with_leaf();
    assert_unusable(&sb, &["cert", "verify", "a.crt"], &["--trust"]);
}

#[test]
fn random_bytes_are_neither_pem_nor_der() {
    let sb = ca_with_leaf();
    // Fixed pseudo-random bytes (xorshift), so a failure reproduces.
    let mut x: u32 = 0x9e37_79b9;
    let bytes: Vec<u8> = (0..512)
        .map(|_| {
            x ^= x << 13;
            x ^= x >> 17;
            x ^= x << 5;
            x as u8
        })
        .collect();
    std::fs::write(sb.path("random.bin"), bytes).unwrap();
    let says = ["random.bin", "neither PEM nor a DER"];
    inspect_and_verify(&sb, "random.bin", &says);
    assert_unusable(&sb, &["ca", "sign", "random.bin", "--dir", "ca"], &says);
    // Also where an intermediate is expected, not only in the first argument.
    assert_unusable(
        &sb,
        &[
            "cert",
            "verify",
            "a.crt",
            "--trust",
            "ca/root.crt",
            "--intermediates",
            "random.bin",
        ],
        &says,
    );
}

// === ca init ===

#[test]
fn init_into_an_existing_ca_leaves_it_untouched() {
    let sb = Sandbox::new();
    sb.init_ca(&[]);
    // Issue once so the store holds data worth losing.
    sb.ok(&[
        "ca",
        "issue",
        "--dir",
        "ca",
        "--dns",
        "a.example.org",
        "--out",
        "a",
    ]);
    let again = [
        "ca",
        "init",
        "--dir",
        "ca",
        "--name",
        "Test",
        "--trust-domain",
        "example.org",
        "--root-passphrase-file",
        "pass.txt",
    ];
    assert_unusable(&sb, &again, &["ca", "not empty"]);
    // And with a plaintext root key, which skips the passphrase step.
    let plain = ["ca", "init", "--dir", "ca", "--insecure-plaintext-root-key"];
    assert_unusable(&sb, &plain, &["ca", "not empty"]);
    assert_eq!(record_count(&sb), 1);
}

#[test]
fn init_into_a_non_empty_directory_is_refused() {
    let sb = Sandbox::new();
    std::fs::create_dir(sb.path("other")).unwrap();
    std::fs::write(sb.path("other/notes.txt"), "keep me\n").unwrap();
    std::fs::write(sb.path("pass.txt"), "correct horse battery staple\n").unwrap();
    let args = [
        "ca",
        "init",
        "--dir",
        "other",
        "--root-passphrase-file",
        "pass.txt",
    ];
    assert_unusable(&sb, &args, &["other", "not empty", "notes.txt"]);
}

#[test]
fn init_without_a_passphrase_source_creates_nothing() {
    let sb = Sandbox::new();
    // Sandbox::cmd removes SYMBOLON_ROOT_PASSPHRASE, so no source is left.
    let r = assert_unusable(
        &sb,
        &["ca", "init", "--dir", "newca"],
        &["--root-passphrase-file", "SYMBOLON_ROOT_PASSPHRASE"],
    );
    assert!(!sb.path("newca").exists(), "{}", r.all());
}

#[test]
fn init_with_a_short_or_missing_passphrase_file_creates_nothing() {
    let sb = Sandbox::new();
    // Seven characters plus the newline: the newline is stripped before the
    // length check, so this is too short even though the file has 8 bytes.
    std::fs::write(sb.path("short.txt"), "1234567\n").unwrap();
    let args = [
        "ca",
        "init",
        "--dir",
        "newca",
        "--root-passphrase-file",
        "short.txt",
    ];
    assert_unusable(&sb, &args, &["short.txt", "shorter than 8"]);
    assert!(!sb.path("newca").exists());

    let args = [
        "ca",
        "init",
        "--dir",
        "newca",
        "--root-passphrase-file",
        "nope.txt",
    ];
    assert_unusable(&sb, &args, &["nope.txt", "not found"]);
    assert!(!sb.path("newca").exists());
}

// === ca issue ===

#[test]
fn issue_refuses_existing_output_unless_forced() {
    let sb = ca_with_leaf();
    let args = [
        "ca",
        "issue",
        "--dir",
        "ca",
        "--dns",
        "b.example.org",
        "--out",
        "a",
    ];
    assert_unusable(&sb, &args, &["a.crt", "already exists", "--force"]);
    assert_eq!(record_count(&sb), 1);

    // A lone key is protected too: replacing it would lose the private key.
    std::fs::remove_file(sb.path("a.crt")).unwrap();
    assert_unusable(&sb, &args, &["a.key", "already exists"]);
    assert_eq!(record_count(&sb), 1);

    let old_key = std::fs::read(sb.path("a.key")).unwrap();
    let forced = [
        "ca",
        "issue",
        "--dir",
        "ca",
        "--dns",
        "b.example.org",
        "--out",
        "a",
        "--force",
    ];
    sb.ok(&forced);
    assert_ne!(
        std::fs::read(sb.path("a.key")).unwrap(),
        old_key,
        "--force did not replace the key"
    );
    assert!(sb.path("a.crt").exists());
    assert_eq!(record_count(&sb), 2);
}

#[test]
fn issue_outside_the_namespace_leaves_nothing() {
    let sb = ca_with_leaf();
    let args = [
        "ca", "issue", "--dir", "ca", "--dns", "evil.com", "--out", "e",
    ];
    assert_unusable(&sb, &args, &["evil.com", "outside"]);
    assert_eq!(record_count(&sb), 1);
    let args = [
        "ca", "issue", "--dir", "ca", "--ip", "10.0.0.1", "--out", "e",
    ];
    assert_unusable(&sb, &args, &["10.0.0.1", "outside"]);
    assert_eq!(record_count(&sb), 1);
}

#[test]
fn issue_names_a_missing_ca_directory() {
    let sb = Sandbox::new();
    let args = [
        "ca",
        "issue",
        "--dir",
        "nonexistent",
        "--dns",
        "a.example.org",
        "--out",
        "a",
    ];
    assert_unusable(&sb, &args, &["nonexistent", "no such CA directory"]);
    assert!(!sb.path("nonexistent").exists());
}

/// Replaces `from` with `to` in ca/ca.toml, asserting it was there.
fn edit_config(sb: &Sandbox, from: &str, to: &str) -> String {
    let path = sb.path("ca/ca.toml");
    let original = std::fs::read_to_string(&path).unwrap();
    assert!(
        original.contains(from),
        "{from:?} not in ca.toml:\n{original}"
    );
    std::fs::write(&path, original.replacen(from, to, 1)).unwrap();
    original
}

#[test]
fn a_bad_duration_in_ca_toml_is_named() {
    let sb = ca_with_leaf();
    let original = edit_config(&sb, "default_leaf = \"24h\"", "default_leaf = \"soon\"");
    let args = [
        "ca",
        "issue",
        "--dir",
        "ca",
        "--dns",
        "b.example.org",
        "--out",
        "b",
    ];
    assert_unusable(
        &sb,
        &args,
        &["ca/ca.toml", "lifetimes.default_leaf", "soon"],
    );
    // With the file repaired, the store shows nothing was issued meanwhile.
    std::fs::write(sb.path("ca/ca.toml"), original).unwrap();
    assert_eq!(record_count(&sb), 1);
}

#[test]
fn bad_connection_limits_in_ca_toml_are_named() {
    let sb = ca_with_leaf();
    let serve = ["ca", "serve", "--dir", "ca", "--listen", "127.0.0.1:1"];
    for (from, to, named) in [
        (
            "max_connections = 4096",
            "max_connections = 0",
            &["ca/ca.toml", "limits.max_connections", "between 1 and"][..],
        ),
        (
            "header_timeout = \"30s\"",
            "header_timeout = \"0s\"",
            &["ca/ca.toml", "limits.header_timeout", "between 1s and 1h"][..],
        ),
        (
            "request_timeout = \"60s\"",
            "request_timeout = \"forever\"",
            &["ca/ca.toml", "limits.request_timeout", "forever"][..],
        ),
    ] {
        let original = edit_config(&sb, from, to);
        assert_unusable(&sb, &serve, named);
        std::fs::write(sb.path("ca/ca.toml"), original).unwrap();
    }
}

#[test]
fn an_unknown_key_in_ca_toml_is_named() {
    let sb = ca_with_leaf();
    let args = [
        "ca",
        "issue",
        "--dir",
        "ca",
        "--dns",
        "b.example.org",
        "--out",
        "b",
    ];

    // A misspelt top-level key.
    let original = edit_config(&sb, "name = \"Test\"", "name = \"Test\"\ncolour = \"blue\"");
    assert_unusable(&sb, &args, &["ca/ca.toml", "colour"]);
    std::fs::write(sb.path("ca/ca.toml"), &original).unwrap();

    // A misspelt key inside a section: a typo there must not be ignored either.
    edit_config(&sb, "max_leaf = ", "max_leaves = ");
    assert_unusable(&sb, &args, &["ca/ca.toml", "max_leaves"]);
    std::fs::write(sb.path("ca/ca.toml"), &original).unwrap();
    assert_eq!(record_count(&sb), 1);
}
