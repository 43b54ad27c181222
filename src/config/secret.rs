//! `Secret`: a string that must not be printed (Graph API access tokens, server access keys).
//!
//! `Debug` and `Display` print `[redacted]`, so a secret can sit in a struct that derives
//! `Debug` and be logged with it. Reading the value takes an explicit [`Secret::expose`],
//! which is easy to find in review. There is no `PartialEq`: comparing a secret with what
//! a client sent goes through [`Secret::matches`], which takes the same time wherever the
//! first difference is, so response timing does not reveal a key byte by byte.

use std::fmt;

#[derive(Clone)]
pub struct Secret(Box<str>);

impl Secret {
    pub fn new(value: impl Into<String>) -> Secret {
        Secret(value.into().into_boxed_str())
    }

    /// The secret value itself: for the request that needs it, never for printing.
    pub fn expose(&self) -> &str {
        &self.0
    }

    /// Whether `candidate` equals the secret, in time that depends only on the lengths.
    pub fn matches(&self, candidate: &[u8]) -> bool {
        let own = self.0.as_bytes();
        if own.len() != candidate.len() {
            return false;
        }
        own.iter()
            .zip(candidate)
            .fold(0u8, |diff, (a, b)| diff | (a ^ b))
            == 0
    }
}

impl fmt::Debug for Secret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("Secret([redacted])")
    }
}

impl fmt::Display for Secret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("[redacted]")
    }
}
