//! The `capig` command: the gateway's tools and servers.
//!
//! Subcommands (names are stable; docs/DESIGN.md, "Commands", lists them):
//! - `capig transform`: browser events on stdin → the CAPI events capig would send;
//! - `capig normalize FIELD VALUE`: one `user_data` value normalized and hashed;
//! - `capig check-config --config FILE`: validate a configuration;
//! - `capig sim`: the CAPI simulator (stands in for graph.facebook.com);
//! - `capig send --config FILE`: browser events on stdin delivered through the spool;
//! - `capig deadletters list --config FILE`: what Meta refused for good, and why;
//! - `capig serve --config FILE`: the gateway;
//! - `capig demo`: everything on an embedded default, with a demo shop.

use std::io::{BufRead, BufWriter, Write};
use std::path::PathBuf;
use std::process::ExitCode;
use std::time::{SystemTime, UNIX_EPOCH};

use anyhow::{bail, Context as _, Result};
use capig::event::json::{write_str, Parser, Val};
use capig::event::normalize::{self, UserField};
use capig::event::policy::{parse_pixel_id, DedupConfig, Policies};
use capig::event::reject::write_rejection_line;
use capig::event::{ids, Context, Transformer};
use clap::{Parser as ClapParser, Subcommand};

#[derive(ClapParser)]
#[command(name = "capig", version, about = "Self-hosted Conversions API Gateway for the Meta Pixel")]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Read browser events (one JSON object or array per line) on stdin and print, one per
    /// line, the CAPI event capig would send, or {"rejected":…,"reason":…,"message":…}.
    Transform(TransformArgs),
    /// Print the normalized value and its SHA-256 for one user_data field
    /// (em, ph, fn, ln, db, ge, ct, st, zp, country, external_id).
    Normalize {
        /// The user_data key, e.g. em.
        field: String,
        /// The raw value, e.g. " John_Smith@gmail.com ".
        value: String,
    },
    /// Validate a configuration file and print every problem with its location.
    CheckConfig(ConfigArgs),
    /// Run the CAPI simulator: an HTTP server that answers like the Graph API's
    /// POST /{version}/{pixel_id}/events.
    Sim(capig::sim::SimArgs),
    /// Run everything on an embedded default: the gateway, the CAPI simulator as Meta,
    /// a demo shop at / and both channels side by side at /demo/status. Ctrl-C stops it.
    Demo {
        /// Where the gateway listens.
        #[arg(long, default_value = "127.0.0.1:8080")]
        listen: std::net::SocketAddr,
        /// Keep the spool and configuration here (default: a temporary directory,
        /// removed on exit).
        #[arg(long)]
        data_dir: Option<PathBuf>,
        /// Another site origin allowed to send events, e.g. the shop reached through a
        /// proxy (repeatable).
        #[arg(long = "origin", value_name = "URL")]
        origins: Vec<String>,
    },
    /// Run the gateway: the ingestion server on every configured listener and the
    /// delivery to the Graph API. Stops cleanly on SIGTERM or Ctrl-C; SIGHUP reloads the
    /// configuration (pixels, tokens, domains, certificates, limits) without dropping
    /// connections.
    Serve(ServeArgs),
    /// Read browser events (like transform) on stdin and deliver them to the Graph API
    /// through the durable spool; prints {"stored":<event_id>} once an event is stored,
    /// then waits for the spool to drain.
    Send(SendArgs),
    /// Events Meta refused for good (or that expired before delivery), and why.
    Deadletters {
        #[command(subcommand)]
        command: DeadlettersCommand,
    },
}

#[derive(Subcommand)]
enum DeadlettersCommand {
    /// List dead letters, newest first (kept under <spool.dir>/deadletters).
    List {
        #[command(flatten)]
        config: ConfigArgs,
        /// Only this pixel's entries.
        #[arg(long)]
        pixel: Option<String>,
        /// At most this many entries.
        #[arg(long, default_value_t = 50)]
        limit: usize,
        /// Print the stored JSON lines instead of a table.
        #[arg(long)]
        json: bool,
    },
}

#[derive(clap::Args)]
struct ConfigArgs {
    /// The configuration file.
    #[arg(long, default_value = capig::config::DEFAULT_PATH)]
    config: PathBuf,
    /// Override one setting, e.g. --set listeners.0.addr=127.0.0.1:8443 (repeatable).
    #[arg(long = "set", value_name = "KEY.PATH=VALUE")]
    sets: Vec<String>,
}

#[derive(clap::Args)]
struct TransformArgs {
    /// Apply this configuration's pixel policy (without it every pixel is allowed).
    #[arg(long)]
    config: Option<PathBuf>,
    /// Override one setting of --config (repeatable).
    #[arg(long = "set", value_name = "KEY.PATH=VALUE", requires = "config")]
    sets: Vec<String>,
    #[command(flatten)]
    request: RequestArgs,
}

/// What the edge would know of the request that carried the events.
#[derive(clap::Args)]
struct RequestArgs {
    /// The pixel for events that carry no pixel_id (as the server API's URL would).
    #[arg(long)]
    pixel: Option<String>,
    /// The client IP the request came from.
    #[arg(long)]
    client_ip: Option<String>,
    /// The request's User-Agent.
    #[arg(long)]
    user_agent: Option<String>,
    /// The request's Cookie header, e.g. '_fbp=fb.1.1596403881668.1116446470; _fbc=…'.
    #[arg(long)]
    cookie: Option<String>,
}

impl RequestArgs {
    fn pixel_id(&self) -> Result<Option<capig::event::policy::PixelId>> {
        match &self.pixel {
            None => Ok(None),
            Some(p) => Ok(Some(parse_pixel_id(p).with_context(|| format!("--pixel {p:?} is not a pixel id (digits)"))?)),
        }
    }
}

#[derive(clap::Args)]
struct ServeArgs {
    #[command(flatten)]
    config: ConfigArgs,
    /// Use epoll even where io_uring works.
    #[arg(long)]
    epoll: bool,
}

#[derive(clap::Args)]
struct SendArgs {
    #[command(flatten)]
    config: ConfigArgs,
    #[command(flatten)]
    request: RequestArgs,
    /// After the end of the input, wait at most this long for the spool to drain.
    #[arg(long, value_name = "SECS", default_value_t = 60)]
    wait_secs: u64,
}

fn main() -> ExitCode {
    init_logging();
    let cli = Cli::parse();
    let result = match cli.command {
        Command::Transform(args) => transform(args),
        Command::Normalize { field, value } => normalize_cmd(&field, &value),
        Command::CheckConfig(args) => check_config(args),
        Command::Send(args) => send(args),
        Command::Serve(args) => serve(args),
        Command::Demo { listen, data_dir, origins } => demo(capig::demo::DemoOptions { listen, data_dir, origins }),
        Command::Sim(args) => capig::sim::run(args).map(|()| ExitCode::SUCCESS).map_err(Into::into),
        Command::Deadletters { command: DeadlettersCommand::List { config, pixel, limit, json } } => {
            deadletters_list(config, pixel, limit, json)
        }
    };
    match result {
        Ok(code) => code,
        Err(e) => {
            eprintln!("capig: {e:#}");
            ExitCode::FAILURE
        }
    }
}

/// Logs go to stderr (journald on an installed system), `info` and up unless
/// `CAPIG_LOG` says otherwise (`CAPIG_LOG=debug`, `CAPIG_LOG=capig::deliver=trace`).
fn init_logging() {
    let filter = tracing_subscriber::EnvFilter::try_from_env("CAPIG_LOG")
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info"));
    let _ = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .with_target(false)
        .try_init();
}

fn demo(opts: capig::demo::DemoOptions) -> Result<ExitCode> {
    let running = capig::demo::start(&opts)?;
    let a = running.addr;
    println!("capig demo is running (Ctrl-C stops it)");
    println!("  shop:        http://{a}/");
    println!("  status:      http://{a}/demo/status   (JSON: http://{a}/demo/status.json)");
    println!("  simulator:   {}/__sim/stats   (stands in for graph.facebook.com)", running.sim.url());
    println!("  data:        {}", running.data_dir.display());
    std::io::stdout().flush()?;
    let rt = tokio::runtime::Builder::new_current_thread().enable_all().build()?;
    rt.block_on(async {
        use tokio::signal::unix::{signal, SignalKind};
        let mut term = signal(SignalKind::terminate())?;
        tokio::select! {
            _ = tokio::signal::ctrl_c() => {}
            _ = term.recv() => {}
        }
        Ok::<(), std::io::Error>(())
    })?;
    println!("capig demo: stopping");
    running.stop();
    Ok(ExitCode::SUCCESS)
}

fn serve(args: ServeArgs) -> Result<ExitCode> {
    use capig::config::ListenerKind;
    use capig::ingest::{sd_notify, watchdog_interval, ServeOptions, Server};
    let config = capig::config::Config::load(&args.config.config, &args.config.sets).map_err(|e| anyhow::anyhow!("{e}"))?;
    for note in &config.notes {
        tracing::info!("{note}");
    }
    let server = Server::start(config, ServeOptions { force_epoll: args.epoll, ..ServeOptions::default() })?;
    {
        let mut out = std::io::stdout().lock();
        for (kind, addr) in server.listening() {
            let scheme = match kind {
                ListenerKind::Https => "https",
                ListenerKind::Http => "http",
                ListenerKind::Redirect => "http (redirect)",
            };
            writeln!(out, "capig: listening on {scheme} {addr}")?;
        }
        out.flush()?;
    }
    sd_notify("READY=1");
    let rt = tokio::runtime::Builder::new_current_thread().enable_all().build()?;
    rt.block_on(async {
        use tokio::signal::unix::{signal, SignalKind};
        let mut term = signal(SignalKind::terminate())?;
        let mut int = signal(SignalKind::interrupt())?;
        let mut hup = signal(SignalKind::hangup())?;
        let watchdog = watchdog_interval();
        loop {
            let tick = async {
                match watchdog {
                    Some(d) => tokio::time::sleep(d).await,
                    None => std::future::pending().await,
                }
            };
            tokio::select! {
                _ = term.recv() => break,
                _ = int.recv() => break,
                _ = hup.recv() => {
                    sd_notify("RELOADING=1");
                    match capig::config::Config::load(&args.config.config, &args.config.sets) {
                        Ok(c) => match server.reload(c) {
                            Ok(()) => tracing::info!(
                                "reloaded {}: pixels, tokens, domains, certificates, limits; listeners, cores, spool and upstream keep their values until a restart",
                                args.config.config.display()
                            ),
                            Err(e) => tracing::error!("reload failed, keeping the running configuration: {e}"),
                        },
                        Err(e) => tracing::error!("reload failed, keeping the running configuration:\n{e}"),
                    }
                    sd_notify("READY=1");
                }
                _ = tick => sd_notify("WATCHDOG=1"),
            }
        }
        Ok::<(), std::io::Error>(())
    })?;
    sd_notify("STOPPING=1");
    tracing::info!("stopping: finishing requests, storing open batches");
    server.shutdown(std::time::Duration::from_secs(5));
    Ok(ExitCode::SUCCESS)
}

fn send(args: SendArgs) -> Result<ExitCode> {
    let config = capig::config::Config::load(&args.config.config, &args.config.sets).map_err(|e| anyhow::anyhow!("{e}"))?;
    for note in &config.notes {
        tracing::info!("{note}");
    }
    let opts = capig::send::SendOptions {
        pixel: args.request.pixel_id()?,
        client_ip: args.request.client_ip,
        user_agent: args.request.user_agent,
        cookie: args.request.cookie,
        wait: std::time::Duration::from_secs(args.wait_secs),
    };
    let input = Box::new(std::io::BufReader::new(std::io::stdin()));
    let mut stdout = std::io::stdout().lock();
    let summary = capig::send::run(&config, &opts, input, &mut stdout)?;
    eprintln!(
        "capig send: {} stored, {} rejected, {} refused; {} event(s) still in the spool",
        summary.stored, summary.rejected, summary.refused, summary.remaining_events
    );
    if summary.remaining_events > 0 {
        eprintln!(
            "capig send: the spool ({}) keeps them; the next `capig send` or `capig serve` with this configuration delivers them",
            config.spool.dir.display()
        );
        return Ok(ExitCode::from(3));
    }
    Ok(ExitCode::SUCCESS)
}

fn now_ms() -> u64 {
    SystemTime::now().duration_since(UNIX_EPOCH).map_or(0, |d| d.as_millis() as u64)
}

fn normalize_cmd(field: &str, value: &str) -> Result<ExitCode> {
    let Some(f) = UserField::from_key(field) else {
        let keys: Vec<_> = UserField::ALL.iter().map(|f| f.key()).collect();
        bail!("unknown field {field:?}: use one of {}", keys.join(", "));
    };
    let mut scratch = String::new();
    match normalize::hash(f, value, &mut scratch) {
        Ok(None) => {
            eprintln!("capig: the value is empty after normalization; capig leaves the field out");
            Ok(ExitCode::FAILURE)
        }
        Ok(Some(h)) if h.is_passthrough() => {
            println!("{}", h.as_str());
            println!("{}", h.as_str());
            eprintln!("capig: the value is already a SHA-256 hash; it is passed through (lowercased)");
            Ok(ExitCode::SUCCESS)
        }
        Ok(Some(h)) => {
            let normalized = normalize::normalize(f, value, &mut scratch)?.unwrap_or_default();
            println!("{normalized}");
            println!("{}", h.as_str());
            Ok(ExitCode::SUCCESS)
        }
        Err(e) => {
            eprintln!("capig: {e}");
            Ok(ExitCode::FAILURE)
        }
    }
}

fn check_config(args: ConfigArgs) -> Result<ExitCode> {
    let (report, ok) = capig::config::check_config_report(&args.config, &args.sets);
    if ok {
        print!("{report}");
        Ok(ExitCode::SUCCESS)
    } else {
        eprint!("{report}");
        Ok(ExitCode::FAILURE)
    }
}

fn deadletters_list(args: ConfigArgs, pixel: Option<String>, limit: usize, json: bool) -> Result<ExitCode> {
    let config = capig::config::Config::load(&args.config, &args.sets).map_err(|e| anyhow::anyhow!("{e}"))?;
    let pixel = match pixel {
        None => None,
        Some(p) => Some(parse_pixel_id(&p).with_context(|| format!("--pixel {p:?} is not a pixel id (digits)"))?),
    };
    let dir = config.spool.dir.join("deadletters");
    let report = capig::deliver::deadletter::list_report(&dir, pixel, limit, json)?;
    print!("{report}");
    Ok(ExitCode::SUCCESS)
}

fn transform(args: TransformArgs) -> Result<ExitCode> {
    let policies = match &args.config {
        Some(path) => {
            let config = capig::config::Config::load(path, &args.sets).map_err(|e| anyhow::anyhow!("{e}"))?;
            config.policies()
        }
        None => Policies::allow_all(DedupConfig::default()),
    };
    let pixel_id = args.request.pixel_id()?;
    let cookie = args.request.cookie.as_deref().unwrap_or("");
    let mut transformer = Transformer::new(policies);
    let mut parser = Parser::default();
    let stdin = std::io::stdin().lock();
    let mut stdout = BufWriter::new(std::io::stdout().lock());
    let mut out = Vec::with_capacity(4096);
    let mut rejected = 0u64;
    for line in stdin.split(b'\n') {
        let mut line = line.context("reading stdin")?;
        if line.iter().all(u8::is_ascii_whitespace) {
            continue;
        }
        let ctx = Context {
            now_ms: now_ms(),
            pixel_id,
            client_ip: args.request.client_ip.as_deref(),
            user_agent: args.request.user_agent.as_deref(),
            cookie_fbp: ids::cookie(cookie, "_fbp"),
            cookie_fbc: ids::cookie(cookie, "_fbc"),
        };
        out.clear();
        let parsed = parser.parse(&mut line, |root| {
            let mut rejected = 0;
            let mut one = |v: Val<'_, '_>, out: &mut Vec<u8>| {
                match transformer.transform(v, &ctx, out) {
                    Ok(_) => out.push(b'\n'),
                    Err(r) => {
                        rejected += 1;
                        let id = v.entries().and_then(|mut e| e.find(|(k, _)| *k == "event_id")).and_then(|(_, v)| v.as_str());
                        write_rejection_line(out, id, &r);
                    }
                }
            };
            match root.elements() {
                Some(events) => events.for_each(|v| one(v, &mut out)),
                None => one(root, &mut out),
            }
            rejected
        });
        match parsed {
            Ok(n) => rejected += n,
            Err(e) => {
                rejected += 1;
                out.extend_from_slice(b"{\"rejected\":null,\"reason\":\"invalid_json\",\"message\":");
                write_str(&mut out, &e.to_string());
                out.extend_from_slice(b"}\n");
            }
        }
        stdout.write_all(&out)?;
    }
    stdout.flush()?;
    let c = &transformer.counters;
    let details: Vec<String> = c.nonzero().iter().map(|(k, n)| format!("{k} {n}")).collect();
    eprintln!(
        "capig transform: {} forwarded, {} rejected{}{}",
        c.accepted,
        rejected,
        if details.is_empty() { "" } else { "; " },
        details.join(", ")
    );
    Ok(ExitCode::SUCCESS)
}
