//! `capig send`: browser events from a stream (standard input) through the whole
//! delivery path — transform, per-pixel batches, the durable spool, the HTTP/2 sender
//! with retries, breaker, bisection and dead letters — for backfills, dry runs against
//! `capig sim`, and tests that need a real process to kill.
//!
//! It plays one ingestion core: lines are read on a thread of their own, the loop here
//! transforms and batches them, hands closed batches to the delivery side, and prints a
//! line per event once its batch is durable (`{"stored":"<event_id>"}`), or why it was
//! not taken (`{"rejected":…}` from the transform, `{"refused":…}` when the spool
//! refused the batch). After the end of the input it waits for the spool to drain, at
//! most `wait`; what is left is delivered by the next `capig send` or `capig serve`
//! with the same spool directory.
//!
//! Output lines never carry event content other than the `event_id` the client chose.

use std::collections::HashMap;
use std::io::{BufRead, Write};
use std::sync::mpsc;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use crate::config::Config;
use crate::deliver::batch::{BatchConfig, Batcher, ClosedBatch};
use crate::deliver::handoff::{Done, Origin, SubmitError, Ticket};
use crate::deliver::pipeline::{Delivery, DeliveryConfig, DeliveryError};
use crate::event::json::{write_str, Parser, Val};
use crate::event::policy::PixelId;
use crate::event::reject::write_rejection_line;
use crate::event::{ids, Context, Transformer};

/// What the request around the events would have told the edge.
#[derive(Clone, Debug, Default)]
pub struct SendOptions {
    /// The pixel for events without `pixel_id`.
    pub pixel: Option<PixelId>,
    pub client_ip: Option<String>,
    pub user_agent: Option<String>,
    /// A `Cookie` header (`_fbp`, `_fbc`).
    pub cookie: Option<String>,
    /// How long to wait for the spool to drain after the end of the input.
    pub wait: Duration,
}

/// Counts of one run.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct SendSummary {
    pub stored: u64,
    pub rejected: u64,
    pub refused: u64,
    /// Still in the spool when the run ended (delivered by the next run).
    pub remaining_events: u64,
}

#[derive(Debug, thiserror::Error)]
pub enum SendError {
    #[error("cannot start delivery: {0}")]
    Start(#[from] DeliveryError),
    #[error("cannot write the output: {0}")]
    Output(#[from] std::io::Error),
}

fn now_ms() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_millis() as u64)
}

struct Run<'a> {
    batcher: Batcher,
    link: crate::deliver::handoff::CoreLink,
    /// Event ids in each pixel's open batch, oldest first.
    open: HashMap<PixelId, Vec<Option<String>>>,
    tickets: HashMap<Ticket, Vec<Option<String>>>,
    closed: Vec<ClosedBatch>,
    done: Vec<Done>,
    out: &'a mut dyn Write,
    line: Vec<u8>,
    summary: SendSummary,
}

/// Runs `capig send` over `input`, writing result lines to `out`.
pub fn run(
    config: &Config,
    opts: &SendOptions,
    input: Box<dyn BufRead + Send>,
    out: &mut dyn Write,
) -> Result<SendSummary, SendError> {
    let (delivery, mut links) = Delivery::start(DeliveryConfig::from_config(config, 1))?;
    let mut transformer = Transformer::new(config.policies());
    let mut parser = Parser::default();
    let (tx, rx) = mpsc::sync_channel::<std::io::Result<Vec<u8>>>(1024);
    std::thread::Builder::new()
        .name("capig-send-input".into())
        .spawn(move || {
            for line in input.split(b'\n') {
                let stop = line.is_err();
                if tx.send(line).is_err() || stop {
                    return;
                }
            }
        })
        .map_err(SendError::Output)?;
    let mut run = Run {
        batcher: Batcher::new(BatchConfig::from(&config.upstream)),
        link: links.remove(0),
        open: HashMap::new(),
        tickets: HashMap::new(),
        closed: Vec::new(),
        done: Vec::new(),
        out,
        line: Vec::new(),
        summary: SendSummary::default(),
    };
    let cookie = opts.cookie.as_deref().unwrap_or("");
    let mut scratch = Vec::with_capacity(4096);
    loop {
        let wait = run
            .batcher
            .next_deadline()
            .map_or(Duration::from_millis(50), |d| {
                d.saturating_duration_since(Instant::now())
            })
            .min(Duration::from_millis(50));
        match rx.recv_timeout(wait) {
            Ok(Ok(mut line)) => {
                if !line.iter().all(u8::is_ascii_whitespace) {
                    let ctx = Context {
                        now_ms: now_ms(),
                        pixel_id: opts.pixel,
                        client_ip: opts.client_ip.as_deref(),
                        user_agent: opts.user_agent.as_deref(),
                        cookie_fbp: ids::cookie(cookie, "_fbp"),
                        cookie_fbc: ids::cookie(cookie, "_fbc"),
                    };
                    run.line_in(&mut parser, &mut transformer, &ctx, &mut line, &mut scratch)?;
                }
            }
            Ok(Err(e)) => {
                tracing::error!("reading the input: {e}; stopping at this line");
                break;
            }
            Err(mpsc::RecvTimeoutError::Timeout) => {}
            Err(mpsc::RecvTimeoutError::Disconnected) => break,
        }
        run.batcher.poll_linger(Instant::now(), &mut run.closed);
        run.submit_closed()?;
        run.poll()?;
    }
    run.batcher.flush_all(&mut run.closed);
    run.submit_closed()?;
    while !run.tickets.is_empty() {
        std::thread::sleep(Duration::from_millis(2));
        run.poll()?;
    }
    run.out.flush()?;
    drop(run.link);
    let deadline = Instant::now() + opts.wait;
    while delivery.pending_records() > 0 && Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(10));
    }
    run.summary.remaining_events = delivery.pending_events();
    delivery.shutdown(Duration::from_secs(2));
    Ok(run.summary)
}

impl Run<'_> {
    fn line_in(
        &mut self,
        parser: &mut Parser,
        transformer: &mut Transformer,
        ctx: &Context<'_>,
        line: &mut [u8],
        scratch: &mut Vec<u8>,
    ) -> Result<(), SendError> {
        let now = Instant::now();
        self.line.clear();
        let (batcher, open, closed, out_line, summary) = (
            &mut self.batcher,
            &mut self.open,
            &mut self.closed,
            &mut self.line,
            &mut self.summary,
        );
        let full = self.link.spool_full().then(|| self.link.full_error());
        let parsed = parser.parse(line, |root| {
            let mut one = |v: Val<'_, '_>| {
                let id = v
                    .entries()
                    .and_then(|mut e| e.find(|(k, _)| *k == "event_id"))
                    .and_then(|(_, v)| v.as_str());
                if let Some(err) = &full {
                    summary.refused += 1;
                    refused_line(out_line, id, err);
                    return;
                }
                scratch.clear();
                match transformer.transform(v, ctx, scratch) {
                    Ok(a) => {
                        open.entry(a.pixel_id)
                            .or_default()
                            .push(id.map(str::to_owned));
                        batcher.push(a.pixel_id, now, a.event_time, scratch, closed);
                    }
                    Err(r) => {
                        summary.rejected += 1;
                        write_rejection_line(out_line, id, &r);
                    }
                }
            };
            match root.elements() {
                Some(events) => events.for_each(&mut one),
                None => one(root),
            }
        });
        if let Err(e) = parsed {
            self.summary.rejected += 1;
            self.line
                .extend_from_slice(b"{\"rejected\":null,\"reason\":\"invalid_json\",\"message\":");
            write_str(&mut self.line, &e.to_string());
            self.line.extend_from_slice(b"}\n");
        }
        self.out.write_all(&self.line)?;
        self.submit_closed()
    }

    fn submit_closed(&mut self) -> Result<(), SendError> {
        for b in std::mem::take(&mut self.closed) {
            let ids: Vec<Option<String>> = self
                .open
                .get_mut(&b.pixel)
                .map(|v| v.drain(..(b.events as usize).min(v.len())).collect())
                .unwrap_or_default();
            match self.link.submit(b) {
                Ok(t) => {
                    self.tickets.insert(t, ids);
                }
                Err(e) => self.refuse(&ids, &e)?,
            }
        }
        Ok(())
    }

    fn poll(&mut self) -> Result<(), SendError> {
        self.link.poll(&mut self.done);
        let mut printed = false;
        for d in std::mem::take(&mut self.done) {
            let Origin::Fresh(t) = d.origin else {
                continue;
            };
            let Some(ids) = self.tickets.remove(&t) else {
                continue;
            };
            match d.result {
                Ok(()) => {
                    self.line.clear();
                    for id in &ids {
                        self.line.extend_from_slice(b"{\"stored\":");
                        opt_str(&mut self.line, id.as_deref());
                        self.line.extend_from_slice(b"}\n");
                    }
                    self.summary.stored += ids.len() as u64;
                    self.out.write_all(&self.line)?;
                }
                Err(e) => self.refuse(&ids, &e)?,
            }
            printed = true;
        }
        if printed {
            self.out.flush()?;
        }
        Ok(())
    }

    fn refuse(&mut self, ids: &[Option<String>], e: &SubmitError) -> Result<(), SendError> {
        self.line.clear();
        for id in ids {
            refused_line(&mut self.line, id.as_deref(), e);
        }
        self.summary.refused += ids.len() as u64;
        self.out.write_all(&self.line)?;
        Ok(())
    }
}

fn opt_str(out: &mut Vec<u8>, s: Option<&str>) {
    match s {
        Some(s) => write_str(out, s),
        None => out.extend_from_slice(b"null"),
    }
}

fn refused_line(out: &mut Vec<u8>, id: Option<&str>, e: &SubmitError) {
    out.extend_from_slice(b"{\"refused\":");
    opt_str(out, id);
    out.extend_from_slice(b",\"reason\":");
    write_str(out, e.label());
    out.extend_from_slice(b",\"message\":");
    write_str(out, &e.to_string());
    out.extend_from_slice(b"}\n");
}
