use super::*;

#[test]
fn hosts_of_urls() {
    let cases: &[(&str, Option<&str>)] = &[
        ("https://shop.example/p?q=1", Some("shop.example")),
        ("HTTPS://Shop.Example:8443/p", Some("Shop.Example")),
        ("http://user:pw@shop.example/", Some("shop.example")),
        ("https://[2001:db8::1]:443/x", Some("2001:db8::1")),
        ("https://shop.example#frag", Some("shop.example")),
        ("ftp://shop.example/", None),
        ("shop.example/p", None),
        ("https:///p", None),
        ("", None),
    ];
    for &(url, expected) in cases {
        assert_eq!(url_host(url), expected, "{url}");
    }
}

#[test]
fn domain_matching() {
    let cases: &[(&str, &str, bool)] = &[
        ("shop.example", "shop.example", true),
        ("www.shop.example", "shop.example", true),
        ("WWW.Shop.Example", "shop.example", true),
        ("shop.example.", "shop.example", true),
        ("evilshop.example", "shop.example", false),
        ("shop.example.evil", "shop.example", false),
        ("example", "shop.example", false),
    ];
    for &(host, domain, expected) in cases {
        assert_eq!(host_matches(host, domain), expected, "{host} vs {domain}");
    }
}

#[test]
fn pixel_ids() {
    assert_eq!(parse_pixel_id("1234567890123456"), Some(1234567890123456));
    for bad in ["", "0", "12a", " 12", "-1", "123456789012345678901", "99999999999999999999"] {
        assert_eq!(parse_pixel_id(bad), None, "{bad:?}");
    }
}

#[test]
fn dedup_window_remembers_within_time_and_capacity() {
    let mut w = DedupWindow::new(DedupConfig { window_secs: 100, capacity: 3 });
    assert!(!w.check_and_insert(1, 1000));
    assert!(w.check_and_insert(1, 1050), "seen 50 s ago");
    assert!(!w.check_and_insert(1, 1100), "expired after 100 s");
    // Capacity: the oldest goes first.
    assert!(!w.check_and_insert(2, 1100));
    assert!(!w.check_and_insert(3, 1100));
    assert!(!w.check_and_insert(4, 1100));
    assert_eq!(w.len(), 3);
    assert!(!w.check_and_insert(1, 1100), "1 was pushed out by 2, 3, 4");
    assert!(w.check_and_insert(4, 1100));
    w.forget(4);
    assert!(!w.check_and_insert(4, 1100), "forgotten ids pass again");
}

#[test]
fn dedup_is_per_pixel_and_keyed() {
    let mut p = Policies::allow_all(DedupConfig::default());
    let fp = p.fingerprint("Purchase", "order-1");
    assert_ne!(fp, p.fingerprint("AddToCart", "order-1"), "event name is part of the key");
    assert_ne!(p.fingerprint("ab", "c"), p.fingerprint("a", "bc"), "fields are separated");
    assert!(!p.is_duplicate(1, fp, 10));
    assert!(p.is_duplicate(1, fp, 11));
    assert!(!p.is_duplicate(2, fp, 11), "another pixel has its own window");
}

#[test]
fn dedup_memory_stays_bounded() {
    let mut w = DedupWindow::new(DedupConfig { window_secs: 1_000_000, capacity: 1000 });
    for i in 0..100_000u64 {
        w.check_and_insert(i.wrapping_mul(0x9E37_79B9_7F4A_7C15), 5);
    }
    assert_eq!(w.len(), 1000);
    assert!(w.order.len() <= 1000);
}

#[test]
fn policies_lookup() {
    let pixel = PixelPolicy { id: 7, enabled: true, domains: vec!["shop.example".into()], blocked_events: vec!["Lead".into()] };
    let p = Policies::configured([pixel.clone()], DedupConfig::default());
    assert_eq!(p.lookup(7), Ok(Some(&pixel)));
    assert_eq!(p.lookup(8), Err(UnknownPixel));
    assert!(pixel.allows_host("www.shop.example"));
    assert!(!pixel.allows_host("other.example"));
    assert!(pixel.blocks_event("Lead"));
    assert!(!pixel.blocks_event("lead"));
    assert_eq!(Policies::allow_all(DedupConfig::default()).lookup(8), Ok(None));
}
