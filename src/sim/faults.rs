//! Fault injection: the configuration (flags and `/__sim/faults`), and the pure decision
//! of which fault, if any, hits one request.
//!
//! One schema serves the command line and the control endpoint. Flag syntax:
//! - `--fail CODE=RATE[@PIXEL]`: CODE is a Graph code the simulator can word
//!   (1, 2, 4, 17, 100, 190, 341, 613) or an HTTP status 500..=599; RATE is 0..=1; with
//!   `@PIXEL` the rule applies to that pixel only.
//! - `--latency-ms N` or `N..M` (uniform, inclusive), `--drop-rate R`,
//!   `--throttle-after N` with optional `--throttle-window-ms W`.
//!
//! JSON (`GET`/`PUT /__sim/faults`), the same values in the same syntax; a `PUT` replaces
//! the whole configuration and missing keys take their defaults:
//! `{"fail":["190=1@123"],"latency_ms":"5..20","drop_rate":0.0,"throttle_after":null,
//! "throttle_window_ms":null}` (`latency_ms` may also be a plain number).
//!
//! Rules compose as disjoint outcomes of one random draw: the rules that apply to the
//! pixel are taken in order, and a draw `u` in `[0, 1)` picks the first rule whose
//! cumulative rate exceeds `u`. So `--fail 2=0.1 --fail 17=0.2` answers code 2 for 10%
//! and code 17 for 20% of the requests; once the rates add up to 1 later rules never win.
//!
//! Randomness comes from a seeded SplitMix64 so a run with `--seed` is repeatable: each
//! request draws, in this order, the drop (if `drop_rate > 0`), the latency (if it is a
//! range), the fail rule (if any applies) and its `fbtrace_id`.

use std::collections::HashMap;
use std::fmt;
use std::str::FromStr;
use std::time::Duration;

use serde::{Deserialize, Deserializer, Serialize, Serializer};

use super::graph::GraphError;

/// What a fail rule answers.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum FaultCode {
    /// A Graph error with this code, worded like Graph's.
    Graph(u32),
    /// A bare HTTP status 500..=599 with a plain-text body, as a load balancer in front
    /// of Graph would answer: clients must not assume every failure is Graph JSON.
    Http(u16),
}

impl fmt::Display for FaultCode {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            FaultCode::Graph(code) => write!(f, "{code}"),
            FaultCode::Http(status) => write!(f, "{status}"),
        }
    }
}

impl FromStr for FaultCode {
    type Err = String;

    fn from_str(s: &str) -> Result<FaultCode, String> {
        let n: u32 = s
            .trim()
            .parse()
            .map_err(|_| format!("fault code {s:?} is not a number"))?;
        if GraphError::INJECTABLE_CODES.contains(&n) {
            Ok(FaultCode::Graph(n))
        } else if (500..=599).contains(&n) {
            Ok(FaultCode::Http(n as u16))
        } else {
            Err(format!(
                "fault code {n} is not supported; use one of 1, 2, 4, 17, 100, 190, 341, 613 \
                 or an HTTP status 500..=599"
            ))
        }
    }
}

/// One `--fail CODE=RATE[@PIXEL]` rule.
#[derive(Clone, Debug, PartialEq)]
pub struct FailRule {
    pub code: FaultCode,
    /// Probability in `0..=1`.
    pub rate: f64,
    /// Only this pixel, or every pixel.
    pub pixel: Option<String>,
}

impl FailRule {
    fn applies_to(&self, pixel_id: &str) -> bool {
        self.pixel.as_deref().is_none_or(|p| p == pixel_id)
    }
}

impl fmt::Display for FailRule {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}={}", self.code, self.rate)?;
        if let Some(pixel) = &self.pixel {
            write!(f, "@{pixel}")?;
        }
        Ok(())
    }
}

impl FromStr for FailRule {
    type Err = String;

    fn from_str(s: &str) -> Result<FailRule, String> {
        let (rule, pixel) = match s.split_once('@') {
            Some((rule, pixel)) if !pixel.trim().is_empty() => {
                (rule, Some(pixel.trim().to_owned()))
            }
            Some(_) => return Err(format!("fail rule {s:?} has an empty pixel after '@'")),
            None => (s, None),
        };
        let (code, rate) = rule.split_once('=').ok_or_else(|| {
            format!("fail rule {s:?} must look like CODE=RATE or CODE=RATE@PIXEL")
        })?;
        Ok(FailRule {
            code: code.parse()?,
            rate: parse_rate(rate)?,
            pixel,
        })
    }
}

/// Parses a probability in `0..=1`.
pub fn parse_rate(s: &str) -> Result<f64, String> {
    let rate: f64 = s
        .trim()
        .parse()
        .map_err(|_| format!("rate {s:?} is not a number"))?;
    if (0.0..=1.0).contains(&rate) {
        Ok(rate)
    } else {
        Err(format!("rate {s:?} must be between 0 and 1"))
    }
}

/// Added latency in milliseconds: fixed, or uniform in an inclusive range.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct LatencyMs {
    pub min: u64,
    pub max: u64,
}

/// The longest latency accepted, so a typo cannot hang a test for hours.
pub const MAX_LATENCY_MS: u64 = 600_000;

impl fmt::Display for LatencyMs {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.min == self.max {
            write!(f, "{}", self.min)
        } else {
            write!(f, "{}..{}", self.min, self.max)
        }
    }
}

impl FromStr for LatencyMs {
    type Err = String;

    fn from_str(s: &str) -> Result<LatencyMs, String> {
        let number = |part: &str| -> Result<u64, String> {
            part.trim()
                .parse()
                .map_err(|_| format!("latency {s:?} must be N or N..M milliseconds"))
        };
        let (min, max) = match s.split_once("..") {
            Some((a, b)) => (number(a)?, number(b)?),
            None => (number(s)?, number(s)?),
        };
        if min > max {
            return Err(format!(
                "latency range {s:?} has its minimum above its maximum"
            ));
        }
        if max > MAX_LATENCY_MS {
            return Err(format!(
                "latency {s:?} is above the limit of {MAX_LATENCY_MS} ms"
            ));
        }
        Ok(LatencyMs { min, max })
    }
}

/// The whole fault configuration.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct FaultConfig {
    #[serde(
        serialize_with = "serialize_rules",
        deserialize_with = "deserialize_rules"
    )]
    pub fail: Vec<FailRule>,
    #[serde(
        serialize_with = "serialize_latency",
        deserialize_with = "deserialize_latency"
    )]
    pub latency_ms: Option<LatencyMs>,
    #[serde(deserialize_with = "deserialize_rate")]
    pub drop_rate: f64,
    pub throttle_after: Option<u64>,
    pub throttle_window_ms: Option<u64>,
}

impl FaultConfig {
    /// Checks what serde cannot: a throttle window needs a throttle.
    pub fn check(&self) -> Result<(), String> {
        if self.throttle_window_ms.is_some() && self.throttle_after.is_none() {
            return Err("throttle_window_ms needs throttle_after".to_owned());
        }
        if self.throttle_window_ms == Some(0) {
            return Err("throttle_window_ms must be at least 1".to_owned());
        }
        Ok(())
    }
}

fn serialize_rules<S: Serializer>(rules: &[FailRule], s: S) -> Result<S::Ok, S::Error> {
    s.collect_seq(rules.iter().map(|r| r.to_string()))
}

fn deserialize_rules<'de, D: Deserializer<'de>>(d: D) -> Result<Vec<FailRule>, D::Error> {
    let raw = Vec::<String>::deserialize(d)?;
    raw.iter()
        .map(|r| r.parse().map_err(serde::de::Error::custom))
        .collect()
}

fn serialize_latency<S: Serializer>(latency: &Option<LatencyMs>, s: S) -> Result<S::Ok, S::Error> {
    match latency {
        None => s.serialize_none(),
        Some(l) if l.min == l.max => s.serialize_u64(l.min),
        Some(l) => s.collect_str(l),
    }
}

fn deserialize_latency<'de, D: Deserializer<'de>>(d: D) -> Result<Option<LatencyMs>, D::Error> {
    #[derive(Deserialize)]
    #[serde(untagged)]
    enum Raw {
        Number(u64),
        Text(String),
    }
    match Option::<Raw>::deserialize(d)? {
        None => Ok(None),
        Some(Raw::Number(n)) => n.to_string().parse().map(Some),
        Some(Raw::Text(t)) => t.parse().map(Some),
    }
    .map_err(serde::de::Error::custom)
}

fn deserialize_rate<'de, D: Deserializer<'de>>(d: D) -> Result<f64, D::Error> {
    let rate = f64::deserialize(d)?;
    parse_rate(&rate.to_string()).map_err(serde::de::Error::custom)
}

/// SplitMix64: small, fast, good enough for fault dice and trace ids.
#[derive(Clone, Debug)]
pub struct Rng(u64);

impl Rng {
    pub fn new(seed: u64) -> Rng {
        Rng(seed)
    }

    pub fn next_u64(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    }

    /// Uniform in `[0, 1)`.
    pub fn unit(&mut self) -> f64 {
        (self.next_u64() >> 11) as f64 / (1u64 << 53) as f64
    }

    /// Uniform in `min..=max`.
    pub fn range_inclusive(&mut self, min: u64, max: u64) -> u64 {
        let span = max - min;
        if span == u64::MAX {
            return self.next_u64();
        }
        min + self.next_u64() % (span + 1)
    }
}

/// Per-pixel request counts for `throttle_after`.
#[derive(Debug, Default)]
pub struct Throttle {
    windows: HashMap<String, Window>,
}

#[derive(Debug, Clone, Copy)]
struct Window {
    started_ms: u64,
    count: u64,
}

/// Pixels whose throttle windows are kept at most; past that the oldest windows go, so
/// hostile pixel ids cannot grow memory without bound.
const MAX_THROTTLE_PIXELS: usize = 100_000;

impl Throttle {
    /// Counts one request of `pixel_id` and says whether it is over the limit.
    ///
    /// Without a window the count runs until the next reset; with one, it is a fixed
    /// window that starts at the first request after the previous window ended.
    fn over_limit(&mut self, config: &FaultConfig, pixel_id: &str, now_ms: u64) -> bool {
        let Some(limit) = config.throttle_after else {
            return false;
        };
        if self.windows.len() >= MAX_THROTTLE_PIXELS && !self.windows.contains_key(pixel_id) {
            if let Some(oldest) = self
                .windows
                .iter()
                .min_by_key(|(_, w)| w.started_ms)
                .map(|(k, _)| k.clone())
            {
                self.windows.remove(&oldest);
            }
        }
        let window = self.windows.entry(pixel_id.to_owned()).or_insert(Window {
            started_ms: now_ms,
            count: 0,
        });
        if let Some(length) = config.throttle_window_ms {
            if now_ms.saturating_sub(window.started_ms) >= length {
                *window = Window {
                    started_ms: now_ms,
                    count: 0,
                };
            }
        }
        window.count = window.count.saturating_add(1);
        window.count > limit
    }

    pub fn clear(&mut self) {
        self.windows.clear();
    }
}

/// The fault chosen for one request.
#[derive(Clone, Debug, PartialEq)]
pub struct FaultDecision {
    /// Wait this long before answering (or dropping).
    pub delay: Duration,
    /// What happens instead of the normal answer, if anything.
    pub fault: Option<Fault>,
}

/// A fault that replaces the normal answer.
#[derive(Clone, Debug, PartialEq)]
pub enum Fault {
    /// Close the connection without answering.
    Drop,
    /// Over `throttle_after`: code 17.
    Throttled,
    /// A fail rule fired.
    Fail(FaultCode),
}

/// Decides the fault for one request of `pixel_id`; counts it for throttling.
pub fn decide(
    config: &FaultConfig,
    throttle: &mut Throttle,
    rng: &mut Rng,
    pixel_id: &str,
    now_ms: u64,
) -> FaultDecision {
    let dropped = config.drop_rate > 0.0 && rng.unit() < config.drop_rate;
    let delay = match config.latency_ms {
        Some(l) if l.min == l.max => Duration::from_millis(l.min),
        Some(l) => Duration::from_millis(rng.range_inclusive(l.min, l.max)),
        None => Duration::ZERO,
    };
    if dropped {
        return FaultDecision {
            delay,
            fault: Some(Fault::Drop),
        };
    }
    if throttle.over_limit(config, pixel_id, now_ms) {
        return FaultDecision {
            delay,
            fault: Some(Fault::Throttled),
        };
    }
    let mut rules = config
        .fail
        .iter()
        .filter(|r| r.applies_to(pixel_id))
        .peekable();
    if rules.peek().is_none() {
        return FaultDecision { delay, fault: None };
    }
    let u = rng.unit();
    let mut cumulative = 0.0;
    for rule in rules {
        cumulative += rule.rate;
        if u < cumulative {
            return FaultDecision {
                delay,
                fault: Some(Fault::Fail(rule.code)),
            };
        }
    }
    FaultDecision { delay, fault: None }
}

#[cfg(test)]
mod tests;
