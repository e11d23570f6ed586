//! Sizes on the command line: `65536`, `64K` / `64KiB`, `1M` / `1MiB`
//! (binary units; a bare number is bytes).

/// Parses a size in bytes; the error says what is accepted.
///
/// ```
/// use swp_tools::size::parse;
/// assert_eq!(parse("65536").unwrap(), 65536);
/// assert_eq!(parse("512K").unwrap(), 512 * 1024);
/// assert_eq!(parse("512KiB").unwrap(), 512 * 1024);
/// assert_eq!(parse("1M").unwrap(), 1 << 20);
/// assert!(parse("0").is_err());
/// assert!(parse("lots").is_err());
/// ```
pub fn parse(text: &str) -> Result<usize, String> {
    let bad = || format!("{text:?} is not a size: write e.g. 65536, 64K, 512KiB, 1M");
    let t = text.trim();
    let split = t.find(|c: char| !c.is_ascii_digit()).unwrap_or(t.len());
    let (digits, unit) = t.split_at(split);
    let n: usize = digits.parse().map_err(|_| bad())?;
    let scale = match unit.to_ascii_lowercase().as_str() {
        "" | "b" => 1,
        "k" | "kib" | "kb" => 1 << 10,
        "m" | "mib" | "mb" => 1 << 20,
        _ => return Err(bad()),
    };
    match n.checked_mul(scale) {
        Some(0) => Err(format!("{text:?}: a size must be at least one byte")),
        Some(v) => Ok(v),
        None => Err(bad()),
    }
}
