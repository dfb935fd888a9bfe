//! `daemon install-service`: a systemd user unit that runs `pilot-daemon` in the foreground
//! (systemd supervises it; its log lines go from stderr to the journal).
//!
//! The unit runs the absolute path of the `pilot-daemon` `daemon start` would run, with the
//! pilot home (`$PILOT_HOME`), `$PILOT_SOCKET` and `--socket` of this invocation, and restarts
//! it when it fails. It goes to `$XDG_CONFIG_HOME/systemd/user/pilot-daemon.service` (default
//! `~/.config`), written atomically; a different unit already there is kept unless `--force`.

use std::path::{Path, PathBuf};

use pilot_core::paths::{HOME_ENV, SOCKET_ENV};
use serde::Serialize;

use crate::cli::InstallServiceArgs;
use crate::context::{show, Context};
use crate::output::{code, CliError, Output};
use crate::process;

/// The unit's file name.
pub const UNIT_NAME: &str = "pilot-daemon.service";
/// What to run once the unit is written.
pub const NEXT_STEP: &str =
    "systemctl --user daemon-reload && systemctl --user enable --now pilot-daemon";

#[derive(Debug, Serialize)]
struct Installed {
    path: String,
    unit: String,
    /// false with --print, and when the same unit was already there.
    written: bool,
    next: &'static str,
}

/// `daemon install-service [--print] [--force]`.
pub fn install(ctx: &Context, args: &InstallServiceArgs) -> Result<Output, CliError> {
    let daemon = process::locate_daemon().map_err(|m| CliError::new(code::START_FAILED, m))?;
    let daemon = std::path::absolute(&daemon).unwrap_or(daemon);
    let mut env = Vec::new();
    for var in [HOME_ENV, SOCKET_ENV] {
        if let Some(v) = std::env::var_os(var).filter(|v| !v.is_empty()) {
            let v = PathBuf::from(v);
            env.push((var, std::path::absolute(&v).unwrap_or(v)));
        }
    }
    let unit = unit_text(&daemon, &env, ctx.socket_flag.as_deref())?;
    let path = unit_path()?;
    let mut installed = Installed {
        path: show(&path),
        unit,
        written: false,
        next: NEXT_STEP,
    };
    if args.print {
        let text = installed.unit.trim_end().to_string();
        return Ok(Output::report(&installed, text));
    }
    let text = match std::fs::read_to_string(&path) {
        Ok(old) if old == installed.unit => {
            format!("{} is already this unit\nnext: {NEXT_STEP}", installed.path)
        }
        Ok(_) if !args.force => {
            return Err(CliError::new(
                code::ALREADY_EXISTS,
                format!(
                    "{} exists and differs from the unit pilotctl would write; see it with \
                     `pilotctl daemon install-service --print`, replace it with --force",
                    installed.path
                ),
            ))
        }
        _ => {
            write_unit(&path, &installed.unit)
                .map_err(|e| CliError::io(format!("cannot write {}: {e}", installed.path)))?;
            installed.written = true;
            format!("wrote {}\nnext: {NEXT_STEP}", installed.path)
        }
    };
    Ok(Output::report(&installed, text))
}

/// `$XDG_CONFIG_HOME/systemd/user/pilot-daemon.service`, with `~/.config` when the variable is
/// unset, empty or relative (as the XDG spec says).
pub fn unit_path() -> Result<PathBuf, CliError> {
    let base = match std::env::var_os("XDG_CONFIG_HOME")
        .map(PathBuf::from)
        .filter(|p| p.is_absolute())
    {
        Some(dir) => dir,
        None => std::env::var_os("HOME")
            .filter(|h| !h.is_empty())
            .map(|h| PathBuf::from(h).join(".config"))
            .ok_or_else(|| CliError::io("cannot find the config directory: set HOME"))?,
    };
    Ok(base.join("systemd/user").join(UNIT_NAME))
}

fn write_unit(path: &Path, unit: &str) -> std::io::Result<()> {
    if let Some(dir) = path.parent() {
        std::fs::create_dir_all(dir)?;
    }
    pilot_core::fsutil::write_atomic(path, unit.as_bytes())
}

/// The unit: `pilot-daemon` in the foreground, logging to stderr (the journal), restarted on
/// failure, with `env` as `Environment=` lines and `--socket` when given.
pub fn unit_text(
    daemon: &Path,
    env: &[(&str, PathBuf)],
    socket: Option<&Path>,
) -> Result<String, CliError> {
    let mut exec = vec![word(daemon, Expand::Exec)?];
    if let Some(s) = socket {
        exec.push("--socket".into());
        exec.push(word(s, Expand::Exec)?);
    }
    let mut environment = String::new();
    for (var, value) in env {
        let assignment = PathBuf::from(format!("{var}={}", value.display()));
        environment.push_str(&format!(
            "Environment={}\n",
            word(&assignment, Expand::Environment)?
        ));
    }
    Ok(format!(
        "# Written by `pilotctl daemon install-service`.\n\
         [Unit]\n\
         Description=pilot daemon: the node's event bus and webhook delivery\n\
         Documentation=man:pilotctl(1)\n\
         \n\
         [Service]\n\
         Type=exec\n\
         ExecStart={}\n\
         {environment}\
         Restart=on-failure\n\
         RestartSec=2s\n\
         \n\
         [Install]\n\
         WantedBy=default.target\n",
        exec.join(" ")
    ))
}

#[derive(Clone, Copy, PartialEq, Eq)]
enum Expand {
    /// `ExecStart=`: `%` specifiers and `$VAR` are expanded.
    Exec,
    /// `Environment=`: only `%` specifiers are.
    Environment,
}

/// One argument as systemd reads it back: specifiers (and in `ExecStart=`, `$`) escaped, and
/// double-quoted with C escapes when it holds spaces, quotes or backslashes.
fn word(path: &Path, expand: Expand) -> Result<String, CliError> {
    let s = path
        .to_str()
        .ok_or_else(|| CliError::invalid_argument(format!("{} is not UTF-8", path.display())))?;
    if s.chars().any(char::is_control) {
        return Err(CliError::invalid_argument(format!(
            "{s:?} holds a control character a unit file cannot carry"
        )));
    }
    let mut out = s.replace('%', "%%");
    if expand == Expand::Exec {
        out = out.replace('$', "$$");
    }
    if out.is_empty() || out.contains([' ', '"', '\'', '\\', ';']) {
        out = format!("\"{}\"", out.replace('\\', "\\\\").replace('"', "\\\""));
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_unit_runs_the_daemon_with_the_home() {
        let unit = unit_text(
            Path::new("/opt/pilot/bin/pilot-daemon"),
            &[("PILOT_HOME", PathBuf::from("/srv/pilot"))],
            None,
        )
        .unwrap();
        assert!(
            unit.contains("\nExecStart=/opt/pilot/bin/pilot-daemon\n"),
            "{unit}"
        );
        assert!(
            unit.contains("\nEnvironment=PILOT_HOME=/srv/pilot\n"),
            "{unit}"
        );
        assert!(unit.contains("\nRestart=on-failure\n"), "{unit}");
        assert!(unit.contains("\nWantedBy=default.target\n"), "{unit}");
        let plain = unit_text(Path::new("/b/pilot-daemon"), &[], None).unwrap();
        assert!(!plain.contains("Environment="), "{plain}");
    }

    #[test]
    fn awkward_paths_are_quoted_for_systemd() {
        let unit = unit_text(
            Path::new("/opt/my apps/100%/pilot-daemon"),
            &[("PILOT_HOME", PathBuf::from("/home/a b/$x"))],
            Some(Path::new("/run/$USER/p.sock")),
        )
        .unwrap();
        assert!(
            unit.contains(
                "ExecStart=\"/opt/my apps/100%%/pilot-daemon\" --socket /run/$$USER/p.sock\n"
            ),
            "{unit}"
        );
        assert!(
            unit.contains("Environment=\"PILOT_HOME=/home/a b/$x\"\n"),
            "{unit}"
        );
        assert!(word(Path::new("/a\nb"), Expand::Exec).is_err());
        assert_eq!(
            word(Path::new("/a\"b\\c"), Expand::Exec).unwrap(),
            "\"/a\\\"b\\\\c\""
        );
    }
}
