//! Rate limits, sans-IO: a token bucket per connection and one per client address,
//! refilled continuously at the configured rate, holding at most a second's worth.
//!
//! Each core keeps its own table of addresses (no state is shared between cores), so
//! the per-address limit holds per core: a client whose connections land on several
//! cores gets up to that many times the rate. The table is bounded: past
//! [`MAX_ADDRESSES`] entries, those whose bucket is full again (idle for a second) are
//! dropped; if none is, the new address shares nothing and is limited by its
//! connection's bucket alone rather than growing the table.

use std::collections::HashMap;
use std::net::IpAddr;
use std::time::Instant;

#[cfg(test)]
mod tests;

/// Addresses remembered per core.
pub const MAX_ADDRESSES: usize = 100_000;

/// A token bucket; `rate` 0 means no limit.
#[derive(Clone, Copy, Debug)]
pub struct Bucket {
    /// Tokens in thousandths, so that slow rates refill smoothly.
    milli: u64,
    last: Instant,
}

impl Bucket {
    pub fn new(rate: u32, now: Instant) -> Bucket {
        Bucket {
            milli: u64::from(rate) * 1000,
            last: now,
        }
    }

    /// Takes one token at `now`; false when the bucket is empty.
    pub fn take(&mut self, rate: u32, now: Instant) -> bool {
        if rate == 0 {
            return true;
        }
        let cap = u64::from(rate) * 1000;
        let elapsed_us = now.saturating_duration_since(self.last).as_micros() as u64;
        // rate tokens per second = rate milli-tokens per millisecond.
        let refill = elapsed_us.saturating_mul(u64::from(rate)) / 1000;
        if refill > 0 {
            self.milli = (self.milli + refill).min(cap);
            self.last = now;
        }
        if self.milli >= 1000 {
            self.milli -= 1000;
            true
        } else {
            false
        }
    }

    fn is_full(&self, rate: u32, now: Instant) -> bool {
        let elapsed_us = now.saturating_duration_since(self.last).as_micros() as u64;
        self.milli + elapsed_us.saturating_mul(u64::from(rate)) / 1000 >= u64::from(rate) * 1000
    }
}

/// One core's per-address buckets.
#[derive(Debug, Default)]
pub struct AddressLimits {
    buckets: HashMap<IpAddr, Bucket>,
}

impl AddressLimits {
    /// Takes a token for `ip` at `rate` per second.
    pub fn take(&mut self, ip: IpAddr, rate: u32, now: Instant) -> bool {
        if rate == 0 {
            return true;
        }
        if let Some(b) = self.buckets.get_mut(&ip) {
            return b.take(rate, now);
        }
        if self.buckets.len() >= MAX_ADDRESSES {
            self.buckets.retain(|_, b| !b.is_full(rate, now));
            if self.buckets.len() >= MAX_ADDRESSES {
                return true;
            }
        }
        let mut b = Bucket::new(rate, now);
        let ok = b.take(rate, now);
        self.buckets.insert(ip, b);
        ok
    }

    pub fn len(&self) -> usize {
        self.buckets.len()
    }

    pub fn is_empty(&self) -> bool {
        self.buckets.is_empty()
    }
}
