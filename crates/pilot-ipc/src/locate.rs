//! Where the daemon's control socket is, resolved as `pilotctl` resolves it without `--socket`:
//! `$PILOT_SOCKET`, else config `socket` in `<home>/config.json`, else `<home>/pilot.sock`
//! (the home is `$PILOT_HOME`, else `~/.pilot`).

use std::path::PathBuf;

use pilot_core::paths::SOCKET_ENV;
use pilot_core::{ConfigFile, PilotHome};

use crate::client::ClientError;

/// The socket path a daemon started with `pilotctl daemon start` listens on. The config file
/// is read only when `$PILOT_SOCKET` is not set; a corrupt one is an error naming the file.
pub fn socket_path() -> Result<PathBuf, ClientError> {
    if let Some(p) = std::env::var_os(SOCKET_ENV).filter(|v| !v.is_empty()) {
        return Ok(PathBuf::from(p));
    }
    let home = PilotHome::resolve()?;
    let config = ConfigFile::load(home.config_file())?;
    Ok(home.socket_path(None, &config))
}
