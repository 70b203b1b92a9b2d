//! Sizes as Docker writes them on its command line and in its API: `512`,
//! `64k`, `32m`, `1g`.
//!
//! Memory limits (step 7), a push's chunk size (step 10) and the engine's
//! create request all take a size in this syntax, so it has one owner here
//! rather than in any one of them.

/// A size that is not a number with an optional unit.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("invalid size {text:?}: use a number with an optional unit b, k, m or g (e.g. 512m)")]
pub struct SizeError {
    /// The text as given.
    pub text: String,
}

/// Parses a size as Docker does: `512`, `64k`, `32m`, `1g`, `1.5g` (an
/// optional `b` after the unit, any case; units are powers of 1024).
pub fn parse_size(text: &str) -> Result<u64, SizeError> {
    let bad = || SizeError {
        text: text.to_string(),
    };
    let lower = text.trim().to_ascii_lowercase();
    let lower = lower.strip_suffix('b').unwrap_or(&lower);
    let (number, unit) = match lower
        .char_indices()
        .find(|(_, c)| !c.is_ascii_digit() && *c != '.')
    {
        Some((i, _)) => lower.split_at(i),
        None => (lower, ""),
    };
    let multiplier: u64 = match unit {
        "" => 1,
        "k" => 1 << 10,
        "m" => 1 << 20,
        "g" => 1 << 30,
        "t" => 1 << 40,
        _ => return Err(bad()),
    };
    let value: f64 = number.parse().map_err(|_| bad())?;
    if !value.is_finite() || value < 0.0 {
        return Err(bad());
    }
    Ok((value * multiplier as f64) as u64)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sizes_parse_like_docker() {
        assert_eq!(parse_size("512").unwrap(), 512);
        assert_eq!(parse_size("64k").unwrap(), 64 << 10);
        assert_eq!(parse_size("32m").unwrap(), 32 << 20);
        assert_eq!(parse_size("32MB").unwrap(), 32 << 20);
        assert_eq!(parse_size("1g").unwrap(), 1 << 30);
        assert_eq!(parse_size("1.5g").unwrap(), 3 << 29);
        for bad in ["12q", "", "m", "-1m", "1.2.3m"] {
            assert!(parse_size(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn the_error_names_the_text_and_the_syntax() {
        let err = parse_size("12q").unwrap_err();
        assert_eq!(
            err.to_string(),
            "invalid size \"12q\": use a number with an optional unit b, k, m or g (e.g. 512m)"
        );
    }
}
