//! The audit trail through the CLI: every change recorded with its actor,
//! and `ca audit verify` naming the record that was edited or deleted
//! directly in the database.

use std::process::Command;

use crate::support::{Sandbox, tool};

fn sql(python: &std::path::Path, sb: &Sandbox, statement: &str) {
    let script = format!(
        "import sqlite3\nc = sqlite3.connect('ca/symbolon.db')\nc.execute({statement:?})\nc.commit()\n"
    );
    let o = Command::new(python)
        .args(["-c", &script])
        .current_dir(sb.dir.path())
        .output()
        .unwrap();
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
}

#[test]
fn issuance_tokens_and_revocation_are_audited_and_tampering_is_named() {
    let Some(python) = tool("python3") else {
        return;
    };
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
    sb.ok(&[
        "ca",
        "token",
        "--dir",
        "ca",
        "--identity",
        "spiffe://example.org/dev",
        "--json",
    ]);
    sb.ok(&[
        "ca",
        "revoke",
        "--dir",
        "ca",
        "--cert",
        "a.crt",
        "--reason",
        "keyCompromise",
    ]);
    let serial = sb.ok(&["cert", "inspect", "a.crt", "--json"]).json()[0]["serial"]
        .as_str()
        .unwrap()
        .to_string();

    let list = sb
        .ok(&["ca", "audit", "list", "--dir", "ca", "--json"])
        .json();
    let actions: Vec<&str> = list
        .as_array()
        .unwrap()
        .iter()
        .map(|r| r["action"].as_str().unwrap())
        .collect();
    assert_eq!(actions, ["issue", "token_create", "revoke"]);
    assert_eq!(list[0]["subject"], serial.as_str());
    assert_eq!(list[0]["actor"], "cli");
    assert_eq!(
        list[0]["detail"]["identities"],
        serde_json::json!(["DNS:a.example.org"])
    );
    assert_eq!(list[2]["detail"]["reason"], "keyCompromise");
    let human = sb
        .ok(&["ca", "audit", "list", "--dir", "ca", "--since", "1h"])
        .stdout;
    assert!(human.contains("token_create"), "{human}");

    // The store alone is enough (no CA keys needed).
    sb.ok(&[
        "ca",
        "audit",
        "verify",
        "--database",
        "sqlite:ca/symbolon.db",
    ]);
    let ok = sb.ok(&["ca", "audit", "verify", "--dir", "ca"]);
    assert!(
        ok.stdout.starts_with("audit chain intact: 3 record(s)"),
        "{}",
        ok.stdout
    );

    // Edited in place: record #2 named.
    sql(
        &python,
        &sb,
        "UPDATE audit SET detail = '{\"identities\":[\"spiffe://example.org/admin\"]}' WHERE seq = 2",
    );
    let r = sb.run(&["ca", "audit", "verify", "--dir", "ca", "--json"]);
    assert_eq!(r.code, 1, "{}", r.all());
    let j = r.json();
    assert_eq!(
        (j["intact"].as_bool(), j["record"].as_i64()),
        (Some(false), Some(2))
    );
    assert!(j["problem"].as_str().unwrap().contains("edited"), "{j}");

    // Deleted: the missing record is named.
    sql(&python, &sb, "DELETE FROM audit WHERE seq = 2");
    let r = sb.run(&["ca", "audit", "verify", "--dir", "ca"]);
    assert_eq!(r.code, 1, "{}", r.all());
    assert!(
        r.stdout.contains("record #2") && r.stdout.contains("deleted"),
        "{}",
        r.stdout
    );
}

#[test]
fn the_newest_record_deleted_is_caught() {
    let Some(python) = tool("python3") else {
        return;
    };
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
    sb.ok(&[
        "ca",
        "issue",
        "--dir",
        "ca",
        "--dns",
        "b.example.org",
        "--out",
        "b",
    ]);
    sql(&python, &sb, "DELETE FROM audit WHERE seq = 2");
    let r = sb.run(&["ca", "audit", "verify", "--dir", "ca"]);
    assert_eq!(r.code, 1, "{}", r.all());
    assert!(
        r.stdout.contains("newest records were deleted"),
        "{}",
        r.stdout
    );
}
