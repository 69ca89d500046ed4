//! Documentation generated from the command definitions, so it cannot
//! drift from the binary: shell completions, man pages and the Markdown
//! command reference in `docs/cli.md`.

use std::path::PathBuf;

use anyhow::Context;
use clap::{Args, CommandFactory};

use crate::CmdResult;

#[derive(Debug, Args)]
pub struct CompletionsArgs {
    /// bash, zsh, fish, elvish or powershell.
    shell: clap_complete::Shell,
}

pub fn completions(args: CompletionsArgs) -> CmdResult {
    let mut cmd = super::Cli::command();
    clap_complete::generate(args.shell, &mut cmd, "symbolon", &mut std::io::stdout());
    Ok(())
}

#[derive(Debug, Args)]
pub struct ManArgs {
    /// Write one page per command (symbolon.1, symbolon-ca-init.1, …) into
    /// this directory; without it, print the top-level page.
    #[arg(long, value_name = "DIR")]
    out: Option<PathBuf>,
}

pub fn man(args: ManArgs) -> CmdResult {
    let cmd = super::Cli::command();
    match args.out {
        None => clap_mangen::Man::new(cmd).render(&mut std::io::stdout())?,
        Some(dir) => {
            std::fs::create_dir_all(&dir)
                .with_context(|| format!("{}: cannot create", dir.display()))?;
            clap_mangen::generate_to(cmd, &dir)
                .with_context(|| format!("{}: cannot write man pages", dir.display()))?;
            println!("Wrote man pages to {}", dir.display());
        }
    }
    Ok(())
}

fn walk(cmd: &clap::Command, path: &str, out: &mut String) {
    if cmd.is_hide_set() {
        return;
    }
    // Env values are hidden so the reference does not depend on the shell
    // that generated it.
    let mut c = cmd
        .clone()
        .bin_name(path)
        .term_width(100)
        .mut_args(|a| a.hide_env_values(true));
    out.push_str(&format!(
        "## `{path}`\n\n```text\n{}\n```\n\n",
        c.render_long_help().to_string().trim_end()
    ));
    for sub in cmd.get_subcommands() {
        if sub.get_name() == "help" {
            continue;
        }
        walk(sub, &format!("{path} {}", sub.get_name()), out);
    }
}

/// The Markdown reference of every command (docs/cli.md).
pub fn reference_markdown() -> String {
    let mut out = String::from(
        "# Command reference\n\nGenerated from the command definitions by `symbolon reference`; a test fails if this file and the binary disagree.\n\n",
    );
    walk(&super::Cli::command(), "symbolon", &mut out);
    out
}

pub fn reference() -> CmdResult {
    print!("{}", reference_markdown());
    Ok(())
}
