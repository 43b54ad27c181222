//! `capig-load`: load for a running capig (see `capig_bench::load`). Prints a progress
//! line a second on stderr and the JSON summary on stdout.

use std::process::ExitCode;
use std::time::Duration;

use capig_bench::load::{run, LoadConfig, Mode};
use clap::{Parser, ValueEnum};

#[derive(Clone, Copy, ValueEnum)]
enum ModeArg {
    Http,
    Ws,
    ServerApi,
}

#[derive(Parser)]
#[command(name = "capig-load", about = "Load generator for capig: HTTP, WebSocket or server-API events")]
struct Args {
    /// The gateway's address.
    #[arg(long, default_value = "127.0.0.1:8080")]
    target: std::net::SocketAddr,
    #[arg(long, value_enum, default_value = "http")]
    mode: ModeArg,
    #[arg(long, default_value_t = 16)]
    connections: usize,
    /// Events per request (HTTP body, WebSocket frame or server-API batch).
    #[arg(long, short = 'k', default_value_t = 1)]
    events: usize,
    /// How long to run, in seconds.
    #[arg(long, default_value_t = 10.0)]
    duration: f64,
    /// Stop after this many events (0: only the duration counts).
    #[arg(long, default_value_t = 0)]
    max_events: u64,
    /// Target events per second over all connections (0: as fast as answers come).
    #[arg(long, default_value_t = 0)]
    rate: u64,
    #[arg(long, default_value = "capig.shop.example")]
    host: String,
    /// The Origin header (must be one of the domain's origins in capig's config).
    #[arg(long, default_value = "https://www.shop.example")]
    origin: String,
    #[arg(long, default_value = "1234567890123456")]
    pixel: String,
    /// The server API's access key (mode server-api).
    #[arg(long, default_value = "")]
    access_key: String,
    /// No progress line.
    #[arg(long)]
    quiet: bool,
}

fn main() -> ExitCode {
    let a = Args::parse();
    let cfg = LoadConfig {
        target: a.target,
        mode: match a.mode {
            ModeArg::Http => Mode::Http,
            ModeArg::Ws => Mode::Ws,
            ModeArg::ServerApi => Mode::ServerApi,
        },
        connections: a.connections.max(1),
        events_per_request: a.events.max(1),
        duration: Duration::from_secs_f64(a.duration.max(0.1)),
        max_events: a.max_events,
        rate: a.rate,
        host: a.host,
        origin: a.origin,
        pixel: a.pixel,
        access_key: a.access_key,
        progress: !a.quiet,
    };
    match run(&cfg) {
        Ok(summary) => {
            println!("{}", serde_json::to_string_pretty(&summary).expect("a summary serializes"));
            if summary.events_acked == 0 {
                eprintln!("capig-load: no event was acknowledged; is capig running at {} with its rate limits off?", cfg.target);
                return ExitCode::FAILURE;
            }
            ExitCode::SUCCESS
        }
        Err(e) => {
            eprintln!("capig-load: {e}");
            ExitCode::FAILURE
        }
    }
}
