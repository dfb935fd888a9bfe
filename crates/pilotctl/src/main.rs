//! pilotctl: parses the command line, runs the command, prints its result or error.
//!
//! Exit status: 0 on success; 1 on any error (including a bad command line), and for
//! `daemon status --check` when the daemon is not running.

mod cli;
mod commands;
mod context;
mod lines;
mod output;
mod process;
mod settings;
mod verify;

use std::ffi::OsString;
use std::process::ExitCode;

use clap::error::ErrorKind;
use clap::Parser;

use crate::cli::Cli;
use crate::context::Context;
use crate::output::{code, CliError, Printer};

fn main() -> ExitCode {
    let args: Vec<OsString> = std::env::args_os().collect();
    let cli = match Cli::try_parse_from(&args) {
        Ok(cli) => cli,
        Err(e) => return ExitCode::from(usage_error(e, wants_json(&args))),
    };
    let printer = Printer { json: cli.json };
    let ctx = Context {
        json: cli.json,
        // Absolute, so the daemon and its `info` name the same socket whatever their cwd.
        socket_flag: cli
            .socket
            .as_deref()
            .map(|p| std::path::absolute(p).unwrap_or_else(|_| p.to_path_buf())),
    };
    let runtime = match tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
    {
        Ok(rt) => rt,
        Err(e) => {
            let err = CliError::io(format!("cannot start the async runtime: {e}"));
            return ExitCode::from(printer.fail(&err));
        }
    };
    let status = match runtime.block_on(commands::run(&ctx, &cli.command)) {
        Ok(out) => printer.finish(out),
        Err(err) => printer.fail(&err),
    };
    ExitCode::from(status)
}

/// Whether `--json` was given, for errors found before the command line parsed.
fn wants_json(args: &[OsString]) -> bool {
    args.iter()
        .skip(1)
        .take_while(|a| *a != "--")
        .any(|a| a == "--json")
}

/// Prints help and version as clap does (exit 0); anything else is an `invalid_argument`
/// error, exit 1.
fn usage_error(e: clap::Error, json: bool) -> u8 {
    match e.kind() {
        ErrorKind::DisplayHelp | ErrorKind::DisplayVersion => {
            let _ = e.print();
            0
        }
        _ if json => {
            let rendered = e.render().to_string();
            let message = rendered
                .lines()
                .next()
                .unwrap_or_default()
                .trim_start_matches("error: ")
                .to_string();
            Printer { json: true }.fail(&CliError::new(code::INVALID_ARGUMENT, message))
        }
        _ => {
            let _ = e.print();
            1
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn json_is_spotted_before_parsing() {
        let a = |v: &[&str]| v.iter().map(OsString::from).collect::<Vec<_>>();
        assert!(wants_json(&a(&["pilotctl", "bogus", "--json"])));
        assert!(!wants_json(&a(&["pilotctl", "bogus"])));
        assert!(!wants_json(&a(&["pilotctl", "emit", "--", "--json"])));
    }
}
