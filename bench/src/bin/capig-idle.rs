//! `capig-idle`: opens many idle WebSocket connections to capig and holds them, for the
//! memory measurement of `bench/compare`.
//!
//! Prints `{"open":N,"open_seconds":S}` once all are open, holds them for `--hold-secs`,
//! then pings every one and prints `{"alive":M}` (M = N when the server kept them all).
//! Needs an fd limit above N (`ulimit -n`).

use std::io::Write;
use std::net::{Ipv4Addr, SocketAddr};
use std::process::ExitCode;
use std::time::{Duration, Instant};

use capig_bench::idle::{Idle, IdleConfig};
use clap::Parser;

#[derive(Parser)]
#[command(about = "Open many idle WebSocket connections to capig and hold them")]
struct Args {
    /// capig's plain-HTTP listener.
    #[arg(long, default_value = "127.0.0.1:8080")]
    target: SocketAddr,
    /// How many connections.
    #[arg(long, default_value_t = 1000)]
    connections: usize,
    /// Host header (one of capig's domains).
    #[arg(long, default_value = "capig.shop.example")]
    host: String,
    /// Origin header (an allowed origin of that domain).
    #[arg(long, default_value = "https://www.shop.example")]
    origin: String,
    /// The first client source address; each takes --per-source connections.
    #[arg(long, default_value = "127.1.0.1")]
    first_source: Ipv4Addr,
    #[arg(long, default_value_t = 1000)]
    per_source: usize,
    /// Seconds to hold the connections open before checking them.
    #[arg(long, default_value_t = 5)]
    hold_secs: u64,
}

fn main() -> ExitCode {
    let a = Args::parse();
    let cfg = IdleConfig {
        target: a.target,
        connections: a.connections,
        host: a.host,
        origin: a.origin,
        first_source: a.first_source,
        per_source: a.per_source,
        ..IdleConfig::default()
    };
    let start = Instant::now();
    let mut idle = match Idle::open(&cfg) {
        Ok(i) => i,
        Err(e) => {
            eprintln!("capig-idle: {e}");
            return ExitCode::FAILURE;
        }
    };
    println!("{{\"open\":{},\"open_seconds\":{:.2}}}", idle.len(), start.elapsed().as_secs_f64());
    let _ = std::io::stdout().flush();
    std::thread::sleep(Duration::from_secs(a.hold_secs));
    let alive = idle.check(cfg.round);
    println!("{{\"alive\":{alive}}}");
    if alive == idle.len() {
        ExitCode::SUCCESS
    } else {
        eprintln!("capig-idle: {} of {} connections did not answer a ping", idle.len() - alive, idle.len());
        ExitCode::FAILURE
    }
}
