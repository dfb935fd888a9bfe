//! Where a command finds things: the pilot home, its `config.json` and the control socket.

use std::path::{Path, PathBuf};

use pilot_core::{ConfigFile, PilotHome};

use crate::output::CliError;

/// The global flags every command sees.
#[derive(Debug, Clone, Default)]
pub struct Context {
    pub json: bool,
    pub socket_flag: Option<PathBuf>,
}

/// The pilot home with its loaded config and the socket path they give.
#[derive(Debug)]
pub struct Env {
    pub home: PilotHome,
    pub config: ConfigFile,
    pub socket: PathBuf,
}

impl Context {
    pub fn home(&self) -> Result<PilotHome, CliError> {
        Ok(PilotHome::resolve()?)
    }

    /// Resolves the home and loads `config.json` (a corrupt file is a `config_error`).
    pub fn env(&self) -> Result<Env, CliError> {
        let home = self.home()?;
        let config = ConfigFile::load(home.config_file())?;
        let socket = home.socket_path(self.socket_flag.as_deref(), &config);
        Ok(Env {
            home,
            config,
            socket,
        })
    }

    /// The socket path alone. The config is read only when neither `--socket` nor
    /// `$PILOT_SOCKET` names the socket, so a broken config does not stop commands that
    /// do not need it.
    pub fn socket(&self) -> Result<PathBuf, CliError> {
        if let Some(p) = &self.socket_flag {
            return Ok(p.clone());
        }
        Ok(pilot_ipc::socket_path()?)
    }
}

/// A path for messages.
pub fn show(path: &Path) -> String {
    path.display().to_string()
}
