//! Byte sizes as operators write them: `1048576`, `"512MB"`, `"10 GiB"`, `"1.5 GiB"`.
//!
//! Units follow IEC/SI strictly, case-insensitively: `KB`, `MB`, `GB`, `TB` are powers of
//! 1000 and `KiB`, `MiB`, `GiB`, `TiB` powers of 1024; `B` or no unit means bytes, and the
//! single letters `K`, `M`, `G`, `T` mean the binary units (as in systemd and most Unix
//! tools). A fraction must come out as a whole number of bytes.

use std::fmt;

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum SizeError {
    #[error("`{0}` is not a size")]
    Syntax(String),
    #[error("`{0}` has an unknown unit `{1}`")]
    Unit(String, String),
    #[error("`{0}` is not a whole number of bytes")]
    Fraction(String),
    #[error("`{0}` is too large")]
    Overflow(String),
    #[error("a size cannot be negative")]
    Negative,
}

/// What a size error's hint says: the accepted forms.
pub const SIZE_HINT: &str =
    "write a number of bytes or a number with a unit, e.g. 1048576, \"512 KiB\", \
     \"10 GiB\", \"1.5 GB\" (KB, MB, GB, TB are powers of 1000; KiB, MiB, GiB, TiB powers of 1024)";

const UNITS: &[(&str, u64)] = &[
    ("", 1),
    ("b", 1),
    ("k", 1 << 10),
    ("kib", 1 << 10),
    ("kb", 1_000),
    ("m", 1 << 20),
    ("mib", 1 << 20),
    ("mb", 1_000_000),
    ("g", 1 << 30),
    ("gib", 1 << 30),
    ("gb", 1_000_000_000),
    ("t", 1 << 40),
    ("tib", 1 << 40),
    ("tb", 1_000_000_000_000),
];

/// Parses a size written as a string.
pub fn parse_size(text: &str) -> Result<u64, SizeError> {
    let s = text.trim();
    if s.starts_with('-') {
        return Err(SizeError::Negative);
    }
    let number_end = s
        .find(|c: char| !(c.is_ascii_digit() || c == '.' || c == '_'))
        .unwrap_or(s.len());
    let (number, unit) = (&s[..number_end], s[number_end..].trim());
    let number = number.replace('_', "");
    let (whole, fraction) = number.split_once('.').unwrap_or((&number, ""));
    if whole.is_empty() || fraction.contains('.') || (number.contains('.') && fraction.is_empty()) {
        return Err(SizeError::Syntax(text.to_string()));
    }
    let multiplier = UNITS
        .iter()
        .find(|(name, _)| name.eq_ignore_ascii_case(unit))
        .map(|(_, m)| u128::from(*m))
        .ok_or_else(|| SizeError::Unit(text.to_string(), unit.to_string()))?;
    let overflow = || SizeError::Overflow(text.to_string());
    let whole: u128 = whole.parse().map_err(|_| overflow())?;
    let mut bytes = whole.checked_mul(multiplier).ok_or_else(overflow)?;
    if !fraction.is_empty() {
        let digits = u32::try_from(fraction.len()).map_err(|_| overflow())?;
        let scale = 10u128.checked_pow(digits).ok_or_else(overflow)?;
        let numerator: u128 = fraction.parse().map_err(|_| overflow())?;
        let scaled = numerator.checked_mul(multiplier).ok_or_else(overflow)?;
        if scaled % scale != 0 {
            return Err(SizeError::Fraction(text.to_string()));
        }
        bytes = bytes.checked_add(scaled / scale).ok_or_else(overflow)?;
    }
    u64::try_from(bytes).map_err(|_| overflow())
}

/// A size for people: the exact unit (binary or decimal) that gives the smallest number,
/// so what was written as `"512MB"` reads `512 MB` and `"10 GiB"` reads `10 GiB`.
pub struct Human(pub u64);

impl fmt::Display for Human {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let n = self.0;
        let units = [
            ("TiB", 1u64 << 40),
            ("GiB", 1 << 30),
            ("MiB", 1 << 20),
            ("KiB", 1 << 10),
            ("TB", 1_000_000_000_000),
            ("GB", 1_000_000_000),
            ("MB", 1_000_000),
            ("KB", 1_000),
        ];
        let exact = units
            .iter()
            .filter(|(_, size)| n != 0 && n % size == 0)
            .min_by_key(|(_, size)| n / size);
        match exact {
            Some((unit, size)) => write!(f, "{} {unit}", n / size),
            None => write!(f, "{n} B"),
        }
    }
}
