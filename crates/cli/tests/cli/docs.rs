//! Generated documentation: the committed command reference matches the
//! binary, and completions and man pages are produced for every command.

use crate::support::Sandbox;

#[test]
fn docs_cli_md_matches_the_binary() {
    let sb = Sandbox::new();
    let generated = sb.ok(&["reference"]).stdout;
    let path = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../../docs/cli.md");
    let committed = std::fs::read_to_string(&path).unwrap();
    assert!(
        generated == committed,
        "docs/cli.md is out of date; regenerate it with `cargo run -- reference > docs/cli.md`"
    );
    for cmd in [
        "symbolon quickstart",
        "symbolon ca serve",
        "symbolon cert verify",
        "symbolon gateway",
        "symbolon agent",
    ] {
        assert!(
            committed.contains(&format!("## `{cmd}`")),
            "{cmd} missing from the reference"
        );
    }
}

#[test]
fn completions_for_every_shell_name_the_commands() {
    let sb = Sandbox::new();
    for shell in ["bash", "zsh", "fish", "elvish", "powershell"] {
        let out = sb.ok(&["completions", shell]).stdout;
        for word in ["quickstart", "enroll", "gateway", "revoke"] {
            assert!(out.contains(word), "{shell} completions lack {word}");
        }
    }
    let r = sb.run(&["completions", "tcsh"]);
    assert_eq!(r.code, 2, "{}", r.all());
}

#[test]
fn man_pages_for_every_command() {
    let sb = Sandbox::new();
    let top = sb.ok(&["man"]).stdout;
    assert!(
        top.starts_with(".ie") || top.contains(".TH symbolon"),
        "{}",
        &top[..top.len().min(200)]
    );
    sb.ok(&["man", "--out", "man"]);
    for page in [
        "symbolon.1",
        "symbolon-ca-init.1",
        "symbolon-ca-serve.1",
        "symbolon-cert-verify.1",
        "symbolon-gateway.1",
        "symbolon-quickstart.1",
    ] {
        let text = std::fs::read_to_string(sb.path(&format!("man/{page}")))
            .unwrap_or_else(|_| panic!("{page} missing"));
        assert!(text.contains(".TH"), "{page} is not a man page");
    }
}
