//! Embeds the web client: `web-client/capig.js`, with full-line comments and indentation
//! stripped (newlines kept, so the script means the same), precompressed with gzip and
//! brotli, and its ETag (the first 16 hex digits of its SHA-256), into `$OUT_DIR` for
//! `ingest::client_js`.

use std::io::Write;
use std::path::Path;

fn main() {
    let src = Path::new("web-client/capig.js");
    println!("cargo:rerun-if-changed={}", src.display());
    let text = std::fs::read_to_string(src).expect("web-client/capig.js is part of the source tree");
    let mut out = String::with_capacity(text.len());
    let mut in_header = true;
    for line in text.lines() {
        let t = line.trim_start();
        // The leading /*! … */ block (what it is, how to use it) stays.
        if in_header {
            out.push_str(line);
            out.push('\n');
            if t.contains("*/") {
                in_header = false;
            }
            continue;
        }
        if t.is_empty() || t.starts_with("//") {
            continue;
        }
        out.push_str(t);
        out.push('\n');
    }
    let dir = std::env::var("OUT_DIR").expect("cargo sets OUT_DIR");
    let dir = Path::new(&dir);
    std::fs::write(dir.join("capig.js"), &out).unwrap();

    let mut gz = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::best());
    gz.write_all(out.as_bytes()).unwrap();
    std::fs::write(dir.join("capig.js.gz"), gz.finish().unwrap()).unwrap();

    let mut br = Vec::new();
    {
        let mut w = brotli::CompressorWriter::new(&mut br, 4096, 11, 22);
        w.write_all(out.as_bytes()).unwrap();
    }
    std::fs::write(dir.join("capig.js.br"), br).unwrap();

    let digest = ring::digest::digest(&ring::digest::SHA256, out.as_bytes());
    let etag: String = digest.as_ref()[..8].iter().map(|b| format!("{b:02x}")).collect();
    std::fs::write(dir.join("capig.js.etag"), format!("\"{etag}\"")).unwrap();
}
