//! The baseline server answers like the harness expects: 204 for JSON, 400 otherwise,
//! on kept-alive connections.

use std::io::{BufRead, BufReader, Read, Write};
use std::net::TcpStream;
use std::process::{Command, Stdio};
use std::time::Duration;

#[test]
fn answers_204_for_json_and_400_for_the_rest() {
    let mut child = Command::new(env!("CARGO_BIN_EXE_ordinary-server"))
        .arg("127.0.0.1:0")
        .stdout(Stdio::piped())
        .spawn()
        .unwrap();
    let mut line = String::new();
    BufReader::new(child.stdout.take().unwrap()).read_line(&mut line).unwrap();
    let addr = line.trim().strip_prefix("listening on ").unwrap().to_owned();
    let mut s = TcpStream::connect(&addr).unwrap();
    s.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
    let event = capig_bench::sample_event(1);
    for (body, want) in [(event.as_str(), "204"), ("{not json", "400"), (event.as_str(), "204")] {
        write!(s, "POST /capig/events HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\nContent-Length: {}\r\n\r\n{body}", body.len()).unwrap();
        let mut got = Vec::new();
        let mut b = [0u8; 1];
        while !got.ends_with(b"\r\n\r\n") {
            s.read_exact(&mut b).unwrap();
            got.push(b[0]);
        }
        let text = String::from_utf8_lossy(&got);
        assert!(text.starts_with(&format!("HTTP/1.1 {want}")), "{text}");
        if want == "400" {
            // hyper sends an empty body with content-length: 0 for our 400.
            assert!(text.to_ascii_lowercase().contains("content-length: 0"), "{text}");
        }
    }
    let _ = child.kill();
    let _ = child.wait();
}
