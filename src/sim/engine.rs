//! The simulator's state machine, sans-IO: routing, evaluating a CAPI call, choosing its
//! fault, counting, recording, and answering the `/__sim/*` control endpoints. The
//! server feeds it requests and a clock and carries out its decisions (wait, answer,
//! close the connection, append record lines).
//!
//! Evaluation ([`evaluate`]) is pure and runs outside the lock; only [`Engine::admit`]
//! (faults, counters, the event store) needs `&mut Engine`.
//!
//! Formats:
//! - success: `{"events_received":N,"messages":[],"fbtrace_id":"…"}`, HTTP 200;
//! - `GET /__sim/stats`: [`SimStats`] as JSON;
//! - `GET /__sim/events?pixel=ID&since=SEQ&limit=N`: a JSON array of [`RecordedEvent`]
//!   with `seq > since`, oldest first; sequence numbers keep growing across resets so
//!   a pager never sees one twice;
//! - `POST /__sim/reset`: clears counters, stored events and throttle windows (faults
//!   stay), answers the zeroed stats;
//! - `GET`/`PUT /__sim/faults`: [`FaultConfig`] as JSON (a `PUT` also restarts the
//!   throttle windows);
//! - `--record FILE` lines: `{"pixel_id","received_at","test_event_code"?,"event"}` where
//!   `received_at` is Unix time in milliseconds.

use std::collections::{BTreeMap, VecDeque};
use std::time::Duration;

use serde::{Deserialize, Serialize};
use serde_json::{json, Map, Value};

use super::body::{parse_request, CapiRequest};
use super::faults::{decide, Fault, FaultCode, FaultConfig, Rng, Throttle};
use super::graph::{fbtrace_id, GraphError};
use super::validate::{authorize, is_pixel_id, validate_events, Tokens};

/// Where a request goes.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Route {
    /// `POST /{version}/{pixel_id}/events`.
    Events {
        pixel_id: String,
    },
    Stats,
    ListEvents,
    Reset,
    GetFaults,
    PutFaults,
    /// A known path with a method it does not answer; `allow` is the `Allow` header.
    WrongMethod {
        allow: &'static str,
    },
    NotFound,
}

/// Routes a request by method and path (without the query).
pub fn route(method: &str, path: &str) -> Route {
    let (allow, found) = match path {
        "/__sim/stats" => ("GET", (method == "GET").then_some(Route::Stats)),
        "/__sim/events" => ("GET", (method == "GET").then_some(Route::ListEvents)),
        "/__sim/reset" => ("POST", (method == "POST").then_some(Route::Reset)),
        "/__sim/faults" => (
            "GET, PUT",
            match method {
                "GET" => Some(Route::GetFaults),
                "PUT" => Some(Route::PutFaults),
                _ => None,
            },
        ),
        _ => match events_pixel(path) {
            Some(pixel_id) => (
                "POST",
                (method == "POST").then(|| Route::Events {
                    pixel_id: pixel_id.to_owned(),
                }),
            ),
            None => return Route::NotFound,
        },
    };
    found.unwrap_or(Route::WrongMethod { allow })
}

/// The pixel id of `/{version}/{pixel_id}/events`, where version is `v\d+\.\d+`.
fn events_pixel(path: &str) -> Option<&str> {
    let mut segments = path.strip_prefix('/')?.split('/');
    let (Some(version), Some(pixel_id), Some("events"), None) = (
        segments.next(),
        segments.next(),
        segments.next(),
        segments.next(),
    ) else {
        return None;
    };
    let (major, minor) = version.strip_prefix('v')?.split_once('.')?;
    let number = |s: &str| !s.is_empty() && s.bytes().all(|b| b.is_ascii_digit());
    (number(major) && number(minor) && !pixel_id.is_empty()).then_some(pixel_id)
}

/// A CAPI call after decoding, authorization and validation.
#[derive(Clone, Debug, PartialEq)]
pub struct Evaluated {
    /// How many events `data` held, when it could be read as an array.
    pub event_count: Option<usize>,
    pub outcome: Result<Accepted, GraphError>,
}

/// The events of a valid call.
#[derive(Clone, Debug, PartialEq)]
pub struct Accepted {
    pub events: Vec<Map<String, Value>>,
    pub test_event_code: Option<String>,
}

impl Evaluated {
    /// A call rejected before its body could be read (e.g. too large).
    pub fn rejected(error: GraphError) -> Evaluated {
        Evaluated {
            event_count: None,
            outcome: Err(error),
        }
    }
}

/// Decodes, authorizes and validates one call: pure, no lock needed.
pub fn evaluate(
    tokens: &Tokens,
    pixel_id: &str,
    content_type: Option<&str>,
    query: Option<&str>,
    body: &[u8],
    now_unix: i64,
) -> Evaluated {
    let request: CapiRequest = match parse_request(content_type, query, body) {
        Ok(request) => request,
        Err(error) => return Evaluated::rejected(error),
    };
    let event_count = match &request.data {
        Some(Value::Array(data)) => Some(data.len()),
        _ => None,
    };
    let outcome = authorize(tokens, pixel_id, request.access_token.as_deref()).and_then(|()| {
        let test_event_code = request.test_event_code.clone();
        validate_events(request, now_unix).map(|events| Accepted {
            events,
            test_event_code,
        })
    });
    Evaluated {
        event_count,
        outcome,
    }
}

/// An HTTP answer.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Reply {
    pub status: u16,
    pub content_type: &'static str,
    pub body: Vec<u8>,
    /// The `Allow` header of a 405.
    pub allow: Option<&'static str>,
}

impl Reply {
    fn json(status: u16, value: &Value) -> Reply {
        Reply {
            status,
            content_type: "application/json",
            body: value.to_string().into_bytes(),
            allow: None,
        }
    }
}

/// What the server does with one CAPI call.
#[derive(Clone, Debug, PartialEq)]
pub struct Decision {
    /// Wait this long first.
    pub delay: Duration,
    /// Answer, or `None` to close the connection without answering.
    pub reply: Option<Reply>,
    /// Lines (each ending in `\n`) to append to the `--record` file.
    pub record_lines: Vec<u8>,
}

/// One accepted event as stored in memory and listed by `/__sim/events`.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct RecordedEvent {
    /// Increases by one per accepted event, never reused.
    pub seq: u64,
    pub pixel_id: String,
    /// Unix time in milliseconds.
    pub received_at: u64,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub test_event_code: Option<String>,
    pub event: Value,
}

/// The counters of `/__sim/stats`.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct SimStats {
    /// CAPI calls (`POST …/events`), whatever became of them.
    pub requests: u64,
    /// Calls answered with success.
    pub requests_accepted: u64,
    /// Calls answered with an error (validation, auth, injected or throttled).
    pub requests_rejected: u64,
    /// Events accepted.
    pub events_received: u64,
    /// Events in calls answered with an error (when `data` could be read).
    pub events_rejected: u64,
    /// Calls hit by a fault: injected errors, throttling and dropped connections.
    pub faults_injected: u64,
    /// Calls whose connection was closed without an answer.
    pub dropped_connections: u64,
    /// Accepted events pushed out of memory by `--keep` (they are still counted and
    /// still in the `--record` file).
    pub events_evicted: u64,
    /// Per pixel id.
    pub by_pixel: BTreeMap<String, PixelStats>,
    /// Error answers per Graph code (`"100"`), or per HTTP status for injected bare
    /// statuses (`"http_503"`).
    pub by_error_code: BTreeMap<String, u64>,
}

/// The per-pixel counters.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct PixelStats {
    pub requests: u64,
    /// Events accepted.
    pub events: u64,
    pub requests_rejected: u64,
}

/// Pixels counted separately at most; the rest, and ids that are not numeric, share
/// [`OTHER_PIXELS`].
const MAX_TRACKED_PIXELS: usize = 100_000;
/// The `by_pixel` key for pixels past [`MAX_TRACKED_PIXELS`] and non-numeric ids.
pub const OTHER_PIXELS: &str = "_other";

/// Settings of an [`Engine`] that do not change while it runs.
#[derive(Clone, Debug)]
pub struct EngineConfig {
    /// Accepted events kept in memory.
    pub keep: usize,
    /// Whether [`Decision::record_lines`] is filled.
    pub record: bool,
    pub seed: u64,
    pub faults: FaultConfig,
}

/// The mutable state of the simulator.
#[derive(Debug)]
pub struct Engine {
    keep: usize,
    record: bool,
    faults: FaultConfig,
    throttle: Throttle,
    rng: Rng,
    stats: SimStats,
    events: VecDeque<RecordedEvent>,
    next_seq: u64,
}

impl Engine {
    pub fn new(config: EngineConfig) -> Engine {
        Engine {
            keep: config.keep,
            record: config.record,
            faults: config.faults,
            throttle: Throttle::default(),
            rng: Rng::new(config.seed),
            stats: SimStats::default(),
            events: VecDeque::new(),
            next_seq: 1,
        }
    }

    /// Decides the answer to one evaluated CAPI call, counts it and stores its events.
    pub fn admit(&mut self, pixel_id: &str, evaluated: Evaluated, now_ms: u64) -> Decision {
        // Ids that are no pixel id (Graph rejects them anyway) share one key, so hostile
        // paths cannot grow the per-pixel maps.
        let pixel_id = if is_pixel_id(pixel_id) {
            pixel_id
        } else {
            OTHER_PIXELS
        };
        let fault = decide(
            &self.faults,
            &mut self.throttle,
            &mut self.rng,
            pixel_id,
            now_ms,
        );
        self.stats.requests += 1;
        self.pixel_stats(pixel_id).requests += 1;

        let error = match fault.fault {
            Some(Fault::Drop) => {
                self.stats.faults_injected += 1;
                self.stats.dropped_connections += 1;
                return Decision {
                    delay: fault.delay,
                    reply: None,
                    record_lines: Vec::new(),
                };
            }
            Some(Fault::Throttled) => Some(Injected::Graph(17)),
            Some(Fault::Fail(FaultCode::Graph(code))) => Some(Injected::Graph(code)),
            Some(Fault::Fail(FaultCode::Http(status))) => Some(Injected::Http(status)),
            None => None,
        };
        let outcome = match error {
            Some(injected) => {
                self.stats.faults_injected += 1;
                Err(injected)
            }
            None => evaluated.outcome.map_err(Injected::Error),
        };
        let rejection = match outcome {
            Ok(accepted) => {
                let (reply, record_lines) = self.accept(pixel_id, accepted, now_ms);
                return Decision {
                    delay: fault.delay,
                    reply: Some(reply),
                    record_lines,
                };
            }
            Err(rejection) => rejection,
        };
        self.stats.requests_rejected += 1;
        self.stats.events_rejected += evaluated.event_count.unwrap_or(0) as u64;
        self.pixel_stats(pixel_id).requests_rejected += 1;
        let trace = fbtrace_id(self.rng.next_u64());
        let (key, reply) = match rejection {
            Injected::Http(status) => (
                format!("http_{status}"),
                Reply {
                    status,
                    content_type: "text/plain; charset=utf-8",
                    body: format!("capig sim: injected HTTP {status}\n").into_bytes(),
                    allow: None,
                },
            ),
            Injected::Graph(code) => {
                // Every code `decide` can return is one `injected` knows.
                let error = GraphError::injected(code)
                    .unwrap_or_else(|| GraphError::param("Invalid parameter"));
                (error.code.to_string(), error_reply(&error, &trace))
            }
            Injected::Error(error) => (error.code.to_string(), error_reply(&error, &trace)),
        };
        *self.stats.by_error_code.entry(key).or_insert(0) += 1;
        Decision {
            delay: fault.delay,
            reply: Some(reply),
            record_lines: Vec::new(),
        }
    }

    fn accept(&mut self, pixel_id: &str, accepted: Accepted, now_ms: u64) -> (Reply, Vec<u8>) {
        let count = accepted.events.len() as u64;
        self.stats.requests_accepted += 1;
        self.stats.events_received += count;
        self.pixel_stats(pixel_id).events += count;

        let mut record_lines = Vec::new();
        for event in accepted.events {
            let recorded = RecordedEvent {
                seq: self.next_seq,
                pixel_id: pixel_id.to_owned(),
                received_at: now_ms,
                test_event_code: accepted.test_event_code.clone(),
                event: Value::Object(event),
            };
            self.next_seq += 1;
            if self.record {
                let mut line = serde_json::Map::new();
                line.insert("pixel_id".into(), json!(recorded.pixel_id));
                line.insert("received_at".into(), json!(recorded.received_at));
                if let Some(code) = &recorded.test_event_code {
                    line.insert("test_event_code".into(), json!(code));
                }
                line.insert("event".into(), recorded.event.clone());
                record_lines.extend_from_slice(Value::Object(line).to_string().as_bytes());
                record_lines.push(b'\n');
            }
            if self.keep == 0 {
                self.stats.events_evicted += 1;
                continue;
            }
            if self.events.len() >= self.keep {
                self.events.pop_front();
                self.stats.events_evicted += 1;
            }
            self.events.push_back(recorded);
        }
        let trace = fbtrace_id(self.rng.next_u64());
        let body = json!({ "events_received": count, "messages": [], "fbtrace_id": trace });
        (Reply::json(200, &body), record_lines)
    }

    fn pixel_stats(&mut self, pixel_id: &str) -> &mut PixelStats {
        let key = if self.stats.by_pixel.contains_key(pixel_id)
            || self.stats.by_pixel.len() < MAX_TRACKED_PIXELS
        {
            pixel_id
        } else {
            OTHER_PIXELS
        };
        self.stats.by_pixel.entry(key.to_owned()).or_default()
    }

    pub fn stats(&self) -> SimStats {
        self.stats.clone()
    }

    /// Stored events of `pixel` (or all) with `seq > since`, at most `limit`.
    pub fn events(&self, pixel: Option<&str>, since: u64, limit: usize) -> Vec<RecordedEvent> {
        let start = self.events.partition_point(|e| e.seq <= since);
        self.events
            .range(start..)
            .filter(|e| pixel.is_none_or(|p| e.pixel_id == p))
            .take(limit)
            .cloned()
            .collect()
    }

    pub fn faults(&self) -> FaultConfig {
        self.faults.clone()
    }

    /// Replaces the fault configuration; throttle windows start over.
    pub fn set_faults(&mut self, faults: FaultConfig) {
        self.faults = faults;
        self.throttle.clear();
    }

    /// Clears counters, stored events and throttle windows.
    pub fn reset(&mut self) {
        self.stats = SimStats::default();
        self.events.clear();
        self.throttle.clear();
    }

    /// Answers every request that is not a CAPI call: the `/__sim/*` control endpoints,
    /// unknown paths (404) and wrong methods (405).
    pub fn control(
        &mut self,
        route: &Route,
        method: &str,
        path: &str,
        query: Option<&str>,
        body: &[u8],
    ) -> Reply {
        match route {
            Route::Stats => Reply::json(200, &json!(self.stats)),
            Route::ListEvents => match list_query(query) {
                Ok((pixel, since, limit)) => {
                    Reply::json(200, &json!(self.events(pixel.as_deref(), since, limit)))
                }
                Err(error) => self.error(&error),
            },
            Route::Reset => {
                self.reset();
                Reply::json(200, &json!(self.stats))
            }
            Route::GetFaults => Reply::json(200, &json!(self.faults)),
            Route::PutFaults => match serde_json::from_slice::<FaultConfig>(body)
                .map_err(|e| e.to_string())
                .and_then(|faults| faults.check().map(|()| faults))
            {
                Ok(faults) => {
                    self.set_faults(faults);
                    Reply::json(200, &json!(self.faults))
                }
                Err(e) => self.error(&GraphError::param(format_args!(
                    "Invalid fault configuration: {e}"
                ))),
            },
            Route::WrongMethod { allow } => {
                let mut reply = self.error(&GraphError::wrong_method(method, allow));
                reply.allow = Some(allow);
                reply
            }
            Route::Events { .. } | Route::NotFound => self.error(&GraphError::unknown_path(path)),
        }
    }

    /// A Graph-style error answer with a fresh trace id.
    pub fn error(&mut self, error: &GraphError) -> Reply {
        let trace = fbtrace_id(self.rng.next_u64());
        error_reply(error, &trace)
    }
}

/// Why a call is answered with an error.
enum Injected {
    Graph(u32),
    Http(u16),
    Error(GraphError),
}

fn error_reply(error: &GraphError, trace: &str) -> Reply {
    Reply::json(error.http_status, &error.envelope(trace))
}

/// `pixel`, `since` and `limit` of `/__sim/events`.
fn list_query(query: Option<&str>) -> Result<(Option<String>, u64, usize), GraphError> {
    let mut pixel = None;
    let mut since = 0;
    let mut limit = usize::MAX;
    for (name, value) in form_urlencoded::parse(query.unwrap_or("").as_bytes()) {
        match name.as_ref() {
            "pixel" => pixel = Some(value.into_owned()),
            "since" => {
                since = value
                    .parse()
                    .map_err(|_| GraphError::param("since must be a sequence number"))?
            }
            "limit" => {
                limit = value
                    .parse()
                    .map_err(|_| GraphError::param("limit must be a number"))?
            }
            _ => {}
        }
    }
    Ok((pixel, since, limit))
}

#[cfg(test)]
mod tests;
