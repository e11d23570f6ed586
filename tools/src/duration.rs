//! Durations on the command line as the nats CLI writes them: `5s`,
//! `500ms`, `2m`, `1h`, `1m30s`; a bare number is seconds.

use std::time::Duration;

/// Parses a duration; the error says what is accepted.
///
/// ```
/// use std::time::Duration;
/// use swp_tools::duration::parse;
/// assert_eq!(parse("90").unwrap(), Duration::from_secs(90));
/// assert_eq!(parse("1m30s").unwrap(), Duration::from_secs(90));
/// assert_eq!(parse("250ms").unwrap(), Duration::from_millis(250));
/// assert!(parse("5 parsecs").is_err());
/// ```
pub fn parse(text: &str) -> Result<Duration, String> {
    let bad =
        || format!("{text:?} is not a duration: write e.g. 30 (seconds), 5s, 500ms, 2m, 1h, 1m30s");
    let t = text.trim();
    if t.is_empty() {
        return Err(bad());
    }
    if let Ok(secs) = t.parse::<u64>() {
        return Ok(Duration::from_secs(secs));
    }
    let mut total = Duration::ZERO;
    let mut rest = t;
    while !rest.is_empty() {
        let digits = rest.find(|c: char| !c.is_ascii_digit()).ok_or_else(bad)?;
        if digits == 0 {
            return Err(bad());
        }
        let n: u64 = rest[..digits].parse().map_err(|_| bad())?;
        rest = &rest[digits..];
        let unit_len = rest
            .find(|c: char| c.is_ascii_digit())
            .unwrap_or(rest.len());
        let unit = match &rest[..unit_len] {
            "ms" => Duration::from_millis(n),
            "s" => Duration::from_secs(n),
            "m" => Duration::from_secs(n.checked_mul(60).ok_or_else(bad)?),
            "h" => Duration::from_secs(n.checked_mul(3600).ok_or_else(bad)?),
            _ => return Err(bad()),
        };
        total = total.checked_add(unit).ok_or_else(bad)?;
        rest = &rest[unit_len..];
    }
    Ok(total)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn units_combinations_and_refusals() {
        assert_eq!(parse("0").unwrap(), Duration::ZERO);
        assert_eq!(parse("5s").unwrap(), Duration::from_secs(5));
        assert_eq!(parse("2m").unwrap(), Duration::from_secs(120));
        assert_eq!(parse("1h").unwrap(), Duration::from_secs(3600));
        assert_eq!(
            parse("1h2m3s4ms").unwrap(),
            Duration::from_millis(3_723_004)
        );
        for bad in [
            "",
            "s",
            "5x",
            "5 s",
            "-1",
            "1.5s",
            "m5",
            "99999999999999999999h",
        ] {
            let e = parse(bad).unwrap_err();
            assert!(e.contains("not a duration"), "{bad:?}: {e}");
        }
    }
}
