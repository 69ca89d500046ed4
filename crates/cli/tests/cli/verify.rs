//! `symbolon cert verify`: every refusal has its own reason code, a message
//! naming the certificate (or CRL issuer) at fault, and the exit code the
//! scripts rely on (0 valid, 1 invalid, 2 unusable input). Broken
//! certificates are minted in code with the testkit; what rcgen cannot make
//! (RSA-1024 keys, SHA-1 signatures) is made with the OpenSSL CLI.

use std::path::Path;

use serde_json::Value;
use symbolon_testkit::rcgen::{
    CustomExtension, DnType, ExtendedKeyUsagePurpose, GeneralSubtree, NameConstraints, SanType,
};
use symbolon_testkit::{self as testkit, TestCa, ca_params, leaf_params};
use time::format_description::well_known::Rfc3339;
use time::{Duration, OffsetDateTime};

use crate::support::{Run, Sandbox, run_tool, tool};

// --- helpers ---

/// Writes the certificates (PEM, in this order) to `name` in the sandbox and
/// returns `name`, ready to pass as an argument (commands run in the sandbox).
fn certs<'a>(sb: &Sandbox, name: &'a str, ders: &[&[u8]]) -> &'a str {
    let pem: String = ders
        .iter()
        .map(|d| symbolon_pki::to_pem("CERTIFICATE", d))
        .collect();
    testkit::write(sb.dir.path(), name, pem);
    name
}

fn crl_file<'a>(sb: &Sandbox, name: &'a str, der: &[u8]) -> &'a str {
    testkit::write(sb.dir.path(), name, symbolon_pki::to_pem("X509 CRL", der));
    name
}

/// `symbolon cert verify ARGS --json`.
fn verify_json(sb: &Sandbox, args: &[&str]) -> Run {
    let mut all = vec!["cert", "verify"];
    all.extend_from_slice(args);
    all.push("--json");
    sb.run(&all)
}

/// Asserts the path verifies (exit 0, `valid: true`) and returns the JSON.
fn accepted(sb: &Sandbox, args: &[&str]) -> Value {
    let r = verify_json(sb, args);
    assert_eq!(r.code, 0, "expected valid for {args:?}:\n{}", r.all());
    let j = r.json();
    assert_eq!(j["valid"], true, "{}", r.all());
    j
}

/// Asserts the path is refused (exit 1) for `reason`, with a message that
/// names `who` (a CN, so a wrong certificate being blamed fails the test),
/// and returns the JSON.
fn refused(sb: &Sandbox, args: &[&str], reason: &str, who: &str) -> Value {
    let r = verify_json(sb, args);
    assert_eq!(r.code, 1, "expected refusal for {args:?}:\n{}", r.all());
    let j = r.json();
    assert_eq!(j["valid"], false, "{}", r.all());
    assert_eq!(j["reason"], reason, "{}", r.all());
    let message = j["message"].as_str().unwrap();
    assert!(
        message.contains(who),
        "message does not name {who:?}: {message}"
    );
    j
}

fn rfc3339(t: OffsetDateTime) -> String {
    t.format(&Rfc3339).unwrap()
}

/// A root and an intermediate (pathlen 0) under it: the usual private PKI.
fn root_and_intermediate() -> (TestCa, TestCa) {
    let root = TestCa::root(ca_params("Verify Root", None));
    let int = root.sub_ca(ca_params("Verify Intermediate", Some(0)));
    (root, int)
}

/// CA parameters whose validity ended yesterday.
fn expired_ca_params(cn: &str) -> symbolon_testkit::rcgen::CertificateParams {
    let mut p = ca_params(cn, None);
    let now = OffsetDateTime::now_utc();
    p.not_before = now - Duration::days(30);
    p.not_after = now - Duration::days(1);
    p
}

// --- valid paths ---

#[test]
fn valid_path_lists_leaf_intermediate_and_trust_anchor() {
    let sb = Sandbox::new();
    let (root, int) = root_and_intermediate();
    let leaf = int.leaf(leaf_params("ok.test"));
    let leaf_f = certs(&sb, "leaf.pem", &[&leaf.der]);
    let int_f = certs(&sb, "int.pem", &[&int.der]);
    let root_f = certs(&sb, "root.pem", &[&root.der]);
    let args = [
        leaf_f,
        "--trust",
        root_f,
        "--intermediates",
        int_f,
        "--purpose",
        "server",
        "--dns",
        "ok.test",
    ];

    let j = accepted(&sb, &args);
    let path = j["path"].as_array().unwrap();
    let roles: Vec<&str> = path.iter().map(|c| c["role"].as_str().unwrap()).collect();
    assert_eq!(roles, ["leaf", "intermediate", "trust anchor"], "{j}");
    let subjects: Vec<&str> = path
        .iter()
        .map(|c| c["subject"].as_str().unwrap())
        .collect();
    assert_eq!(
        subjects,
        ["CN=ok.test", "CN=Verify Intermediate", "CN=Verify Root"],
        "{j}"
    );

    let mut human = vec!["cert", "verify"];
    human.extend_from_slice(&args);
    let r = sb.ok(&human);
    assert!(r.stdout.starts_with("valid:"), "{}", r.all());
}

#[test]
fn chain_in_the_leaf_file_supplies_the_intermediate() {
    let sb = Sandbox::new();
    let (root, int) = root_and_intermediate();
    let leaf = int.leaf(leaf_params("chain.test"));
    let root_f = certs(&sb, "root.pem", &[&root.der]);
    let alone = certs(&sb, "alone.pem", &[&leaf.der]);
    let chain = certs(&sb, "chain.pem", &[&leaf.der, &int.der]);

    // Without the intermediate there is no path, so a pass below can only
    // come from the second certificate in the leaf file.
    refused(&sb, &[alone, "--trust", root_f], "unknown_ca", "chain.test");
    let j = accepted(&sb, &[chain, "--trust", root_f]);
    assert_eq!(j["path"].as_array().unwrap().len(), 3, "{j}");
    assert_eq!(j["path"][1]["subject"], "CN=Verify Intermediate", "{j}");
}

// --- validity periods ---

#[test]
fn expired_leaf_is_expired() {
    let sb = Sandbox::new();
    let root = TestCa::root(ca_params("Verify Root", None));
    let mut p = leaf_params("old.test");
    let now = OffsetDateTime::now_utc();
    p.not_before = now - Duration::days(2);
    p.not_after = now - Duration::days(1);
    let leaf = root.leaf(p);
    let leaf_f = certs(&sb, "leaf.pem", &[&leaf.der]);
    let root_f = certs(&sb, "root.pem", &[&root.der]);
    let j = refused(&sb, &[leaf_f, "--trust", root_f], "expired", "old.test");
    assert_eq!(j["certificate"]["role"], "leaf", "{j}");
}

#[test]
fn leaf_valid_only_from_tomorrow_is_not_yet_valid() {
    let sb = Sandbox::new();
    let root = TestCa::root(ca_params("Verify Root", None));
    let mut p = leaf_params("future.test");
    let now = OffsetDateTime::now_utc();
    p.not_before = now + Duration::days(1);
    p.not_after = now + Duration::days(2);
    let leaf = root.leaf(p);
    let leaf_f = certs(&sb, "leaf.pem", &[&leaf.der]);
    let root_f = certs(&sb, "root.pem", &[&root.der]);
    refused(
        &sb,
        &[leaf_f, "--trust", root_f],
        "not_yet_valid",
        "future.test",
    );
}

#[test]
fn expired_trust_anchor_is_expired_and_named_as_the_anchor() {
    let sb = Sandbox::new();
    // webpki treats anchors as timeless; the verifier must still refuse a
    // root past its notAfter, and blame the root, not the (valid) leaf.
    let root = TestCa::root(expired_ca_params("Stale Root"));
    let leaf = root.leaf(leaf_params("fresh.test"));
    let leaf_f = certs(&sb, "leaf.pem", &[&leaf.der]);
    let root_f = certs(&sb, "root.pem", &[&root.der]);
    let j = refused(&sb, &[leaf_f, "--trust", root_f], "expired", "Stale Root");
    let message = j["message"].as_str().unwrap();
    assert!(message.contains("trust anchor"), "{message}");
    assert_eq!(j["certificate"]["role"], "trust anchor", "{j}");
}

#[test]
fn at_after_the_leaf_not_after_is_expired() {
    let sb = Sandbox::new();
    let root = TestCa::root(ca_params("Verify Root", None));
    // leaf_params: valid from an hour ago for a day.
    let leaf = root.leaf(leaf_params("later.test"));
    let leaf_f = certs(&sb, "leaf.pem", &[&leaf.der]);
    let root_f = certs(&sb, "root.pem", &[&root.der]);
    // Whole seconds, as the JSON `at` echoes them.
    let now = OffsetDateTime::now_utc().replace_nanosecond(0).unwrap();

    // A future --at inside the validity still passes, so the refusal below
    // is about the leaf's notAfter and not about --at being in the future.
    let within = rfc3339(now + Duration::hours(12));
    accepted(&sb, &[leaf_f, "--trust", root_f, "--at", &within]);
    let past_end = rfc3339(now + Duration::days(2));
    let j = refused(
        &sb,
        &[leaf_f, "--trust", root_f, "--at", &past_end],
        "expired",
        "later.test",
    );
    assert_eq!(j["at"], past_end, "{j}");
}

#[test]
fn at_that_is_not_a_time_is_unusable_input() {
    let sb = Sandbox::new();
    let root = TestCa::root(ca_params("Verify Root", None));
    let leaf = root.leaf(leaf_params("at.test"));
    let leaf_f = certs(&sb, "leaf.pem", &[&leaf.der]);
    let root_f = certs(&sb, "root.pem", &[&root.der]);
    let r = verify_json(&sb, &[leaf_f, "--trust", root_f, "--at", "next tuesday"]);
    assert_eq!(r.code, 2, "{}", r.all());
    assert!(r.stderr.contains("--at"), "{}", r.all());
    // No verdict is printed for input that could not be used.
    assert!(!r.stdout.contains("\"valid\""), "{}", r.all());
}

// --- trust ---

#[test]
fn leaf_from_a_ca_not_trusted_is_unknown_ca() {
    let sb = Sandbox::new();
    let issuer = TestCa::root(ca_params("Stranger CA", None));
    let trusted = TestCa::root(ca_params("Verify Root", None));
    let leaf = issuer.leaf(leaf_params("stranger.test"));
    let leaf_f = certs(&sb, "leaf.pem", &[&leaf.der]);
    let trusted_f = certs(&sb, "root.pem", &[&trusted.der]);
    let j = refused(
        &sb,
        &[leaf_f, "--trust", trusted_f],
        "unknown_ca",
        "stranger.test",
    );
    // The message also names the issuer that was not trusted.
    assert!(
        j["message"].as_str().unwrap().contains("Stranger CA"),
        "{j}"
    );
}

#[test]
fn expired_root_beside_the_current_one_does_not_block_a_valid_path() {
    let sb = Sandbox::new();
    // A bundle mid-rotation: the old root has expired, the new one issued
    // the chain. The path must end at the anchor actually used.
    let (root, int) = root_and_intermediate();
    let old = TestCa::root(expired_ca_params("Old Root"));
    let leaf = int.leaf(leaf_params("rotated.test"));
    let chain = certs(&sb, "chain.pem", &[&leaf.der, &int.der]);
    let bundle = certs(&sb, "bundle.pem", &[&old.der, &root.der]);
    let j = accepted(&sb, &[chain, "--trust", bundle]);
    assert_eq!(j["path"][2]["subject"], "CN=Verify Root", "{j}");
}

#[test]
fn leaf_signed_by_another_key_under_the_issuers_name_is_bad_signature() {
    let sb = Sandbox::new();
    let (root, int) = root_and_intermediate();
    let impostor = TestCa::root(int.params.clone());
    let forged = impostor.leaf(leaf_params("forged.test"));
    let chain = certs(&sb, "chain.pem", &[&forged.der, &int.der]);
    let root_f = certs(&sb, "root.pem", &[&root.der]);
    refused(
        &sb,
        &[chain, "--trust", root_f],
        "bad_signature",
        "forged.test",
    );
}

/// Product bug: when webpki reports a signature failure, the verifier blames
/// the first candidate issuer with any fault, even one that is not on the
/// path. An expired old root kept in the trust bundle is then reported as
/// `expired` instead of the forged leaf as `bad_signature`.
#[test]

fn bad_signature_is_not_blamed_on_an_unrelated_expired_anchor() {
    let sb = Sandbox::new();
    let (root, int) = root_and_intermediate();
    let old = TestCa::root(expired_ca_params("Old Root"));
    let impostor = TestCa::root(int.params.clone());
    let forged = impostor.leaf(leaf_params("forged.test"));
    let chain = certs(&sb, "chain.pem", &[&forged.der, &int.der]);
    let bundle = certs(&sb, "bundle.pem", &[&root.der, &old.der]);
    refused(
        &sb,
        &[chain, "--trust", bundle],
        "bad_signature",
        "forged.test",
    );
}

// --- key purposes ---

#[test]
fn client_only_leaf_for_server_purpose_is_bad_eku() {
    let sb = Sandbox::new();
    let root = TestCa::root(ca_params("Verify Root", None));
    let mut p = leaf_params("client.test");
    p.extended_key_usages = vec![ExtendedKeyUsagePurpose::ClientAuth];
    let leaf = root.leaf(p);
    let leaf_f = certs(&sb, "leaf.pem", &[&leaf.der]);
    let root_f = certs(&sb, "root.pem", &[&root.der]);
    accepted(&sb, &[leaf_f, "--trust", root_f, "--purpose", "client"]);
    refused(
        &sb,
        &[leaf_f, "--trust", root_f, "--purpose", "server"],
        "bad_eku",
        "client.test",
    );
}

#[test]
fn leaf_without_eku_extension_is_bad_eku() {
    let sb = Sandbox::new();
    let root = TestCa::root(ca_params("Verify Root", None));
    let mut p = leaf_params("noeku.test");
    // rcgen omits the extension entirely when the list is empty.
    p.extended_key_usages = Vec::new();
    let leaf = root.leaf(p);
    let leaf_f = certs(&sb, "leaf.pem", &[&leaf.der]);
    let root_f = certs(&sb, "root.pem", &[&root.der]);
    // RFC 5280 reads a missing EKU as "any purpose"; this verifier
    // deliberately does not, for every --purpose.
    for purpose in ["any", "server", "client"] {
        refused(
            &sb,
            &[leaf_f, "--trust", root_f, "--purpose", purpose],
            "bad_eku",
            "noeku.test",
        );
    }
}

#[test]
fn ca_certificate_given_as_the_leaf_is_ca_used_as_leaf() {
    let sb = Sandbox::new();
    let (root, int) = root_and_intermediate();
    let int_f = certs(&sb, "int.pem", &[&int.der]);
    let root_f = certs(&sb, "root.pem", &[&root.der]);
    refused(
        &sb,
        &[int_f, "--trust", root_f],
        "ca_used_as_leaf",
        "Verify Intermediate",
    );
}

// --- path shape ---

#[test]
fn intermediate_below_a_pathlen_zero_ca_is_path_len_exceeded() {
    let sb = Sandbox::new();
    // root → int1 (pathLen 0) → int2 → leaf: int1 may sign leaves only.
    let root = TestCa::root(ca_params("Verify Root", None));
    let int1 = root.sub_ca(ca_params("Verify Int One", Some(0)));
    let int2 = int1.sub_ca(ca_params("Verify Int Two", None));
    let leaf = int2.leaf(leaf_params("deep.test"));
    let leaf_f = certs(&sb, "leaf.pem", &[&leaf.der]);
    let inters = certs(&sb, "inters.pem", &[&int2.der, &int1.der]);
    let root_f = certs(&sb, "root.pem", &[&root.der]);
    refused(
        &sb,
        &[leaf_f, "--trust", root_f, "--intermediates", inters],
        "path_len_exceeded",
        "deep.test",
    );
}

#[test]
fn max_depth_zero_with_one_intermediate_is_path_too_long() {
    let sb = Sandbox::new();
    let (root, int) = root_and_intermediate();
    let leaf = int.leaf(leaf_params("depth.test"));
    let chain = certs(&sb, "chain.pem", &[&leaf.der, &int.der]);
    let root_f = certs(&sb, "root.pem", &[&root.der]);
    accepted(&sb, &[chain, "--trust", root_f, "--max-depth", "1"]);
    refused(
        &sb,
        &[chain, "--trust", root_f, "--max-depth", "0"],
        "path_too_long",
        "depth.test",
    );
}

/// An intermediate permitted only DNS names in `allowed.test` (and below).
fn constrained_pki() -> (TestCa, TestCa) {
    let root = TestCa::root(ca_params("Verify Root", None));
    let mut p = ca_params("Constrained Intermediate", Some(0));
    p.name_constraints = Some(NameConstraints {
        permitted_subtrees: vec![GeneralSubtree::DnsName("allowed.test".into())],
        excluded_subtrees: Vec::new(),
    });
    let int = root.sub_ca(p);
    (root, int)
}

#[test]
fn name_outside_permitted_subtree_is_name_constraint_violation() {
    let sb = Sandbox::new();
    let (root, int) = constrained_pki();
    let leaf = int.leaf(leaf_params("evil.test"));
    let chain = certs(&sb, "chain.pem", &[&leaf.der, &int.der]);
    let root_f = certs(&sb, "root.pem", &[&root.der]);
    refused(
        &sb,
        &[chain, "--trust", root_f],
        "name_constraint_violation",
        "evil.test",
    );
}

#[test]
fn name_inside_permitted_subtree_verifies() {
    let sb = Sandbox::new();
    let (root, int) = constrained_pki();
    let leaf = int.leaf(leaf_params("api.allowed.test"));
    let chain = certs(&sb, "chain.pem", &[&leaf.der, &int.der]);
    let root_f = certs(&sb, "root.pem", &[&root.der]);
    accepted(
        &sb,
        &[chain, "--trust", root_f, "--dns", "api.allowed.test"],
    );
}

// --- revocation ---

#[test]
fn leaf_listed_on_its_issuers_crl_is_revoked() {
    let sb = Sandbox::new();
    let (root, int) = root_and_intermediate();
    let leaf = int.leaf(leaf_params("revoked.test"));
    let other = int.leaf(leaf_params("other.test"));
    let chain = certs(&sb, "chain.pem", &[&leaf.der, &int.der]);
    let root_f = certs(&sb, "root.pem", &[&root.der]);
    let next = OffsetDateTime::now_utc() + Duration::days(1);
    let listed = crl_file(&sb, "listed.crl", &int.crl(1, &[&leaf.serial()], next));
    let unlisted = crl_file(&sb, "unlisted.crl", &int.crl(2, &[&other.serial()], next));

    let j = refused(
        &sb,
        &[chain, "--trust", root_f, "--crl", listed],
        "revoked",
        "revoked.test",
    );
    assert_eq!(j["certificate"]["role"], "leaf", "{j}");
    // A valid CRL from the right CA that lists someone else changes nothing.
    accepted(&sb, &[chain, "--trust", root_f, "--crl", unlisted]);
}

#[test]
fn intermediate_listed_on_the_roots_crl_is_revoked_and_named() {
    let sb = Sandbox::new();
    let (root, int) = root_and_intermediate();
    let leaf = int.leaf(leaf_params("below.test"));
    let chain = certs(&sb, "chain.pem", &[&leaf.der, &int.der]);
    let root_f = certs(&sb, "root.pem", &[&root.der]);
    let int_serial = symbolon_pki::certificate_serial(&int.der).unwrap();
    let next = OffsetDateTime::now_utc() + Duration::days(1);
    let crl = crl_file(
        &sb,
        "root.crl",
        &root.crl(1, &[int_serial.as_bytes()], next),
    );
    // The leaf itself is fine; the blame must go to the intermediate.
    let j = refused(
        &sb,
        &[chain, "--trust", root_f, "--crl", crl],
        "revoked",
        "Verify Intermediate",
    );
    assert_eq!(j["certificate"]["role"], "intermediate", "{j}");
}

#[test]
fn crl_from_an_unrelated_ca_is_crl_wrong_issuer() {
    let sb = Sandbox::new();
    let (root, int) = root_and_intermediate();
    let unrelated = TestCa::root(ca_params("Unrelated CA", None));
    let leaf = int.leaf(leaf_params("crl.test"));
    let chain = certs(&sb, "chain.pem", &[&leaf.der, &int.der]);
    let root_f = certs(&sb, "root.pem", &[&root.der]);
    let next = OffsetDateTime::now_utc() + Duration::days(1);
    // It even lists the leaf's serial: a CRL of another CA must neither
    // revoke it nor pass as having checked it.
    let crl = crl_file(&sb, "other.crl", &unrelated.crl(1, &[&leaf.serial()], next));
    refused(
        &sb,
        &[chain, "--trust", root_f, "--crl", crl],
        "crl_wrong_issuer",
        "Unrelated CA",
    );
}

#[test]
fn crl_with_the_issuers_name_but_another_key_is_crl_bad_signature() {
    let sb = Sandbox::new();
    let (root, int) = root_and_intermediate();
    // Same name and parameters as the real intermediate, different key: its
    // CRL names the right issuer but cannot verify with the right key.
    let impostor = TestCa::root(int.params.clone());
    let leaf = int.leaf(leaf_params("crl.test"));
    let chain = certs(&sb, "chain.pem", &[&leaf.der, &int.der]);
    let root_f = certs(&sb, "root.pem", &[&root.der]);
    let next = OffsetDateTime::now_utc() + Duration::days(1);
    // An empty forged CRL is the useful attack: it would hide revocations.
    let crl = crl_file(&sb, "forged.crl", &impostor.crl(7, &[], next));
    refused(
        &sb,
        &[chain, "--trust", root_f, "--crl", crl],
        "crl_bad_signature",
        "Verify Intermediate",
    );
}

#[test]
fn crl_past_its_next_update_is_crl_expired() {
    let sb = Sandbox::new();
    let (root, int) = root_and_intermediate();
    let leaf = int.leaf(leaf_params("crl.test"));
    let chain = certs(&sb, "chain.pem", &[&leaf.der, &int.der]);
    let root_f = certs(&sb, "root.pem", &[&root.der]);
    // testkit CRLs start an hour ago; this one stopped being current 30 min ago.
    let stale = OffsetDateTime::now_utc() - Duration::minutes(30);
    let crl = crl_file(&sb, "stale.crl", &int.crl(1, &[], stale));
    refused(
        &sb,
        &[chain, "--trust", root_f, "--crl", crl],
        "crl_expired",
        "Verify Intermediate",
    );
}

// --- weak algorithms (made with OpenSSL: rcgen refuses to make them) ---

/// Has OpenSSL make a key (`newkey`: the `-newkey`/`-pkeyopt` arguments) and
/// a CSR for `dns`, then sign it as a TLS leaf with `ca` using `digest`
/// (`-sha256`, `-sha1`). Returns the leaf's file name.
fn openssl_leaf(
    sb: &Sandbox,
    openssl: &Path,
    ca: &TestCa,
    newkey: &[&str],
    digest: &str,
    dns: &str,
) -> &'static str {
    testkit::write(sb.dir.path(), "ca.pem", ca.pem());
    testkit::write(sb.dir.path(), "ca.key", ca.key.serialize_pem());
    testkit::write(
        sb.dir.path(),
        "leaf.ext",
        format!(
            "basicConstraints=critical,CA:FALSE\n\
             keyUsage=critical,digitalSignature\n\
             extendedKeyUsage=serverAuth,clientAuth\n\
             subjectAltName=DNS:{dns}\n"
        ),
    );
    let subj = format!("/CN={dns}");
    let mut req = vec!["req", "-new", "-newkey"];
    req.extend_from_slice(newkey);
    req.extend_from_slice(&[
        "-nodes", "-keyout", "leaf.key", "-subj", &subj, "-out", "leaf.csr",
    ]);
    let (code, out) = run_tool(sb, openssl, &req);
    assert_eq!(code, 0, "openssl {req:?}:\n{out}");
    let sign = [
        "x509",
        "-req",
        "-in",
        "leaf.csr",
        "-CA",
        "ca.pem",
        "-CAkey",
        "ca.key",
        "-CAcreateserial",
        "-days",
        "1",
        digest,
        "-extfile",
        "leaf.ext",
        "-out",
        "leaf.pem",
    ];
    let (code, out) = run_tool(sb, openssl, &sign);
    assert_eq!(code, 0, "openssl {sign:?}:\n{out}");
    "leaf.pem"
}

const P256: &[&str] = &["ec", "-pkeyopt", "ec_paramgen_curve:P-256"];

#[test]
fn openssl_made_leaf_with_strong_key_and_sha256_verifies() {
    // The control for the two tests below: the OpenSSL recipe itself makes
    // acceptable leaves, so their refusals come from the key or digest alone.
    let Some(openssl) = tool("openssl") else {
        return;
    };
    let sb = Sandbox::new();
    let root = TestCa::root(ca_params("Verify Root", None));
    let leaf = openssl_leaf(&sb, &openssl, &root, P256, "-sha256", "good.test");
    accepted(
        &sb,
        &[
            leaf,
            "--trust",
            "ca.pem",
            "--purpose",
            "server",
            "--dns",
            "good.test",
        ],
    );
}

#[test]
fn rsa_1024_leaf_is_weak_key() {
    let Some(openssl) = tool("openssl") else {
        return;
    };
    let sb = Sandbox::new();
    let root = TestCa::root(ca_params("Verify Root", None));
    let leaf = openssl_leaf(&sb, &openssl, &root, &["rsa:1024"], "-sha256", "weak.test");
    let j = refused(&sb, &[leaf, "--trust", "ca.pem"], "weak_key", "weak.test");
    assert!(j["message"].as_str().unwrap().contains("1024"), "{j}");
}

#[test]
fn sha1_signed_leaf_is_weak_signature() {
    let Some(openssl) = tool("openssl") else {
        return;
    };
    let sb = Sandbox::new();
    let root = TestCa::root(ca_params("Verify Root", None));
    let leaf = openssl_leaf(&sb, &openssl, &root, P256, "-sha1", "sha1.test");
    let j = refused(
        &sb,
        &[leaf, "--trust", "ca.pem"],
        "weak_signature",
        "sha1.test",
    );
    assert!(j["message"].as_str().unwrap().contains("SHA-1"), "{j}");
}

// --- expected names ---

#[test]
fn dns_name_only_in_the_cn_is_name_mismatch_mentioning_the_cn() {
    let sb = Sandbox::new();
    let root = TestCa::root(ca_params("Verify Root", None));
    // CN=api.test, but the only SAN is other.test.
    let mut p = leaf_params("other.test");
    p.distinguished_name.push(DnType::CommonName, "api.test");
    let leaf = root.leaf(p);
    let leaf_f = certs(&sb, "leaf.pem", &[&leaf.der]);
    let root_f = certs(&sb, "root.pem", &[&root.der]);
    accepted(&sb, &[leaf_f, "--trust", root_f, "--dns", "other.test"]);
    let j = refused(
        &sb,
        &[leaf_f, "--trust", root_f, "--dns", "api.test"],
        "name_mismatch",
        "api.test",
    );
    let message = j["message"].as_str().unwrap();
    assert!(message.contains("CN"), "{message}");
}

#[test]
fn dns_name_not_in_the_certificate_is_name_mismatch() {
    let sb = Sandbox::new();
    let root = TestCa::root(ca_params("Verify Root", None));
    let leaf = root.leaf(leaf_params("api.test"));
    let leaf_f = certs(&sb, "leaf.pem", &[&leaf.der]);
    let root_f = certs(&sb, "root.pem", &[&root.der]);
    let j = refused(
        &sb,
        &[leaf_f, "--trust", root_f, "--dns", "other.test"],
        "name_mismatch",
        "api.test",
    );
    let message = j["message"].as_str().unwrap();
    assert!(message.contains("other.test"), "{message}");
}

/// Product bug: the "appears only in the subject CN" explanation works for
/// DNS names and URIs but never for IP addresses (verify.rs compares the CN
/// with "address 10.1.2.3", the tail of "IP address 10.1.2.3").
#[test]

fn ip_address_only_in_the_cn_is_name_mismatch_mentioning_the_cn() {
    let sb = Sandbox::new();
    let root = TestCa::root(ca_params("Verify Root", None));
    let mut p = leaf_params("ip.test");
    p.distinguished_name.push(DnType::CommonName, "10.1.2.3");
    let leaf = root.leaf(p);
    let leaf_f = certs(&sb, "leaf.pem", &[&leaf.der]);
    let root_f = certs(&sb, "root.pem", &[&root.der]);
    let j = refused(
        &sb,
        &[leaf_f, "--trust", root_f, "--ip", "10.1.2.3"],
        "name_mismatch",
        "10.1.2.3",
    );
    let message = j["message"].as_str().unwrap();
    assert!(message.contains("only in the subject CN"), "{message}");
}

#[test]
fn wildcard_san_matches_exactly_one_label() {
    let sb = Sandbox::new();
    let root = TestCa::root(ca_params("Verify Root", None));
    let mut p = leaf_params("wild.test");
    p.subject_alt_names = vec![SanType::DnsName("*.svc.test".try_into().unwrap())];
    let leaf = root.leaf(p);
    let leaf_f = certs(&sb, "leaf.pem", &[&leaf.der]);
    let root_f = certs(&sb, "root.pem", &[&root.der]);
    accepted(&sb, &[leaf_f, "--trust", root_f, "--dns", "a.svc.test"]);
    for name in ["a.b.svc.test", "svc.test"] {
        refused(
            &sb,
            &[leaf_f, "--trust", root_f, "--dns", name],
            "name_mismatch",
            "wild.test",
        );
    }
}

// --- extensions ---

#[test]
fn unknown_critical_extension_is_refused() {
    let sb = Sandbox::new();
    let root = TestCa::root(ca_params("Verify Root", None));
    let root_f = certs(&sb, "root.pem", &[&root.der]);
    // A private-arc OID holding a DER NULL: nothing can understand it.
    let oid = [1, 3, 6, 1, 4, 1, 55555, 1];
    let make = |critical: bool, dns: &str| {
        let mut ext = CustomExtension::from_oid_content(&oid, vec![0x05, 0x00]);
        ext.set_criticality(critical);
        let mut p = leaf_params(dns);
        p.custom_extensions = vec![ext];
        root.leaf(p)
    };

    // Unknown but non-critical may be ignored (RFC 5280 §4.2)...
    let lax = make(false, "lax.test");
    let lax_f = certs(&sb, "lax.pem", &[&lax.der]);
    accepted(&sb, &[lax_f, "--trust", root_f]);
    // ...unknown and critical may not.
    let strict = make(true, "strict.test");
    let strict_f = certs(&sb, "strict.pem", &[&strict.der]);
    let j = refused(
        &sb,
        &[strict_f, "--trust", root_f],
        "unknown_critical_extension",
        "strict.test",
    );
    assert!(
        j["message"]
            .as_str()
            .unwrap()
            .contains("1.3.6.1.4.1.55555.1"),
        "{j}"
    );
}
