//! Human sizes (`1048576`, `512KiB`, `256MiB`, `1GB`) for flags, next to [`crate::duration`].

/// A size that does not parse.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
#[error("invalid size {input:?}: {reason} (examples: 1048576, 512KiB, 256MiB, 1GiB)")]
pub struct SizeError {
    pub input: String,
    pub reason: &'static str,
}

/// `bytes` for people: `512 B`, `3.1 KiB`, `64 MiB`, `1.5 GiB` (1024-based, one decimal when
/// it is not whole).
pub fn format(bytes: u64) -> String {
    const UNITS: [&str; 4] = ["B", "KiB", "MiB", "GiB"];
    let mut value = bytes as f64;
    let mut unit = 0;
    while value >= 1024.0 && unit + 1 < UNITS.len() {
        value /= 1024.0;
        unit += 1;
    }
    if unit == 0 || value.fract() == 0.0 {
        format!("{} {}", value as u64, UNITS[unit])
    } else {
        format!("{value:.1} {}", UNITS[unit])
    }
}

/// Parses bytes, or a number with `KiB`, `MiB`, `GiB` (1024-based; `K`, `M`, `G` too) or `KB`,
/// `MB`, `GB` (1000-based).
pub fn parse(input: &str) -> Result<u64, SizeError> {
    let err = |reason| SizeError {
        input: input.into(),
        reason,
    };
    let t = input.trim();
    let split = t.find(|c: char| !c.is_ascii_digit()).unwrap_or(t.len());
    let (num, unit) = t.split_at(split);
    let n: u64 = num.parse().map_err(|_| err("not a number"))?;
    let mult: u64 = match unit.trim().to_ascii_lowercase().as_str() {
        "" | "b" => 1,
        "kb" => 1000,
        "kib" | "k" => 1 << 10,
        "mb" => 1_000_000,
        "mib" | "m" => 1 << 20,
        "gb" => 1_000_000_000,
        "gib" | "g" => 1 << 30,
        _ => return Err(err("unknown unit (use B, KiB, MiB, GiB)")),
    };
    n.checked_mul(mult).ok_or_else(|| err("too large"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_common_forms() {
        assert_eq!(parse("1024"), Ok(1024));
        assert_eq!(parse("256MiB"), Ok(256 << 20));
        assert_eq!(parse("1 GiB"), Ok(1 << 30));
        assert_eq!(parse("10MB"), Ok(10_000_000));
        assert!(parse("1TiB").is_err());
        assert!(parse("-1").is_err());
        assert!(parse("99999999999999999999GiB").is_err());
    }

    #[test]
    fn sizes_print_in_binary_units() {
        assert_eq!(format(512), "512 B");
        assert_eq!(format(64 * 1024 * 1024), "64 MiB");
        assert_eq!(format(3174), "3.1 KiB");
        assert_eq!(format(3 << 30), "3 GiB");
    }
}
