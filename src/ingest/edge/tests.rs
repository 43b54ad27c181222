use super::*;

fn nets(list: &[&str]) -> Vec<IpNet> {
    list.iter().map(|n| n.parse().unwrap()).collect()
}

/// `client_ip` with one `Forwarded` and one `X-Forwarded-For` value (empty: absent).
fn check(peer: &str, forwarded: &str, xff: &str, trusted: &[&str], expected: &str) {
    let fwd: Vec<&[u8]> = if forwarded.is_empty() { vec![] } else { vec![forwarded.as_bytes()] };
    let xff: Vec<&[u8]> = if xff.is_empty() { vec![] } else { vec![xff.as_bytes()] };
    let got = client_ip(peer.parse().unwrap(), fwd.iter().copied(), xff.iter().copied(), &nets(trusted));
    assert_eq!(got.to_string(), expected, "peer {peer}, Forwarded {forwarded:?}, XFF {xff:?}");
}

#[test]
fn client_ip_believes_only_trusted_proxies_and_reads_from_the_right() {
    let lb = &["10.0.0.0/8", "2001:db8:100::/48"];
    // Not from a proxy: the headers are the client's own words.
    check("203.0.113.7", "", "198.51.100.1", lb, "203.0.113.7");
    check("203.0.113.7", "for=198.51.100.1", "", lb, "203.0.113.7");
    // From the load balancer: the right-most untrusted entry.
    check("10.0.0.5", "", "198.51.100.1", lb, "198.51.100.1");
    check("10.0.0.5", "", "6.6.6.6, 198.51.100.1", lb, "198.51.100.1");
    check("10.0.0.5", "", "198.51.100.1, 10.1.2.3", lb, "198.51.100.1");
    check("10.0.0.5", "", " 2001:db8::7 ", lb, "2001:db8::7");
    check("10.0.0.5", "", "[2001:db8::7]:443", lb, "2001:db8::7");
    check("10.0.0.5", "", "198.51.100.1:5555", lb, "198.51.100.1");
    check("10.0.0.5", "", "::ffff:198.51.100.1", lb, "198.51.100.1");
    // Forwarded wins over X-Forwarded-For.
    check("10.0.0.5", "for=192.0.2.60;proto=https, for=\"[2001:db8::9]:4711\"", "6.6.6.6", lb, "2001:db8::9");
    check("10.0.0.5", "For=192.0.2.60;by=10.0.0.5", "", lb, "192.0.2.60");
    // Not an address: stop at the last trusted hop instead of guessing.
    check("10.0.0.5", "", "198.51.100.1, unknown", lb, "10.0.0.5");
    check("10.0.0.5", "for=_hidden", "", lb, "10.0.0.5");
    check("10.0.0.5", "", "", lb, "10.0.0.5");
    // Everything trusted: the left-most hop.
    check("10.0.0.5", "", "10.9.9.9, 10.1.1.1", lb, "10.9.9.9");
    // A dual-stack socket's mapped address is the IPv4 one.
    check("::ffff:203.0.113.7", "", "", lb, "203.0.113.7");
}

#[test]
fn a_padded_chain_keeps_its_right_most_hops() {
    let mut xff = (0..40).map(|i| format!("6.6.6.{i}")).collect::<Vec<_>>().join(",");
    xff.push_str(",198.51.100.1");
    check("10.0.0.5", "", &xff, &["10.0.0.0/8"], "198.51.100.1");
}

#[test]
fn ip_text_formats_on_the_stack() {
    for ip in ["203.0.113.7", "2001:db8::1", "ffff:ffff:ffff:ffff:ffff:ffff:255.255.255.255"] {
        let parsed: IpAddr = ip.parse().unwrap();
        assert_eq!(IpText::new(parsed).as_str(), parsed.to_string());
    }
}

#[test]
fn cookie_domain_is_the_common_registrable_part() {
    let cases: &[(&str, Option<&str>, Option<&str>)] = &[
        ("capig.shop.example", Some("www.shop.example"), Some("shop.example")),
        ("capig.shop.example", Some("shop.example"), Some("shop.example")),
        ("capig.shop.example", Some("WWW.Shop.Example"), Some("shop.example")),
        ("capig.shop.co.uk", Some("www.shop.co.uk"), Some("shop.co.uk")),
        ("capig.shop.example", Some("other.example"), None),
        ("capig.shop.example", Some("notshop.example"), None),
        ("capig.shop.example", None, Some("shop.example")),
        ("localhost", None, None),
        ("127.0.0.1", Some("127.0.0.1"), None),
    ];
    for (capig, page, want) in cases {
        assert_eq!(cookie_domain(capig, *page), *want, "{capig} / {page:?}");
    }
}

#[test]
fn minted_fbp_is_valid_stable_per_browser_and_window() {
    let m = FbpMinter::new(b"test key");
    let t = 1_700_000_123_456;
    let a = m.mint("203.0.113.7", "UA", t, Some("shop.example"));
    assert!(crate::event::ids::is_valid_fbp(a.as_str()), "{}", a.as_str());
    assert!(a.as_str().starts_with("fb.1.1699999800000."), "{}", a.as_str());
    // The same browser racing itself in the same window: the same value.
    assert_eq!(a.as_str(), m.mint("203.0.113.7", "UA", t + 30_000, Some("shop.example")).as_str());
    // Another browser, or another window: another value.
    assert_ne!(a.as_str(), m.mint("203.0.113.8", "UA", t, Some("shop.example")).as_str());
    assert_ne!(a.as_str(), m.mint("203.0.113.7", "UA", t + FBP_WINDOW_MS, Some("shop.example")).as_str());
    assert!(m.mint("1.2.3.4", "UA", t, Some("www.shop.example")).as_str().starts_with("fb.2."));
    // Another key (another installation): unrelated values.
    assert_ne!(a.as_str(), FbpMinter::new(b"other").mint("203.0.113.7", "UA", t, Some("shop.example")).as_str());
}

#[test]
fn the_fbp_cookie_line() {
    let mut out = Vec::new();
    write_cookie(&mut out, "_fbp", b"fb.1.1700000100000.1234567890", Some("shop.example"));
    assert_eq!(
        String::from_utf8(out).unwrap(),
        "_fbp=fb.1.1700000100000.1234567890; Domain=shop.example; Path=/; Max-Age=7776000; Secure; SameSite=Lax"
    );
    let mut out = Vec::new();
    write_cookie(&mut out, "_fbc", b"fb.1.1.x", None);
    assert_eq!(String::from_utf8(out).unwrap(), "_fbc=fb.1.1.x; Path=/; Max-Age=7776000; Secure; SameSite=Lax");
}

#[test]
fn origin_hosts() {
    assert_eq!(origin_host("https://www.shop.example"), Some("www.shop.example"));
    assert_eq!(origin_host("https://www.shop.example:8443"), Some("www.shop.example"));
    assert_eq!(origin_host("http://[::1]:8080"), Some("::1"));
    assert_eq!(origin_host("null"), None);
    assert_eq!(origin_host("https://"), None);
}
