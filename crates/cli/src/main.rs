//! `symbolon`: the one binary. Thin glue over the library crates: parse
//! arguments, load and validate configuration, call the library, print.
#![forbid(unsafe_code)]

mod ca_dir;
mod commands;
mod output;

use std::process::ExitCode;

use clap::Parser;

/// What a command's failure means for the exit code.
#[derive(Debug)]
pub enum Failure {
    /// The answer is "no" (e.g. a certificate does not verify): exit 1.
    Negative,
    /// The input or environment is unusable: exit 2, message on stderr.
    Error(anyhow::Error),
}

impl<E: Into<anyhow::Error>> From<E> for Failure {
    fn from(e: E) -> Self {
        Failure::Error(e.into())
    }
}

pub type CmdResult = Result<(), Failure>;

/// `bail!` for command functions: return an input/environment error (exit 2).
#[macro_export]
macro_rules! fail {
    ($($t:tt)*) => {
        return Err($crate::Failure::Error(anyhow::anyhow!($($t)*)))
    };
}

fn main() -> ExitCode {
    // `symbolon … | head` closes stdout early; Rust's print macros then
    // panic. Exit quietly as a SIGPIPE'd process would (128 + 13) instead of
    // printing a panic for what is normal shell use.
    let default_hook = std::panic::take_hook();
    std::panic::set_hook(Box::new(move |info| {
        let msg = info
            .payload()
            .downcast_ref::<String>()
            .map(String::as_str)
            .or_else(|| info.payload().downcast_ref::<&str>().copied())
            .unwrap_or("");
        if msg.contains("failed printing to stdout") && msg.contains("Broken pipe") {
            std::process::exit(141);
        }
        default_hook(info);
    }));
    let cli = commands::Cli::parse();
    let runtime = match tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
    {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("error: cannot start the async runtime: {e}");
            return ExitCode::from(2);
        }
    };
    match runtime.block_on(commands::run(cli)) {
        Ok(()) => ExitCode::SUCCESS,
        Err(Failure::Negative) => ExitCode::from(1),
        Err(Failure::Error(e)) => {
            eprintln!("error: {e:#}");
            ExitCode::from(2)
        }
    }
}
