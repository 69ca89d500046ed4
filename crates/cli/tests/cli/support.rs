//! Helpers shared by the CLI tests: run the real binary in a temp directory,
//! find external tools (skipping, or failing under SYMBOLON_REQUIRE_ALL=1).

use std::path::{Path, PathBuf};
use std::process::{Command, Output};

pub const PASSPHRASE: &str = "correct horse battery staple";

/// A temp directory with helpers to run `symbolon` inside it.
pub struct Sandbox {
    pub dir: tempfile::TempDir,
}

impl Sandbox {
    pub fn new() -> Sandbox {
        Sandbox {
            dir: tempfile::tempdir().unwrap(),
        }
    }

    pub fn path(&self, rel: &str) -> PathBuf {
        self.dir.path().join(rel)
    }

    pub fn cmd(&self, args: &[&str]) -> Command {
        let mut c = Command::new(env!("CARGO_BIN_EXE_symbolon"));
        c.args(args).current_dir(self.dir.path());
        c.env_remove("SYMBOLON_ROOT_PASSPHRASE")
            .env_remove("SYMBOLON_CA_DIR");
        c
    }

    pub fn run(&self, args: &[&str]) -> Run {
        Run::from(self.cmd(args).output().unwrap(), args)
    }

    /// Runs and asserts exit 0.
    pub fn ok(&self, args: &[&str]) -> Run {
        let r = self.run(args);
        assert_eq!(r.code, 0, "symbolon {args:?} failed:\n{}", r.all());
        r
    }

    /// `ca init` of a test CA in `ca/` with an encrypted root key.
    pub fn init_ca(&self, extra: &[&str]) -> Run {
        std::fs::write(self.path("pass.txt"), format!("{PASSPHRASE}\n")).unwrap();
        let mut args = vec![
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
        args.extend_from_slice(extra);
        self.ok(&args)
    }

    /// `ca init --dir DIR` with a plaintext root key and trust domain
    /// example.org, plus `extra` arguments.
    pub fn init_plain_ca(&self, dir: &str, extra: &[&str]) -> Run {
        let mut args = vec![
            "ca",
            "init",
            "--dir",
            dir,
            "--insecure-plaintext-root-key",
            "--trust-domain",
            "example.org",
        ];
        args.extend_from_slice(extra);
        self.ok(&args)
    }

    /// Lists every file under the sandbox (relative paths, sorted).
    pub fn files(&self) -> Vec<String> {
        fn walk(base: &Path, dir: &Path, out: &mut Vec<String>) {
            for e in std::fs::read_dir(dir).unwrap() {
                let p = e.unwrap().path();
                if p.is_dir() {
                    walk(base, &p, out);
                } else {
                    out.push(p.strip_prefix(base).unwrap().display().to_string());
                }
            }
        }
        let mut out = Vec::new();
        walk(self.dir.path(), self.dir.path(), &mut out);
        out.sort();
        out
    }
}

pub struct Run {
    pub code: i32,
    pub stdout: String,
    pub stderr: String,
}

impl Run {
    fn from(o: Output, _args: &[&str]) -> Run {
        Run {
            code: o.status.code().unwrap_or(-1),
            stdout: String::from_utf8_lossy(&o.stdout).into_owned(),
            stderr: String::from_utf8_lossy(&o.stderr).into_owned(),
        }
    }

    pub fn all(&self) -> String {
        format!("--- stdout\n{}--- stderr\n{}", self.stdout, self.stderr)
    }

    pub fn json(&self) -> serde_json::Value {
        serde_json::from_str(&self.stdout)
            .unwrap_or_else(|e| panic!("not JSON ({e}):\n{}", self.all()))
    }
}

/// The path of an external tool, or `None` (test skips) when it is missing
/// and SYMBOLON_REQUIRE_ALL is not set. Under SYMBOLON_REQUIRE_ALL=1 a
/// missing tool fails the test, so CI cannot pass by skipping.
pub fn tool(name: &str) -> Option<PathBuf> {
    let found = std::env::var_os("PATH").and_then(|paths| {
        std::env::split_paths(&paths)
            .map(|d| d.join(name))
            .find(|p| p.is_file())
    });
    if found.is_none() {
        if std::env::var("SYMBOLON_REQUIRE_ALL").is_ok_and(|v| v == "1") {
            panic!(
                "required tool `{name}` is not installed (SYMBOLON_REQUIRE_ALL=1); run .ci/run or install it"
            );
        }
        eprintln!("SKIPPED: `{name}` is not installed");
    }
    found
}

/// Runs an external tool in the sandbox and returns (exit code, stdout+stderr).
pub fn run_tool(sb: &Sandbox, tool: &Path, args: &[&str]) -> (i32, String) {
    let o = Command::new(tool)
        .args(args)
        .current_dir(sb.dir.path())
        .output()
        .unwrap();
    (
        o.status.code().unwrap_or(-1),
        format!(
            "{}{}",
            String::from_utf8_lossy(&o.stdout),
            String::from_utf8_lossy(&o.stderr)
        ),
    )
}
