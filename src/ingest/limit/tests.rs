use std::time::Duration;

use super::*;

/// Takes `n` tokens at instants `t0 + at_ms[i]` and returns which were granted.
fn check(rate: u32, at_ms: &[u64], expected: &[bool]) {
    let t0 = Instant::now();
    let mut b = Bucket::new(rate, t0);
    let got: Vec<bool> = at_ms.iter().map(|&ms| b.take(rate, t0 + Duration::from_millis(ms))).collect();
    assert_eq!(got, expected, "rate {rate} at {at_ms:?}");
}

#[test]
fn a_bucket_holds_a_second_and_refills_at_the_rate() {
    check(3, &[0, 0, 0, 0], &[true, true, true, false]);
    check(3, &[0, 0, 0, 0, 334, 335, 667, 1000], &[true, true, true, false, true, false, true, true]);
    check(1, &[0, 500, 1000, 1000], &[true, false, true, false]);
    // Idle for a long time: still only a second's worth.
    check(2, &[0, 0, 10_000, 10_000, 10_000], &[true, true, true, true, false]);
    check(0, &[0, 0, 0, 0, 0], &[true; 5]);
}

#[test]
fn addresses_are_limited_apart_and_the_table_is_bounded() {
    let t = Instant::now();
    let mut a = AddressLimits::default();
    let (x, y): (IpAddr, IpAddr) = ("203.0.113.1".parse().unwrap(), "2001:db8::1".parse().unwrap());
    assert!(a.take(x, 2, t) && a.take(x, 2, t) && !a.take(x, 2, t));
    assert!(a.take(y, 2, t), "another address has its own bucket");
    for i in 0..MAX_ADDRESSES as u32 {
        a.take(IpAddr::from(i.to_be_bytes()), 2, t);
    }
    assert!(a.len() <= MAX_ADDRESSES);
    // A second later every bucket is full again: the table is pruned, not grown.
    let later = t + Duration::from_secs(2);
    assert!(a.take("198.51.100.9".parse().unwrap(), 2, later));
    assert!(a.len() < 10, "{} addresses kept", a.len());
}
