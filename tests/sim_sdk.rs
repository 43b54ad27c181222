//! Meta's own business SDKs (Python `facebook_business`, Node
//! `facebook-nodejs-business-sdk`) against the simulator, unchanged but for the Graph
//! base URL: `tests/sdk/python_sdk.py` and `tests/sdk/node_sdk.js` send one realistic
//! event (accepted) and one 8 days old (rejected with code 100).
//!
//! The SDKs are installed by `tests/sdk/install.sh` (a venv in `tests/sdk/.venv`,
//! `node_modules` in `tests/sdk`). Without them these tests fail and say so, unless
//! `CAPIG_SKIP_SDK_TESTS=1`.

use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};
use std::time::Duration;

use capig::sim::{SimArgs, Simulator};

const SCRIPT_TIMEOUT: Duration = Duration::from_secs(90);

fn sdk_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/sdk")
}

fn skipped() -> bool {
    std::env::var("CAPIG_SKIP_SDK_TESTS").is_ok_and(|v| v == "1")
}

/// Fails with what to run when an SDK is missing.
fn require(installed: bool, what: &str) {
    assert!(
        installed,
        "{what} is not installed: run tests/sdk/install.sh (or set CAPIG_SKIP_SDK_TESTS=1 to skip the SDK tests)"
    );
}

/// Runs a script to completion within [`SCRIPT_TIMEOUT`], killing it past that.
fn run(mut command: Command) -> Output {
    let child = command
        .current_dir(sdk_dir())
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("the script starts");
    let pid = child.id();
    let (done_tx, done_rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        let _ = done_tx.send(child.wait_with_output());
    });
    match done_rx.recv_timeout(SCRIPT_TIMEOUT) {
        Ok(output) => output.expect("the script ran"),
        Err(_) => {
            let _ = Command::new("kill")
                .args(["-KILL", &pid.to_string()])
                .status();
            panic!("the SDK script did not finish within {SCRIPT_TIMEOUT:?}");
        }
    }
}

fn sha256_hex(s: &str) -> String {
    ring::digest::digest(&ring::digest::SHA256, s.as_bytes())
        .as_ref()
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect()
}

/// Starts a simulator, runs the SDK script against it and checks what it saw.
fn check(pixel: &str, command: impl FnOnce(&str) -> Command) {
    let sim = Simulator::start(SimArgs {
        listen: "127.0.0.1:0".into(),
        ..SimArgs::default()
    })
    .expect("simulator starts");
    let output = run(command(&sim.url()));
    let stdout = String::from_utf8_lossy(&output.stdout);
    let stderr = String::from_utf8_lossy(&output.stderr);
    println!("{stdout}");
    assert!(
        output.status.success(),
        "the SDK script failed ({}):\n{stdout}\n{stderr}",
        output.status
    );

    let stats = sim.stats();
    assert_eq!(stats.events_received, 1, "{stats:?}");
    assert_eq!(stats.events_rejected, 1, "{stats:?}");
    assert_eq!(stats.by_pixel[pixel].requests, 2, "{stats:?}");
    assert_eq!(stats.by_error_code.get("100"), Some(&1), "{stats:?}");

    let events = sim.events(Some(pixel));
    let user_data = &events[0].event["user_data"];
    assert_eq!(
        user_data["em"][0],
        sha256_hex("joe.smith@example.com"),
        "the SDK normalized and hashed the email"
    );
    assert_eq!(
        user_data["ph"][0],
        sha256_hex("16505551212"),
        "the SDK normalized and hashed the phone"
    );
    assert_eq!(user_data["client_ip_address"], "203.0.113.7");
    assert_eq!(events[0].event["custom_data"]["value"], 142.52);
}

#[test]
fn python_sdk_against_the_simulator() {
    if skipped() {
        return;
    }
    let python = sdk_dir().join(".venv/bin/python");
    let installed = python.exists()
        && Command::new(&python)
            .args(["-c", "import facebook_business"])
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .status()
            .is_ok_and(|s| s.success());
    require(installed, "Meta's Python SDK (facebook_business)");
    check("1111111111", |url| {
        let mut command = Command::new(&python);
        command.args(["python_sdk.py", url, "1111111111"]);
        command
    });
}

#[test]
fn node_sdk_against_the_simulator() {
    if skipped() {
        return;
    }
    let installed = sdk_dir()
        .join("node_modules/facebook-nodejs-business-sdk/package.json")
        .exists()
        && Command::new("node")
            .arg("--version")
            .stdout(Stdio::null())
            .status()
            .is_ok_and(|s| s.success());
    require(
        installed,
        "Meta's Node SDK (facebook-nodejs-business-sdk) or node",
    );
    check("2222222222", |url| {
        let mut command = Command::new("node");
        command.args(["node_sdk.js", url, "2222222222"]);
        command
    });
}
