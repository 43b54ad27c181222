//! Body decoding: every encoding, the query string, and hostile input, through [`check`].

use serde_json::{json, Value};

use super::*;

/// What a decoded request should hold, or a fragment of the error message.
#[derive(Debug)]
enum Expect {
    Parsed {
        data: Option<Value>,
        access_token: Option<&'static str>,
        test_event_code: Option<&'static str>,
    },
    Error(&'static str),
}

fn parsed(data: Value, access_token: Option<&'static str>) -> Expect {
    Expect::Parsed {
        data: Some(data),
        access_token,
        test_event_code: None,
    }
}

fn check(
    name: &str,
    content_type: Option<&str>,
    query: Option<&str>,
    body: &[u8],
    expected: Expect,
) {
    let got = parse_request(content_type, query, body);
    match (&got, &expected) {
        (
            Ok(request),
            Expect::Parsed {
                data,
                access_token,
                test_event_code,
            },
        ) => {
            assert_eq!(&request.data, data, "{name}: data");
            assert_eq!(
                request.access_token.as_deref(),
                *access_token,
                "{name}: access_token"
            );
            assert_eq!(
                request.test_event_code.as_deref(),
                *test_event_code,
                "{name}: test_event_code"
            );
        }
        (Err(error), Expect::Error(fragment)) => {
            assert_eq!(error.code, 100, "{name}: code");
            assert_eq!(error.http_status, 400, "{name}: status");
            assert!(
                error.message.contains(fragment),
                "{name}: {:?} should contain {fragment:?}",
                error.message
            );
        }
        _ => panic!("{name}: expected {expected:?}, got {got:?}"),
    }
}

fn multipart(boundary: &str, fields: &[(&str, &str)]) -> Vec<u8> {
    let mut body = Vec::new();
    for (name, value) in fields {
        body.extend_from_slice(
            format!("--{boundary}\r\nContent-Disposition: form-data; name=\"{name}\"\r\n\r\n{value}\r\n")
                .as_bytes(),
        );
    }
    body.extend_from_slice(format!("--{boundary}--\r\n").as_bytes());
    body
}

fn form(fields: &[(&str, &str)]) -> Vec<u8> {
    form_urlencoded::Serializer::new(String::new())
        .extend_pairs(fields)
        .finish()
        .into_bytes()
}

/// Name, content type, query, body, expectation.
type Case = (
    &'static str,
    Option<&'static str>,
    Option<&'static str>,
    Vec<u8>,
    Expect,
);

const JSON: Option<&str> = Some("application/json");
const FORM: Option<&str> = Some("application/x-www-form-urlencoded");

#[test]
fn encodings() {
    let event = json!({"event_name": "Purchase"});
    let as_string = event.to_string();
    let python_data = json!([as_string]).to_string();
    let cases: Vec<Case> = vec![
        (
            "JSON body",
            JSON,
            None,
            json!({"data": [event], "access_token": "tok"}).to_string().into_bytes(),
            parsed(json!([event]), Some("tok")),
        ),
        (
            "JSON with charset",
            Some("application/json; charset=utf-8"),
            None,
            json!({"data": [event]}).to_string().into_bytes(),
            parsed(json!([event]), None),
        ),
        (
            "JSON with every parameter",
            JSON,
            None,
            json!({"data": [event], "access_token": "tok", "test_event_code": "TEST123",
                   "partner_agent": "capig", "namespace_id": "1", "upload_id": 7, "upload_tag": "t",
                   "upload_source": "s", "appsecret_proof": "ab", "unknown": {"x": 1}})
            .to_string()
            .into_bytes(),
            Expect::Parsed { data: Some(json!([event])), access_token: Some("tok"), test_event_code: Some("TEST123") },
        ),
        (
            "JSON data as a string",
            JSON,
            None,
            json!({"data": json!([event]).to_string()}).to_string().into_bytes(),
            parsed(json!([event]), None),
        ),
        (
            "Python SDK form: JSON array of JSON strings, token in the query",
            FORM,
            Some("access_token=qtok"),
            form(&[("data", &python_data)]),
            parsed(json!([as_string]), Some("qtok")),
        ),
        (
            "form with plus and percent escapes",
            FORM,
            None,
            b"data=%5B%7B%22event_name%22%3A%22A+B%22%7D%5D&access_token=a%2Bb".to_vec(),
            parsed(json!([{"event_name": "A B"}]), Some("a+b")),
        ),
        (
            "multipart like Meta's curl example",
            Some("multipart/form-data; boundary=------------------------abc123"),
            None,
            multipart("------------------------abc123", &[("data", &json!([event]).to_string()), ("access_token", "mtok")]),
            parsed(json!([event]), Some("mtok")),
        ),
        (
            "multipart with a quoted boundary and a file part",
            Some("multipart/form-data; boundary=\"b-1\""),
            None,
            format!(
                "--b-1\r\nContent-Disposition: form-data; name=\"data\"; filename=\"events.json\"\r\n\
                 Content-Type: application/json\r\n\r\n{}\r\n--b-1--\r\n",
                json!([event])
            )
            .into_bytes(),
            parsed(json!([event]), None),
        ),
        (
            "multipart with a preamble",
            Some("multipart/form-data; boundary=xyz"),
            None,
            [b"ignored preamble\r\n".as_slice(), &multipart("xyz", &[("access_token", "p")])].concat(),
            Expect::Parsed { data: None, access_token: Some("p"), test_event_code: None },
        ),
        (
            "no content type, JSON sniffed",
            None,
            None,
            json!({"data": [event]}).to_string().into_bytes(),
            parsed(json!([event]), None),
        ),
        (
            "text/plain form sniffed",
            Some("text/plain"),
            None,
            form(&[("data", "[]")]),
            parsed(json!([]), None),
        ),
        (
            "everything in the query, empty body",
            None,
            Some("data=%5B%5D&access_token=q"),
            Vec::new(),
            parsed(json!([]), Some("q")),
        ),
        (
            "body overrides query",
            JSON,
            Some("access_token=query"),
            json!({"access_token": "body", "data": []}).to_string().into_bytes(),
            parsed(json!([]), Some("body")),
        ),
        (
            "null parameter is absent",
            JSON,
            None,
            json!({"test_event_code": null, "data": []}).to_string().into_bytes(),
            parsed(json!([]), None),
        ),
    ];
    for (name, content_type, query, body, expected) in cases {
        check(name, content_type, query, &body, expected);
    }
}

#[test]
fn hostile_bodies() {
    let deep = format!("{{\"data\":{}1{}}}", "[".repeat(10_000), "]".repeat(10_000));
    let huge_string = format!("{{\"data\":[\"{}\"]}}", "a".repeat(8 << 20));
    let cases: Vec<Case> = vec![
        (
            "truncated JSON",
            JSON,
            None,
            b"{\"data\":[".to_vec(),
            Expect::Error("Invalid JSON"),
        ),
        (
            "JSON array body",
            JSON,
            None,
            b"[1,2]".to_vec(),
            Expect::Error("must be a JSON object"),
        ),
        (
            "bad UTF-8 in JSON",
            JSON,
            None,
            b"{\"data\":[\"\xff\xfe\"]}".to_vec(),
            Expect::Error("Invalid JSON"),
        ),
        (
            "deep nesting",
            JSON,
            None,
            deep.into_bytes(),
            Expect::Error("Invalid JSON"),
        ),
        (
            "NaN literal",
            JSON,
            None,
            b"{\"data\":[NaN]}".to_vec(),
            Expect::Error("Invalid JSON"),
        ),
        (
            "Infinity literal",
            JSON,
            None,
            b"{\"data\":[Infinity]}".to_vec(),
            Expect::Error("Invalid JSON"),
        ),
        (
            "number out of range",
            JSON,
            None,
            b"{\"data\":[1e400]}".to_vec(),
            Expect::Error("Invalid JSON"),
        ),
        (
            "duplicate top-level key",
            JSON,
            None,
            b"{\"data\":[],\"data\":[1]}".to_vec(),
            Expect::Error("duplicate key \"data\""),
        ),
        (
            "duplicate nested key",
            JSON,
            None,
            b"{\"data\":[{\"event_name\":\"a\",\"event_name\":\"b\"}]}".to_vec(),
            Expect::Error("duplicate key"),
        ),
        (
            "trailing garbage",
            JSON,
            None,
            b"{\"data\":[]} x".to_vec(),
            Expect::Error("Invalid JSON"),
        ),
        (
            "huge string is just a string",
            JSON,
            None,
            huge_string.clone().into_bytes(),
            parsed(json!(["a".repeat(8 << 20)]), None),
        ),
        (
            "form data not JSON",
            FORM,
            None,
            b"data=%5B".to_vec(),
            Expect::Error("param data must be a JSON array"),
        ),
        (
            "form bad escape",
            FORM,
            None,
            b"data=%ZZ".to_vec(),
            Expect::Error("percent escape"),
        ),
        (
            "form cut escape",
            FORM,
            None,
            b"access_token=%4".to_vec(),
            Expect::Error("percent escape"),
        ),
        (
            "form bad UTF-8",
            FORM,
            None,
            b"access_token=%ff%fe".to_vec(),
            Expect::Error("UTF-8"),
        ),
        (
            "query bad UTF-8",
            None,
            Some("access_token=%C3%28"),
            Vec::new(),
            Expect::Error("UTF-8"),
        ),
        (
            "JSON token an object",
            JSON,
            None,
            b"{\"access_token\":{}}".to_vec(),
            Expect::Error("access_token must be a string"),
        ),
        (
            "multipart without boundary",
            Some("multipart/form-data"),
            None,
            b"x".to_vec(),
            Expect::Error("boundary"),
        ),
        (
            "multipart never closed",
            Some("multipart/form-data; boundary=q"),
            None,
            b"--q\r\nContent-Disposition: form-data; name=\"data\"\r\n\r\n[]".to_vec(),
            Expect::Error("Malformed multipart"),
        ),
        (
            "multipart headers never end",
            Some("multipart/form-data; boundary=q"),
            None,
            b"--q\r\nContent-Disposition: form-data".to_vec(),
            Expect::Error("Malformed multipart"),
        ),
        (
            "multipart without any boundary line",
            Some("multipart/form-data; boundary=q"),
            None,
            b"hello".to_vec(),
            Expect::Error("Malformed multipart"),
        ),
        (
            "multipart bad UTF-8",
            Some("multipart/form-data; boundary=q"),
            None,
            b"--q\r\nContent-Disposition: form-data; name=\"data\"\r\n\r\n\xff\r\n--q--".to_vec(),
            Expect::Error("UTF-8"),
        ),
    ];
    for (name, content_type, query, body, expected) in cases {
        check(name, content_type, query, &body, expected);
    }
}

#[test]
fn arbitrary_bytes_never_panic() {
    // A cheap deterministic fuzz over every decoder: the answer may be anything but a panic.
    let mut state = 0x2545_f491_4f6c_dd1du64;
    let seeds: [&[u8]; 4] = [
        b"{\"data\":[{\"event_name\":\"a\"}],\"access_token\":\"t\"}",
        b"data=%5B%7B%7D%5D&access_token=t",
        b"--q\r\nContent-Disposition: form-data; name=\"data\"\r\n\r\n[]\r\n--q--\r\n",
        b"",
    ];
    let content_types = [JSON, FORM, Some("multipart/form-data; boundary=q"), None];
    for round in 0..4000 {
        let mut body = seeds[round % seeds.len()].to_vec();
        for _ in 0..(round % 7) + 1 {
            state ^= state << 13;
            state ^= state >> 7;
            state ^= state << 17;
            if body.is_empty() {
                body.push(state as u8);
                continue;
            }
            let at = (state >> 8) as usize % body.len();
            match state % 3 {
                0 => body[at] = (state >> 40) as u8,
                1 => {
                    body.remove(at);
                }
                _ => body.insert(at, (state >> 32) as u8),
            }
        }
        let _ = parse_request(
            content_types[round % content_types.len()],
            Some("a=%"),
            &body,
        );
    }
}
