//! `config.json` in the pilot home: read, edit and write it without losing anything.
//!
//! The file is a JSON object. Keys pilot does not own (`registry`, `beacon`, `hostname`, ...)
//! are kept exactly as they were, in their order. Writes are atomic (a temp file in the same
//! directory, fsync, rename, fsync of the directory) and mode 0600, and read-modify-write cycles
//! hold an exclusive lock on `config.json.lock` so concurrent writers never lose each other's
//! keys. A file that does not parse, or that gives a key twice in one object (JSON parsers
//! disagree on which one wins, so pilot takes neither), is never overwritten: every access fails
//! with an error that names the file and the parse error or the key.

use std::fs;
use std::io;
use std::os::unix::fs::OpenOptionsExt;
use std::path::{Path, PathBuf};
use std::time::Duration;

use serde_json::{Map, Value};

/// The config key refusing loopback and private addresses for every webhook.
pub const DENY_PRIVATE_NETWORKS: &str = "deny_private_networks";

/// What went wrong with `config.json`.
#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    #[error("config file {path} is not valid JSON: {source} (fix or remove the file; pilot will not overwrite it)")]
    Parse {
        path: PathBuf,
        source: serde_json::Error,
    },
    #[error("config file {path} is corrupt: key {key:?} appears more than once in one object (line {line}, column {column}); fix or remove the file (pilot will not overwrite it)")]
    DuplicateKey {
        path: PathBuf,
        /// The key's path from the top, like `webhook_settings.events`.
        key: String,
        line: usize,
        column: usize,
    },
    #[error("config file {path} must hold a JSON object, like {{\"webhook\": \"http://localhost:8080/events\"}} (pilot will not overwrite it)")]
    NotObject { path: PathBuf },
    #[error("config file {path}: {source}")]
    Io { path: PathBuf, source: io::Error },
    #[error("config file {path}: key {key:?}: {message}")]
    InvalidValue {
        path: PathBuf,
        key: String,
        message: String,
    },
}

/// The first key given twice in one object of `text` (valid JSON), with its path from the top
/// (`a.b`, `list[2].c`) and where the second one ends (line, column).
fn duplicate_key(text: &[u8]) -> Option<(String, usize, usize)> {
    let found = std::cell::RefCell::new(None);
    let mut de = serde_json::Deserializer::from_slice(text);
    let seed = strict::Strict {
        found: &found,
        at: String::new(),
    };
    match serde::de::DeserializeSeed::deserialize(seed, &mut de) {
        Ok(()) => None,
        Err(e) => found.into_inner().map(|key| (key, e.line(), e.column())),
    }
}

/// A pass over a JSON document that stops at the first duplicate key.
mod strict {
    use std::cell::RefCell;
    use std::collections::HashSet;
    use std::fmt;

    use serde::de::{self, DeserializeSeed, Deserializer, MapAccess, SeqAccess, Visitor};

    pub(super) struct Strict<'a> {
        pub(super) found: &'a RefCell<Option<String>>,
        pub(super) at: String,
    }

    impl<'de> DeserializeSeed<'de> for Strict<'_> {
        type Value = ();

        fn deserialize<D: Deserializer<'de>>(self, d: D) -> Result<(), D::Error> {
            d.deserialize_any(self)
        }
    }

    impl<'de> Visitor<'de> for Strict<'_> {
        type Value = ();

        fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
            f.write_str("any JSON value")
        }

        fn visit_bool<E>(self, _: bool) -> Result<(), E> {
            Ok(())
        }
        fn visit_i64<E>(self, _: i64) -> Result<(), E> {
            Ok(())
        }
        fn visit_u64<E>(self, _: u64) -> Result<(), E> {
            Ok(())
        }
        fn visit_f64<E>(self, _: f64) -> Result<(), E> {
            Ok(())
        }
        fn visit_str<E>(self, _: &str) -> Result<(), E> {
            Ok(())
        }
        fn visit_unit<E>(self) -> Result<(), E> {
            Ok(())
        }

        fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<(), A::Error> {
            let mut i = 0;
            loop {
                let seed = Strict {
                    found: self.found,
                    at: format!("{}[{i}]", self.at),
                };
                if seq.next_element_seed(seed)?.is_none() {
                    return Ok(());
                }
                i += 1;
            }
        }

        fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<(), A::Error> {
            let mut seen = HashSet::new();
            while let Some(key) = map.next_key::<String>()? {
                let at = if self.at.is_empty() {
                    key.clone()
                } else {
                    format!("{}.{key}", self.at)
                };
                if !seen.insert(key) {
                    *self.found.borrow_mut() = Some(at);
                    return Err(de::Error::custom("duplicate key"));
                }
                map.next_value_seed(Strict {
                    found: self.found,
                    at,
                })?;
            }
            Ok(())
        }
    }
}

/// The contents of `config.json`, with the path they came from.
#[derive(Debug, Clone, PartialEq)]
pub struct ConfigFile {
    path: PathBuf,
    values: Map<String, Value>,
}

impl ConfigFile {
    /// An empty config that will be written to `path`.
    pub fn empty(path: impl Into<PathBuf>) -> Self {
        Self {
            path: path.into(),
            values: Map::new(),
        }
    }

    /// Reads `path`. A missing file is an empty config; an empty, malformed or non-object
    /// file is an error, and the file is left as it is.
    pub fn load(path: impl Into<PathBuf>) -> Result<Self, ConfigError> {
        let path = path.into();
        let text = match fs::read(&path) {
            Ok(t) => t,
            Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(Self::empty(path)),
            Err(source) => return Err(ConfigError::Io { path, source }),
        };
        Self::parse(path, &text)
    }

    /// Parses the contents of the file at `path` (which is not read): a JSON object, or an
    /// error naming `path`.
    pub fn parse(path: impl Into<PathBuf>, text: &[u8]) -> Result<Self, ConfigError> {
        let path = path.into();
        let value: Value = match serde_json::from_slice(text) {
            Ok(v) => v,
            Err(source) => return Err(ConfigError::Parse { path, source }),
        };
        if let Some((key, line, column)) = duplicate_key(text) {
            return Err(ConfigError::DuplicateKey {
                path,
                key,
                line,
                column,
            });
        }
        match value {
            Value::Object(values) => Ok(Self { path, values }),
            _ => Err(ConfigError::NotObject { path }),
        }
    }

    /// Locks the config, loads it, lets `edit` change it, and writes it back atomically if
    /// `edit` succeeds. Concurrent `update`s (across processes) run one at a time.
    pub fn update<T, E>(
        path: impl Into<PathBuf>,
        edit: impl FnOnce(&mut ConfigFile) -> Result<T, E>,
    ) -> Result<T, E>
    where
        E: From<ConfigError>,
    {
        Self::update_and_hold(path, edit).map(|(out, _lock)| out)
    }

    /// [`ConfigFile::update`], keeping the lock until the returned [`ConfigLock`] is dropped:
    /// for a change that must also reach the running daemon before the next writer's, so the
    /// daemon ends with what the file says.
    pub fn update_and_hold<T, E>(
        path: impl Into<PathBuf>,
        edit: impl FnOnce(&mut ConfigFile) -> Result<T, E>,
    ) -> Result<(T, ConfigLock), E>
    where
        E: From<ConfigError>,
    {
        let path = path.into();
        let lock = lock(&path)?;
        // No other writer runs now: what a killed one left behind can go.
        crate::fsutil::remove_stale_temps(&path);
        let mut config = Self::load(path)?;
        let out = edit(&mut config)?;
        config.save()?;
        Ok((out, lock))
    }

    /// Locks the config and loads it, keeping the lock until the returned [`ConfigLock`] is
    /// dropped: for a change that must first be taken by the running daemon, then written
    /// ([`ConfigFile::save`]) only if it was, with no other writer in between.
    pub fn lock_and_load(
        path: impl Into<PathBuf>,
    ) -> Result<(ConfigFile, ConfigLock), ConfigError> {
        let path = path.into();
        let lock = lock(&path)?;
        crate::fsutil::remove_stale_temps(&path);
        Ok((Self::load(path)?, lock))
    }

    pub fn path(&self) -> &Path {
        &self.path
    }

    /// Every key and value, in file order.
    pub fn values(&self) -> &Map<String, Value> {
        &self.values
    }

    pub fn get(&self, key: &str) -> Option<&Value> {
        self.values.get(key)
    }

    /// A string value (`None` when absent or not a string).
    pub fn get_str(&self, key: &str) -> Option<&str> {
        self.values.get(key).and_then(Value::as_str)
    }

    /// Sets `key`, keeping its place if it existed.
    pub fn set(&mut self, key: &str, value: Value) {
        self.values.insert(key.to_string(), value);
    }

    /// Sets `key` after checking the value of a key pilot reads ([`crate::config_keys::check`]);
    /// on an error nothing changes.
    pub fn set_checked(&mut self, key: &str, value: Value) -> Result<(), ConfigError> {
        crate::config_keys::check(key, &value).map_err(|m| self.invalid(key, m))?;
        self.set(key, value);
        Ok(())
    }

    /// Removes `key`, keeping the others in order; returns the old value.
    pub fn remove(&mut self, key: &str) -> Option<Value> {
        self.values.shift_remove(key)
    }

    fn invalid(&self, key: &str, message: impl Into<String>) -> ConfigError {
        ConfigError::InvalidValue {
            path: self.path.clone(),
            key: key.into(),
            message: message.into(),
        }
    }

    /// The persisted webhook URL (absent or empty: none).
    pub fn webhook(&self) -> Option<&str> {
        self.get_str("webhook").filter(|s| !s.is_empty())
    }

    /// An unsigned integer value.
    pub fn get_u64(&self, key: &str) -> Result<Option<u64>, ConfigError> {
        match self.values.get(key) {
            None | Some(Value::Null) => Ok(None),
            Some(Value::Number(n)) => n
                .as_u64()
                .map(Some)
                .ok_or_else(|| self.invalid(key, "expected a whole number >= 0")),
            Some(_) => Err(self.invalid(key, "expected a whole number >= 0")),
        }
    }

    /// A boolean value.
    pub fn get_bool(&self, key: &str) -> Result<Option<bool>, ConfigError> {
        match self.values.get(key) {
            None | Some(Value::Null) => Ok(None),
            Some(Value::Bool(b)) => Ok(Some(*b)),
            Some(_) => Err(self.invalid(key, "expected true or false")),
        }
    }

    /// The URL policy of every webhook: private networks refused when
    /// `deny_private_networks` is true.
    pub fn url_policy(&self) -> Result<crate::webhook_url::UrlPolicy, ConfigError> {
        Ok(crate::webhook_url::UrlPolicy {
            deny_private: self.get_bool(DENY_PRIVATE_NETWORKS)?.unwrap_or(false),
        })
    }

    /// Checks the webhook with everything it depends on, as the daemon will start it: the URL
    /// under the URL policy (`deny_private_networks`, the settings' `deny_private`) and the
    /// settings with their URL ([`crate::webhook_settings::validate_target`]). No webhook:
    /// nothing to check. The error names the key.
    pub fn check_webhook(&self) -> Result<(), ConfigError> {
        let Some(url) = self.webhook() else {
            return Ok(());
        };
        let key = "webhook_settings";
        let settings: crate::WebhookSettings = match self.get(key) {
            None | Some(Value::Null) => Default::default(),
            Some(v) => serde_json::from_value(v.clone())
                .map_err(|e| self.invalid(key, crate::webhook_settings::read_error(v, &e)))?,
        };
        let policy = settings.url_policy(self.url_policy()?);
        let url = policy
            .validate(url)
            .map_err(|e| self.invalid("webhook", e.to_string()))?;
        crate::webhook_settings::validate_target(&url, &settings)
            .map_err(|e| self.invalid(key, e.to_string()))
    }

    /// The node id (`node_id`), if set.
    pub fn node_id(&self) -> Result<Option<u32>, ConfigError> {
        match self.get_u64("node_id")? {
            None => Ok(None),
            Some(n) => u32::try_from(n)
                .map(Some)
                .map_err(|_| self.invalid("node_id", "must fit in 32 bits")),
        }
    }

    /// A duration value written like `"5s"` or `"500ms"`.
    pub fn get_duration(&self, key: &str) -> Result<Option<Duration>, ConfigError> {
        match self.values.get(key) {
            None | Some(Value::Null) => Ok(None),
            Some(Value::String(s)) => crate::duration::parse(s)
                .map(Some)
                .map_err(|e| self.invalid(key, e.to_string())),
            Some(_) => {
                Err(self.invalid(key, "expected a duration string like \"5s\" or \"500ms\""))
            }
        }
    }

    /// Writes the config atomically with mode 0600 (2-space pretty JSON).
    pub fn save(&self) -> Result<(), ConfigError> {
        let io_err = |source| ConfigError::Io {
            path: self.path.clone(),
            source,
        };
        let text = self.to_json().map_err(|e| io_err(e.into()))?;
        crate::fsutil::write_atomic(&self.path, &text).map_err(io_err)?;
        Ok(())
    }

    /// The bytes [`save`](Self::save) writes: 2-space pretty JSON and a newline.
    pub fn to_json(&self) -> Result<Vec<u8>, serde_json::Error> {
        let mut text = serde_json::to_vec_pretty(&self.values)?;
        text.push(b'\n');
        Ok(text)
    }
}

/// The exclusive lock on `<config>.lock`; released when dropped (or when the process dies).
#[derive(Debug)]
pub struct ConfigLock {
    _file: fs::File,
}

/// Takes the exclusive lock on `<config>.lock`, waiting for it.
fn lock(config: &Path) -> Result<ConfigLock, ConfigError> {
    let mut name = config.as_os_str().to_owned();
    name.push(".lock");
    let path = PathBuf::from(name);
    let io_err = |source| ConfigError::Io {
        path: path.clone(),
        source,
    };
    let file = fs::OpenOptions::new()
        .create(true)
        .truncate(false)
        .write(true)
        .mode(0o600)
        .open(&path)
        .map_err(io_err)?;
    file.lock().map_err(io_err)?;
    Ok(ConfigLock { _file: file })
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::unix::fs::PermissionsExt;

    #[test]
    fn a_key_given_twice_in_one_object_is_a_corrupt_file_naming_the_key() {
        let tmp = tempfile::tempdir().unwrap();
        let path = tmp.path().join("config.json");
        for (text, key, line) in [
            (
                "{\"webhook\": \"http://a/\",\n \"webhook\": \"http://b/\"}",
                "webhook",
                2,
            ),
            (
                r#"{"webhook_settings": {"events": ["a.*"], "events": ["b.*"]}}"#,
                "webhook_settings.events",
                1,
            ),
            (r#"{"x": [{"a": 1}, {"b": 1, "b": 2}]}"#, "x[1].b", 1),
            (r#"{"a": 1, "\u0061": 2}"#, "a", 1),
        ] {
            fs::write(&path, text).unwrap();
            match ConfigFile::load(&path) {
                Err(e @ ConfigError::DuplicateKey { .. }) => {
                    let ConfigError::DuplicateKey {
                        key: k, line: l, ..
                    } = &e
                    else {
                        unreachable!()
                    };
                    assert_eq!((k.as_str(), *l), (key, line), "{text}");
                    let msg = e.to_string();
                    assert!(msg.contains(&path.display().to_string()), "{msg}");
                    assert!(msg.contains(&format!("{key:?}")), "{msg}");
                }
                other => panic!("{text}: {other:?}"),
            }
            // Never overwritten: an update fails before writing.
            let r = ConfigFile::update(&path, |c| {
                c.set("node_id", 1.into());
                Ok::<_, ConfigError>(())
            });
            assert!(matches!(r, Err(ConfigError::DuplicateKey { .. })));
            assert_eq!(fs::read_to_string(&path).unwrap(), text);
        }
        // The same key in different objects is fine.
        fs::write(
            &path,
            r#"{"a": {"k": 1}, "b": {"k": 2}, "k": [{"k": 1}, {"k": 2}]}"#,
        )
        .unwrap();
        assert!(ConfigFile::load(&path).is_ok());
    }

    #[test]
    fn a_missing_file_is_an_empty_config() {
        let tmp = tempfile::tempdir().unwrap();
        let c = ConfigFile::load(tmp.path().join("config.json")).unwrap();
        assert!(c.values().is_empty());
        assert_eq!(c.webhook(), None);
    }

    #[test]
    fn update_keeps_unknown_keys_in_order_and_writes_0600_pretty_json() {
        let tmp = tempfile::tempdir().unwrap();
        let path = tmp.path().join("config.json");
        fs::write(
            &path,
            r#"{"registry":"34.71.57.205:9000","beacon":"34.71.57.205:9001","hostname":"n1","extra":{"x":[1,2]}}"#,
        )
        .unwrap();
        ConfigFile::update(&path, |c| {
            c.set("webhook", "http://localhost:8080/events".into());
            Ok::<_, ConfigError>(())
        })
        .unwrap();
        let text = fs::read_to_string(&path).unwrap();
        assert_eq!(
            text,
            "{\n  \"registry\": \"34.71.57.205:9000\",\n  \"beacon\": \"34.71.57.205:9001\",\n  \"hostname\": \"n1\",\n  \"extra\": {\n    \"x\": [\n      1,\n      2\n    ]\n  },\n  \"webhook\": \"http://localhost:8080/events\"\n}\n"
        );
        let mode = fs::metadata(&path).unwrap().permissions().mode() & 0o777;
        assert_eq!(mode, 0o600);
        ConfigFile::update(&path, |c| {
            c.remove("webhook");
            Ok::<_, ConfigError>(())
        })
        .unwrap();
        let c = ConfigFile::load(&path).unwrap();
        let keys: Vec<&str> = c.values().keys().map(String::as_str).collect();
        assert_eq!(keys, ["registry", "beacon", "hostname", "extra"]);
    }

    #[test]
    fn a_corrupt_file_is_an_error_and_is_never_overwritten() {
        let tmp = tempfile::tempdir().unwrap();
        let path = tmp.path().join("config.json");
        for bad in ["{\"webhook\": ", "", "[1,2]", "\"s\""] {
            fs::write(&path, bad).unwrap();
            let err = ConfigFile::update(&path, |c| {
                c.set("webhook", "http://x/".into());
                Ok::<_, ConfigError>(())
            })
            .unwrap_err();
            let msg = err.to_string();
            assert!(msg.contains(&path.display().to_string()), "{msg}");
            assert_eq!(fs::read_to_string(&path).unwrap(), bad);
        }
    }

    #[test]
    fn set_checked_refuses_bad_values_of_known_keys() {
        let mut c = ConfigFile::empty("/h/config.json");
        c.set_checked("node_id", 5.into()).unwrap();
        c.set_checked("registry", "x".into()).unwrap();
        let e = c
            .set_checked("webhook", "http://169.254.169.254/".into())
            .unwrap_err()
            .to_string();
        assert!(
            e.contains("/h/config.json") && e.contains("\"webhook\""),
            "{e}"
        );
        assert_eq!(c.get("webhook"), None);
        let keys: Vec<&str> = c.values().keys().map(String::as_str).collect();
        assert_eq!(keys, ["node_id", "registry"]);
    }

    #[test]
    fn typed_values_are_checked() {
        let tmp = tempfile::tempdir().unwrap();
        let path = tmp.path().join("config.json");
        fs::write(
            &path,
            r#"{"node_id":5,"backoff":"500ms","queue_size":"big","webhook_timeout":3}"#,
        )
        .unwrap();
        let c = ConfigFile::load(&path).unwrap();
        assert_eq!(c.node_id().unwrap(), Some(5));
        assert_eq!(
            c.get_duration("backoff").unwrap(),
            Some(Duration::from_millis(500))
        );
        assert!(c
            .get_u64("queue_size")
            .unwrap_err()
            .to_string()
            .contains("queue_size"));
        assert!(c.get_duration("webhook_timeout").is_err());
        assert_eq!(c.get_duration("circuit_cooldown").unwrap(), None);
    }

    #[test]
    fn concurrent_updates_never_lose_keys() {
        let tmp = tempfile::tempdir().unwrap();
        let path = tmp.path().join("config.json");
        let threads: Vec<_> = (0..16)
            .map(|i| {
                let path = path.clone();
                std::thread::spawn(move || {
                    ConfigFile::update(&path, |c| {
                        c.set(&format!("k{i}"), i.into());
                        c.set("webhook", format!("http://h{i}/").into());
                        Ok::<_, ConfigError>(())
                    })
                    .unwrap()
                })
            })
            .collect();
        for t in threads {
            t.join().unwrap();
        }
        let c = ConfigFile::load(&path).unwrap();
        for i in 0..16 {
            assert_eq!(c.get_u64(&format!("k{i}")).unwrap(), Some(i));
        }
        assert!(c.webhook().unwrap().starts_with("http://h"));
    }

    #[test]
    fn a_held_update_keeps_the_next_writer_waiting() {
        let tmp = tempfile::tempdir().unwrap();
        let path = tmp.path().join("config.json");
        let ((), held) = ConfigFile::update_and_hold(&path, |c| {
            c.set("webhook", "http://a/".into());
            Ok::<_, ConfigError>(())
        })
        .unwrap();
        let next = {
            let path = path.clone();
            std::thread::spawn(move || {
                ConfigFile::update(&path, |c| {
                    c.set("webhook", "http://b/".into());
                    Ok::<_, ConfigError>(())
                })
                .unwrap();
            })
        };
        std::thread::sleep(Duration::from_millis(200));
        assert!(
            !next.is_finished(),
            "the second writer did not wait for the lock"
        );
        assert_eq!(
            ConfigFile::load(&path).unwrap().webhook(),
            Some("http://a/")
        );
        drop(held);
        next.join().unwrap();
        assert_eq!(
            ConfigFile::load(&path).unwrap().webhook(),
            Some("http://b/")
        );
    }
}
