//! `capig check-config` as an operator runs it: the real binary on the shipped example,
//! and on broken copies of it written to a temporary directory.

use std::path::{Path, PathBuf};
use std::process::Command;

struct Case {
    name: &'static str,
    /// Text replacements applied to a copy of examples/capig.toml.
    edits: &'static [(&'static str, &'static str)],
    /// Files of the copied examples/secrets/ to delete.
    remove: &'static [&'static str],
    args: &'static [&'static str],
    expect: Expect,
}

enum Expect {
    /// Exit 0, and stdout has these lines' parts.
    Ok(&'static [&'static str]),
    /// Exit 1, and stderr has exactly one line per problem: (text on the line of the file
    /// the problem points at, or "--set …" for an override; key; part of the message).
    Problems(&'static [(&'static str, &'static str, &'static str)]),
}

fn example_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("examples")
}

/// A copy of the example and its secrets in a fresh directory under cargo's temporary
/// directory for integration tests.
fn copy_example(name: &str, edits: &[(&str, &str)], remove: &[&str]) -> PathBuf {
    let dir = Path::new(env!("CARGO_TARGET_TMPDIR"))
        .join(format!("check-config-{}-{name}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(dir.join("secrets")).unwrap();
    for entry in std::fs::read_dir(example_dir().join("secrets")).unwrap() {
        let entry = entry.unwrap();
        std::fs::copy(entry.path(), dir.join("secrets").join(entry.file_name())).unwrap();
    }
    for file in remove {
        std::fs::remove_file(dir.join("secrets").join(file)).unwrap();
    }
    let mut text = std::fs::read_to_string(example_dir().join("capig.toml")).unwrap();
    for (from, to) in edits {
        assert!(
            text.contains(from),
            "{name}: `{from}` is not in the example"
        );
        text = text.replacen(from, to, 1);
    }
    std::fs::write(dir.join("capig.toml"), text).unwrap();
    dir
}

fn check(case: &Case) {
    let dir = copy_example(case.name, case.edits, case.remove);
    let config = dir.join("capig.toml");
    let output = Command::new(env!("CARGO_BIN_EXE_capig"))
        .arg("check-config")
        .arg("--config")
        .arg(&config)
        .args(case.args)
        .output()
        .unwrap();
    let stdout = String::from_utf8(output.stdout).unwrap();
    let stderr = String::from_utf8(output.stderr).unwrap();
    let text = std::fs::read_to_string(&config).unwrap();
    match case.expect {
        Expect::Ok(parts) => {
            assert!(
                output.status.success(),
                "{}: exit {:?}\n{stderr}",
                case.name,
                output.status.code()
            );
            assert!(
                stdout.starts_with(&format!("ok: {}\n", config.display())),
                "{}:\n{stdout}",
                case.name
            );
            for part in parts {
                assert!(
                    stdout.contains(part),
                    "{}: `{part}` not in:\n{stdout}",
                    case.name
                );
            }
            assert!(
                !stdout.contains("EXAMPLE-NOT-A-REAL-TOKEN"),
                "{}: the token is printed",
                case.name
            );
        }
        Expect::Problems(problems) => {
            assert_eq!(
                output.status.code(),
                Some(1),
                "{}:\n{stdout}{stderr}",
                case.name
            );
            let lines: Vec<&str> = stderr.lines().collect();
            assert_eq!(lines.len(), problems.len() + 1, "{}:\n{stderr}", case.name);
            let plural = if problems.len() == 1 { "" } else { "s" };
            let last = format!("{} problem{plural} in {}", problems.len(), config.display());
            assert_eq!(lines[problems.len()], last);
            for (line, (marker, key, message)) in lines.iter().zip(problems) {
                let location = if marker.starts_with("--set ") {
                    marker.to_string()
                } else {
                    let n = text
                        .lines()
                        .position(|l| l.contains(marker))
                        .expect("marker is in the file")
                        + 1;
                    format!("{}:{n}:", config.display())
                };
                assert!(
                    line.starts_with(&location),
                    "{}: `{line}` is not at `{location}`",
                    case.name
                );
                if !key.is_empty() {
                    assert!(
                        line.contains(&format!(": {key}: ")),
                        "{}: `{line}` is not about {key}",
                        case.name
                    );
                }
                assert!(
                    line.contains(message),
                    "{}: `{line}` does not say `{message}`",
                    case.name
                );
                assert!(
                    line.split_once(" — ")
                        .is_some_and(|(_, hint)| !hint.is_empty()),
                    "{}: no hint in `{line}`",
                    case.name
                );
                assert!(
                    !line.contains("EXAMPLE-NOT-A-REAL-TOKEN"),
                    "{}: the token is printed",
                    case.name
                );
            }
        }
    }
    std::fs::remove_dir_all(dir).unwrap();
}

#[test]
fn check_config() {
    let cases = [
        Case {
            name: "as-shipped",
            edits: &[],
            remove: &[],
            args: &[],
            expect: Expect::Ok(&[
                "listeners:\n  https 0.0.0.0:443\n  redirect 0.0.0.0:80\n",
                "capig.shop.example (tls ",
                "pixels: 2 (1 enabled)",
                "1234567890123456 enabled, token loaded, 2 access key(s), domains: shop.example, blocked: PageView",
                "6543210987654321 disabled, token not loaded",
                "upstream: https://graph.facebook.com/v26.0 batches of 1000 events",
                "spool: /var/lib/capig/spool (fsync interval 10 ms, max 10 GiB)",
            ]),
        },
        Case {
            name: "set-listener",
            edits: &[],
            remove: &[],
            args: &["--set", "listeners.0.addr=127.0.0.1:8443", "--set", "listeners.1.addr=127.0.0.1:8080"],
            expect: Expect::Ok(&["  https 127.0.0.1:8443\n  redirect 127.0.0.1:8080\n"]),
        },
        Case {
            name: "set-enables-pixel-without-token",
            edits: &[],
            remove: &[],
            args: &["--set", "pixels.1.enabled=true"],
            expect: Expect::Problems(&[(
                "access_token_file = \"secrets/6543210987654321.token\"",
                "pixels[1].access_token_file",
                "6543210987654321.token`: No such file",
            )]),
        },
        Case {
            name: "set-errors",
            edits: &[],
            remove: &[],
            args: &["--set", "listeners.0.addr=nowhere:443", "--set", "upstream.batch_size=1001"],
            expect: Expect::Problems(&[
                ("--set listeners.0.addr", "listeners[0].addr", "`nowhere:443` is not an IP address and port"),
                ("--set upstream.batch_size", "upstream.batch_size", "Meta accepts at most 1,000 events per request"),
            ]),
        },
        Case {
            name: "broken",
            edits: &[
                ("batch_size = 1000", "batch_size = 0"),
                ("api_version = \"v26.0\"", "api_version = \"26\""),
                ("id = \"1234567890123456\"", "id = \"1234-5678\""),
                ("kind = \"redirect\"", "kind = \"redirekt\""),
                ("linger_ms = 1000", "lingr_ms = 1000"),
                ("max_bytes = \"10 GiB\"", "max_bytes = \"10 GiG\""),
            ],
            remove: &[],
            args: &[],
            expect: Expect::Problems(&[
                ("kind = \"redirekt\"", "listeners[1].kind", "did you mean \"redirect\"?"),
                ("id = \"1234-5678\"", "pixels[0].id", "`1234-5678` is not a pixel id"),
                ("api_version = \"26\"", "upstream.api_version", "`26` is not a Graph API version"),
                ("batch_size = 0", "upstream.batch_size", "0 is out of range"),
                ("lingr_ms", "upstream.lingr_ms", "unknown key `lingr_ms` in [upstream] — did you mean `linger_ms`?"),
                ("max_bytes = \"10 GiG\"", "spool.max_bytes", "unknown unit `GiG`"),
            ]),
        },
        Case {
            name: "missing-secrets",
            edits: &[],
            remove: &["1234567890123456.token", "capig.shop.example.key"],
            args: &[],
            expect: Expect::Problems(&[
                ("tls_key = \"secrets/capig.shop.example.key\"", "domains[0].tls_key", "cannot read"),
                ("access_token_file = \"secrets/1234567890123456.token\"", "pixels[0].access_token_file", "Events Manager"),
            ]),
        },
        Case {
            name: "https-without-tls",
            edits: &[
                ("tls_cert = \"secrets/capig.shop.example.crt\"", ""),
                ("tls_key = \"secrets/capig.shop.example.key\"", ""),
            ],
            remove: &[],
            args: &[],
            expect: Expect::Problems(&[(
                "kind = \"https\"",
                "listeners[0].kind",
                "an https listener needs a [[domains]] entry with tls_cert and tls_key",
            )]),
        },
        Case {
            name: "syntax",
            edits: &[("[upstream]", "[upstream")],
            remove: &[],
            args: &[],
            expect: Expect::Problems(&[("[upstream", "", "TOML syntax error")]),
        },
    ];
    for case in &cases {
        check(case);
    }
}

#[test]
fn missing_file() {
    let output = Command::new(env!("CARGO_BIN_EXE_capig"))
        .args(["check-config", "--config", "/nonexistent/capig.toml"])
        .output()
        .unwrap();
    assert_eq!(output.status.code(), Some(1));
    let stderr = String::from_utf8(output.stderr).unwrap();
    assert!(
        stderr.starts_with("/nonexistent/capig.toml: cannot read the configuration"),
        "{stderr}"
    );
    assert!(stderr.contains("--config"), "{stderr}");
}
