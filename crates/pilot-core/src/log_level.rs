//! The daemon's log level, checked where it is given (`--log-level`, config `log_level`), so a
//! typo is refused at once instead of being taken for a target name and logging nothing.
//!
//! Accepted: one level (`trace`, `debug`, `info`, `warn`, `error`, `off`, any case), or
//! tracing's directive syntax, comma-separated, where every directive names its level:
//! `LEVEL` or `TARGET=LEVEL` (`pilot_webhook=debug,info`; a span filter such as
//! `pilot_webhook[deliver]=trace` is allowed too). A bare word that is not a level (`loud`,
//! or a target without `=LEVEL`) is refused, though tracing would read it as "everything from
//! target `loud`". `RUST_LOG` keeps tracing's full syntax.

/// The level words.
pub const LEVELS: &[&str] = &["trace", "debug", "info", "warn", "error", "off"];

/// Why a log level was refused.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum LogLevelError {
    #[error("log level {given:?}: empty (give one of {})", LEVELS.join(", "))]
    Empty { given: String },
    #[error(
        "log level {given:?}: {word:?} is not a level (give one of {}, or directives like \
         `pilot_webhook=debug,info`)",
        LEVELS.join(", ")
    )]
    NotALevel { given: String, word: String },
    #[error("log level {given:?}: directive {directive:?} has no target before `=`")]
    NoTarget { given: String, directive: String },
}

/// Checks a log level or directive list (see the module doc).
pub fn check(given: &str) -> Result<(), LogLevelError> {
    if given.trim().is_empty() {
        return Err(LogLevelError::Empty {
            given: given.into(),
        });
    }
    let is_level = |w: &str| LEVELS.iter().any(|l| l.eq_ignore_ascii_case(w.trim()));
    for directive in given.split(',').map(str::trim) {
        if directive.is_empty() {
            return Err(LogLevelError::Empty {
                given: given.into(),
            });
        }
        let level = match directive.rsplit_once('=') {
            Some((target, level)) => {
                if target.trim().is_empty() {
                    return Err(LogLevelError::NoTarget {
                        given: given.into(),
                        directive: directive.into(),
                    });
                }
                level
            }
            None => directive,
        };
        if !is_level(level) {
            return Err(LogLevelError::NotALevel {
                given: given.into(),
                word: level.trim().into(),
            });
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn levels_and_directives_that_name_their_level_are_accepted() {
        for ok in [
            "info",
            "DEBUG",
            " warn ",
            "off",
            "trace",
            "error",
            "pilot_webhook=debug,info",
            "pilot_webhook=debug, pilot_daemon=trace ,warn",
            "pilot_webhook[deliver]=trace",
            "hyper=off,info",
        ] {
            assert_eq!(check(ok), Ok(()), "{ok}");
        }
    }

    #[test]
    fn unknown_words_are_refused_naming_the_word() {
        for (bad, word) in [
            ("loud", "loud"),
            ("verbose", "verbose"),
            ("pilot_webhook", "pilot_webhook"),
            ("pilot_webhook=loud", "loud"),
            ("info,loud", "loud"),
            ("info=", ""),
            ("5", "5"),
        ] {
            match check(bad) {
                Err(LogLevelError::NotALevel { word: w, .. }) => assert_eq!(w, word, "{bad}"),
                other => panic!("{bad}: {other:?}"),
            }
        }
        assert!(matches!(check(""), Err(LogLevelError::Empty { .. })));
        assert!(matches!(
            check("info,,debug"),
            Err(LogLevelError::Empty { .. })
        ));
        assert!(matches!(
            check("=debug"),
            Err(LogLevelError::NoTarget { .. })
        ));
        let msg = check("loud").unwrap_err().to_string();
        assert!(
            msg.contains("\"loud\"") && msg.contains("trace, debug"),
            "{msg}"
        );
    }
}
