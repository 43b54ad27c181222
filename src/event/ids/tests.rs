use super::*;

fn check(kind: CookieKind, value: &str, expected: bool) {
    assert_eq!(is_valid_cookie(kind, value), expected, "{kind:?} {value:?}");
}

#[test]
fn cookie_formats() {
    use CookieKind::*;
    let cases: &[(CookieKind, &str, bool)] = &[
        (Fbp, "fb.1.1596403881668.1116446470", true),
        (Fbp, "fb.2.1596403881668.1116446470", true),
        (Fbp, "fb.1.1596403881668.1116446470.AQ", true),
        (Fbp, "fb.1.1596403881668.1116446470.ABcDEFGh", true),
        (Fbp, "fb.1.1596403881668.abc", false),
        (Fbp, "fb.1.1596403881668", false),
        (Fbp, "fx.1.1596403881668.1116446470", false),
        (Fbp, "fb.a.1596403881668.1116446470", false),
        (Fbp, "fb.1.15964.1116446470", false),
        (Fbp, "", false),
        (Fbp, "fb.1.1596403881668.1116446470.AQ.x", false),
        (Fbc, "fb.1.1554763741205.IwAR2F4-dbP0l7Mn1IawQQGCINEz7PYXQvwjNwB_qa2ofrHyiLjcbCRxTDMgE", true),
        (Fbc, "fb.1.1554763741205.IwAR2F4-dbP0l7Mn1IawQQGCINEz7PYXQvwjNwB_qa2ofrHyiLjcbCRxTDMgE.ABcDEFGh", true),
        (Fbc, "fb.1.1554763741205.", false),
        (Fbc, "fb.1.1554763741205.Iw AR", false),
        (Fbc, "fb.1.1554763741205.Iw\"AR", false),
    ];
    for &(kind, value, expected) in cases {
        check(kind, value, expected);
    }
    let long = format!("fb.1.1554763741205.{}", "a".repeat(MAX_FBCLID_LEN + 1));
    check(CookieKind::Fbc, &long, false);
}

#[test]
fn fbclid_in_urls() {
    let cases: &[(&str, Option<&str>)] = &[
        ("https://shop.example/p?fbclid=IwAR2F4-x_y", Some("IwAR2F4-x_y")),
        ("https://shop.example/p?a=1&fbclid=AbC#frag", Some("AbC")),
        ("https://shop.example/p?a=1&xfbclid=AbC", None),
        ("https://shop.example/p#fbclid=AbC", None),
        ("https://shop.example/p?fbclid=", None),
        ("https://shop.example/p?fbclid=a%20b", None),
        ("https://shop.example/p", None),
    ];
    for &(url, expected) in cases {
        assert_eq!(fbclid_from_url(url), expected, "{url}");
    }
}

#[test]
fn builds_fbc_from_fbclid() {
    let mut out = Vec::new();
    write_fbc(&mut out, 1554763741205, "IwAR2F4");
    assert_eq!(out, b"fb.1.1554763741205.IwAR2F4");
    assert!(is_valid_fbc(std::str::from_utf8(&out).unwrap()));
    let mut buf = [0u8; 20];
    assert_eq!(format_u64(0, &mut buf), b"0");
    assert_eq!(format_u64(u64::MAX, &mut buf), b"18446744073709551615");
}

#[test]
fn cookies_in_headers() {
    let h = "_ga=GA1.2; _fbp=fb.1.1596403881668.1116446470;_fbc=\"fb.1.1554763741205.AbC\"; x=1";
    assert_eq!(cookie(h, "_fbp"), Some("fb.1.1596403881668.1116446470"));
    assert_eq!(cookie(h, "_fbc"), Some("fb.1.1554763741205.AbC"));
    assert_eq!(cookie(h, "_fb"), None);
    assert_eq!(cookie("", "_fbp"), None);
    assert_eq!(cookie("garbage", "_fbp"), None);
}
