//! `completions` and `man`: shell completion scripts (clap_complete) and roff man pages
//! (clap_mangen), both generated from the clap definitions in `cli.rs`, so they never drift
//! from the real command line.

use std::path::{Path, PathBuf};

use clap::CommandFactory;
use serde::Serialize;

use crate::cli::{Cli, Shell};
use crate::context::show;
use crate::output::{CliError, Output};

#[derive(Debug, Serialize)]
struct Script {
    shell: &'static str,
    script: String,
}

/// `completions <shell>`: the script on stdout.
pub fn completions(shell: Shell) -> Result<Output, CliError> {
    let script = completion_script(shell);
    let name = match shell {
        Shell::Bash => "bash",
        Shell::Zsh => "zsh",
        Shell::Fish => "fish",
    };
    let text = script.trim_end().to_string();
    Ok(Output::report(
        &Script {
            shell: name,
            script,
        },
        text,
    ))
}

/// The completion script for `shell`.
pub fn completion_script(shell: Shell) -> String {
    let mut cmd = Cli::command();
    let mut out = Vec::new();
    let bin = cmd.get_name().to_string();
    match shell {
        Shell::Bash => clap_complete::generate(clap_complete::Shell::Bash, &mut cmd, bin, &mut out),
        Shell::Zsh => clap_complete::generate(clap_complete::Shell::Zsh, &mut cmd, bin, &mut out),
        Shell::Fish => clap_complete::generate(clap_complete::Shell::Fish, &mut cmd, bin, &mut out),
    }
    String::from_utf8_lossy(&out).into_owned()
}

#[derive(Debug, Serialize)]
struct Page {
    page: String,
}

#[derive(Debug, Serialize)]
struct Written {
    dir: String,
    files: Vec<String>,
}

/// `man [--dir DIR]`: pilotctl.1 on stdout, or every page written to DIR.
pub fn man(dir: Option<&Path>) -> Result<Output, CliError> {
    match dir {
        None => {
            let page = main_page()?;
            let text = page.trim_end().to_string();
            Ok(Output::report(&Page { page }, text))
        }
        Some(dir) => {
            let files = write_pages(dir)
                .map_err(|e| CliError::io(format!("writing man pages to {}: {e}", show(dir))))?;
            let written = Written {
                dir: show(dir),
                files: files.iter().map(|p| show(p)).collect(),
            };
            let text = format!(
                "wrote {} man pages to {}\ntry: man -l {}",
                files.len(),
                written.dir,
                show(&dir.join("pilotctl.1"))
            );
            Ok(Output::report(&written, text))
        }
    }
}

/// The roff source of pilotctl(1).
pub fn main_page() -> Result<String, CliError> {
    let mut out = Vec::new();
    clap_mangen::Man::new(Cli::command())
        .render(&mut out)
        .map_err(|e| CliError::io(e.to_string()))?;
    Ok(String::from_utf8_lossy(&out).into_owned())
}

/// Writes pilotctl.1 and a page per subcommand (`pilotctl-daemon-start.1`, ...) into `dir`,
/// creating it; returns the files written, pilotctl.1 first.
pub fn write_pages(dir: &Path) -> std::io::Result<Vec<PathBuf>> {
    fn each(cmd: &clap::Command, dir: &Path, out: &mut Vec<PathBuf>) -> std::io::Result<()> {
        out.push(clap_mangen::Man::new(cmd.clone()).generate_to(dir)?);
        for sub in cmd.get_subcommands().filter(|s| !s.is_hide_set()) {
            each(sub, dir, out)?;
        }
        Ok(())
    }
    std::fs::create_dir_all(dir)?;
    // Built, so each subcommand carries its full name (`pilotctl-daemon-start`).
    let mut cmd = Cli::command().disable_help_subcommand(true);
    cmd.build();
    let mut files = Vec::new();
    each(&cmd, dir, &mut files)?;
    Ok(files)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_script_names_the_subcommands() {
        for shell in [Shell::Bash, Shell::Zsh, Shell::Fish] {
            let s = completion_script(shell);
            for sub in [
                "daemon",
                "set-webhook",
                "install-service",
                "config",
                "completions",
            ] {
                assert!(s.contains(sub), "{shell:?} script lacks {sub}");
            }
        }
    }

    #[test]
    fn pages_for_every_subcommand() {
        let tmp = tempfile::tempdir().unwrap();
        let files = write_pages(tmp.path()).unwrap();
        let names: Vec<String> = files
            .iter()
            .map(|p| p.file_name().unwrap().to_string_lossy().into_owned())
            .collect();
        assert_eq!(names[0], "pilotctl.1");
        for n in [
            "pilotctl-daemon-start.1",
            "pilotctl-daemon-install-service.1",
            "pilotctl-webhook-secret-rotate.1",
            "pilotctl-config.1",
        ] {
            assert!(names.contains(&n.to_string()), "{n} missing from {names:?}");
        }
        let page = std::fs::read_to_string(tmp.path().join("pilotctl-config.1")).unwrap();
        assert!(page.starts_with(".ie \\n(.g .ds Aq"), "{}", &page[..80]);
        assert!(page.contains(".TH pilotctl-config 1"), "{page}");
    }
}
