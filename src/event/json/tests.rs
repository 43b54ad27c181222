use super::*;

/// Parses `input` and re-serializes it; `Err` carries the parse error text.
fn roundtrip(input: &str) -> Result<String, String> {
    let mut parser = Parser::default();
    let mut buf = input.as_bytes().to_vec();
    parser
        .parse(&mut buf, |v| {
            let mut out = Vec::new();
            write_value(&mut out, v);
            String::from_utf8(out).unwrap()
        })
        .map_err(|e| e.to_string())
}

fn check(input: &str, expected: Result<&str, &str>) {
    match (roundtrip(input), expected) {
        (Ok(got), Ok(want)) => assert_eq!(got, want, "{input:?}"),
        (Err(got), Err(want)) => assert!(got.contains(want), "{input:?}: {got:?} lacks {want:?}"),
        (got, want) => panic!("{input:?}: got {got:?}, want {want:?}"),
    }
}

#[test]
fn values_roundtrip() {
    let cases: &[(&str, Result<&str, &str>)] = &[
        (r#"{"a":1,"b":[true,false,null],"c":"x"}"#, Ok(r#"{"a":1,"b":[true,false,null],"c":"x"}"#)),
        (r#" { "a" : -5 , "b" : 1.5 } "#, Ok(r#"{"a":-5,"b":1.5}"#)),
        (r#"{"s":"line\nbreak \"q\" \\ \u0001 é 😀"}"#, Ok(r#"{"s":"line\nbreak \"q\" \\ \u0001 é 😀"}"#)),
        (r#"{"a":{},"b":[]}"#, Ok(r#"{"a":{},"b":[]}"#)),
        (r#"{"a":1,"a":2}"#, Ok(r#"{"a":1,"a":2}"#)),
        (r#"[{"a":[1,[2,[3]]]},{"b":2}]"#, Ok(r#"[{"a":[1,[2,[3]]]},{"b":2}]"#)),
        (r#"{"big":18446744073709551615,"neg":-9223372036854775808}"#, Ok(r#"{"big":18446744073709551615,"neg":-9223372036854775808}"#)),
        (r#"{"f":1e3}"#, Ok(r#"{"f":1000}"#)),
        ("", Err("empty")),
        ("{", Err("not valid JSON")),
        (r#"{"a":NaN}"#, Err("not valid JSON")),
        (r#"{"a":1} x"#, Err("not valid JSON")),
        (&"[".repeat(40), Err("not valid JSON")),
    ];
    for (input, expected) in cases {
        check(input, *expected);
    }
}

#[test]
fn deep_nesting_is_refused_with_a_clear_message() {
    let deep = format!("{}1{}", "[".repeat(MAX_DEPTH + 1), "]".repeat(MAX_DEPTH + 1));
    check(&deep, Err("nested deeper than 16"));
    let ok = format!("{}1{}", "[".repeat(MAX_DEPTH - 1), "]".repeat(MAX_DEPTH - 1));
    assert!(roundtrip(&ok).is_ok());
}

#[test]
fn bad_utf8_is_refused() {
    let mut parser = Parser::default();
    let mut buf = b"{\"a\":\"\xff\xfe\"}".to_vec();
    let err = parser.parse(&mut buf, |_| ()).unwrap_err();
    assert!(err.to_string().contains("UTF-8"), "{err}");
}

#[test]
fn parser_is_reusable_across_bodies() {
    let mut parser = Parser::default();
    for i in 0..100 {
        let mut buf = format!(r#"{{"n":{i},"s":"v{i}"}}"#).into_bytes();
        let n = parser.parse(&mut buf, |v| v.entries().unwrap().next().unwrap().1.as_number()).unwrap();
        assert!(matches!(n, Some(Number::U(x)) if x == i) || matches!(n, Some(Number::I(x)) if x == i as i64), "{n:?}");
    }
}

#[test]
fn escapes_control_characters() {
    let mut out = Vec::new();
    write_str(&mut out, "a\u{0}b\u{1f}c\td");
    assert_eq!(out, br#""a\u0000b\u001fc\td""#);
}

#[test]
fn string_writer_matches_serde_at_every_position() {
    // The writer skips eight clean bytes at a time: put each kind of byte that needs
    // escaping (and some that do not) at every offset of strings of every length
    // around the word size, and compare with serde_json.
    let specials = ['"', '\\', '\n', '\r', '\t', '\u{0}', '\u{1f}', '\u{7f}', ' ', '!', '#', '[', ']', 'é', '€', '😀'];
    for len in 0..24 {
        for at in 0..len.max(1) {
            for &c in &specials {
                let s: String = (0..len).map(|i| if i == at { c } else { (b'a' + (i % 26) as u8) as char }).collect();
                let mut out = Vec::new();
                write_str(&mut out, &s);
                assert_eq!(String::from_utf8(out).unwrap(), serde_json::to_string(&s).unwrap(), "{s:?}");
            }
        }
    }
    // serde_json writes \b and \f where we write \u0008 and \u000c: compare what they mean.
    let all: String = (0u8..128).map(char::from).collect();
    let mut out = Vec::new();
    write_str(&mut out, &all);
    assert_eq!(serde_json::from_slice::<String>(&out).unwrap(), all);
}

