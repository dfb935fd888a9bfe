//! Reading the small files users name (auth tokens, secrets, the secret store) without letting
//! a hostile path wedge the reader: the file is opened non-blocking (a FIFO with no writer
//! cannot hold the open), its type is checked on the open descriptor (a directory, FIFO,
//! device or socket is refused by name), and at most `limit` bytes are read (a larger file is
//! refused, not truncated). Group- or world-readable files are reported so callers can refuse
//! or tighten them, as ssh does with keys.

use std::fs::{File, OpenOptions};
use std::io::{self, Read};
use std::os::unix::fs::{FileTypeExt, MetadataExt, OpenOptionsExt};
use std::path::{Path, PathBuf};

/// The most a user-named small file may hold.
pub const MAX_SMALL_FILE: u64 = 64 * 1024;

/// Why a small file could not be read.
#[derive(Debug, thiserror::Error)]
pub enum SmallFileError {
    #[error("{path}: {source}")]
    Io { path: PathBuf, source: io::Error },
    #[error("{path}: is {kind}, not a regular file")]
    NotRegular { path: PathBuf, kind: &'static str },
    #[error("{path}: is larger than {limit} bytes")]
    TooLarge { path: PathBuf, limit: u64 },
    #[error("{path}: is not UTF-8 text")]
    NotUtf8 { path: PathBuf },
}

impl SmallFileError {
    /// Whether the file does not exist.
    pub fn is_not_found(&self) -> bool {
        matches!(self, SmallFileError::Io { source, .. } if source.kind() == io::ErrorKind::NotFound)
    }
}

/// A small file's bytes and whether others than its owner may read it.
#[derive(Debug)]
pub struct SmallFile {
    pub bytes: Vec<u8>,
    /// The file's permission bits (`mode & 0o777`).
    pub mode: u32,
    /// The open file (to tighten its mode through the descriptor, never the path).
    file: File,
}

impl SmallFile {
    /// Whether group or others may read or write it.
    pub fn is_shared(&self) -> bool {
        self.mode & 0o077 != 0
    }

    /// Makes it owner-only (0600) through the open descriptor.
    pub fn make_private(&self) -> io::Result<()> {
        use std::os::unix::fs::PermissionsExt;
        self.file
            .set_permissions(std::fs::Permissions::from_mode(self.mode & 0o700 | 0o600))
    }

    /// The bytes as UTF-8 text.
    pub fn text(self, path: &Path) -> Result<String, SmallFileError> {
        String::from_utf8(self.bytes).map_err(|_| SmallFileError::NotUtf8 { path: path.into() })
    }
}

/// The name of a file type that is not a regular file.
fn kind_of(t: std::fs::FileType) -> &'static str {
    if t.is_dir() {
        "a directory"
    } else if t.is_fifo() {
        "a FIFO"
    } else if t.is_char_device() || t.is_block_device() {
        "a device"
    } else if t.is_socket() {
        "a socket"
    } else {
        "not a regular file"
    }
}

/// Reads the regular file at `path`, at most `limit` bytes, without ever blocking on its open.
pub fn read(path: &Path, limit: u64) -> Result<SmallFile, SmallFileError> {
    let io_err = |source| SmallFileError::Io {
        path: path.into(),
        source,
    };
    let file = OpenOptions::new()
        .read(true)
        .custom_flags(libc::O_NONBLOCK | libc::O_CLOEXEC)
        .open(path)
        .map_err(io_err)?;
    let meta = file.metadata().map_err(io_err)?;
    if !meta.file_type().is_file() {
        return Err(SmallFileError::NotRegular {
            path: path.into(),
            kind: kind_of(meta.file_type()),
        });
    }
    if meta.len() > limit {
        return Err(SmallFileError::TooLarge {
            path: path.into(),
            limit,
        });
    }
    let mut bytes = Vec::with_capacity(meta.len() as usize);
    (&file)
        .take(limit + 1)
        .read_to_end(&mut bytes)
        .map_err(io_err)?;
    if bytes.len() as u64 > limit {
        return Err(SmallFileError::TooLarge {
            path: path.into(),
            limit,
        });
    }
    Ok(SmallFile {
        bytes,
        mode: meta.mode() & 0o777,
        file,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::unix::fs::PermissionsExt;
    use std::time::{Duration, Instant};

    #[test]
    fn fifos_directories_devices_and_large_files_are_refused_at_once() {
        let tmp = tempfile::tempdir().unwrap();
        let fifo = tmp.path().join("fifo");
        let c = std::ffi::CString::new(fifo.to_str().unwrap()).unwrap();
        // SAFETY: a valid NUL-terminated path.
        assert_eq!(unsafe { libc::mkfifo(c.as_ptr(), 0o600) }, 0);
        let started = Instant::now();
        let e = read(&fifo, MAX_SMALL_FILE).unwrap_err();
        assert!(e.to_string().contains("is a FIFO"), "{e}");
        assert!(
            started.elapsed() < Duration::from_secs(1),
            "the open blocked"
        );
        let e = read(tmp.path(), MAX_SMALL_FILE).unwrap_err();
        assert!(e.to_string().contains("is a directory"), "{e}");
        let e = read(Path::new("/dev/zero"), MAX_SMALL_FILE).unwrap_err();
        assert!(e.to_string().contains("is a device"), "{e}");
        let big = tmp.path().join("big");
        std::fs::write(&big, vec![b'x'; 70_000]).unwrap();
        let e = read(&big, MAX_SMALL_FILE).unwrap_err();
        assert!(e.to_string().contains("larger than 65536 bytes"), "{e}");
        assert!(read(&tmp.path().join("none"), 10)
            .unwrap_err()
            .is_not_found());
    }

    #[test]
    fn shared_files_are_reported_and_can_be_made_private() {
        let tmp = tempfile::tempdir().unwrap();
        let p = tmp.path().join("token");
        std::fs::write(&p, "s3cret\n").unwrap();
        std::fs::set_permissions(&p, std::fs::Permissions::from_mode(0o644)).unwrap();
        let f = read(&p, MAX_SMALL_FILE).unwrap();
        assert!(f.is_shared());
        f.make_private().unwrap();
        assert_eq!(
            std::fs::metadata(&p).unwrap().permissions().mode() & 0o777,
            0o600
        );
        assert_eq!(read(&p, 100).unwrap().text(&p).unwrap(), "s3cret\n");
    }
}
