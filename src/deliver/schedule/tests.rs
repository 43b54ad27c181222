//! The scheduler driven in memory: made-up outcomes, an explicit clock.

use std::time::Duration;

use super::*;
use crate::deliver::policy::{classify, TransportError};

const NOW_UNIX: u64 = 1_700_000_000;

fn cfg(concurrency: usize) -> SchedulerConfig {
    SchedulerConfig {
        concurrency,
        backoff: BackoffConfig {
            initial: Duration::from_millis(100),
            max: Duration::from_secs(10),
        },
        breaker: BreakerConfig {
            first_probe: Duration::from_secs(30),
            max_probe: Duration::from_secs(600),
        },
        seed: 7,
        batch_size: 1000,
        batch_bytes: 4 << 20,
        linger: Duration::ZERO,
    }
}

fn event(id: u32, time: u64) -> String {
    format!(r#"{{"event_name":"Purchase","event_id":"e{id}","event_time":{time}}}"#)
}

fn part(record: RecordId, pixel: PixelId, ids: std::ops::Range<u32>) -> Part {
    let events: Vec<String> = ids.clone().map(|i| event(i, NOW_UNIX - 60)).collect();
    Part {
        record,
        offset: 0,
        pixel,
        events: ids.len() as u32,
        oldest_time: NOW_UNIX - 60,
        payload: Bytes::from(events.join(",")),
        received: None,
        group: 0,
    }
}

fn meta(code: i64, subcode: Option<i64>) -> Outcome {
    let sub = subcode.map_or(String::new(), |s| format!(r#","error_subcode":{s}"#));
    let body = format!(r#"{{"error":{{"message":"m","type":"OAuthException","code":{code}{sub},"fbtrace_id":"T"}}}}"#);
    classify(400, body.as_bytes())
}

fn ok() -> Outcome {
    classify(200, br#"{"events_received":1}"#)
}

/// What `poll` asked for, in a compact form: `send p<pixel> r<record>@<offset>x<events>`
/// (parts of a composed request joined by `+`), `ack r<record>`,
/// `dead r<record> <reason> x<events>`.
fn show(actions: &[Action]) -> Vec<String> {
    actions
        .iter()
        .map(|a| match a {
            Action::Send(r) => {
                let parts: Vec<String> = r.parts.iter().map(|p| format!("r{}@{}x{}", p.record, p.offset, p.events)).collect();
                format!("send p{} {}", r.pixel, parts.join("+"))
            }
            Action::Ack(r) => format!("ack r{r}"),
            Action::DeadLetter(d) => format!("dead r{} {} x{}", d.record, d.reason.as_str(), d.events),
        })
        .collect()
}

fn sends(actions: &[Action]) -> Vec<Request> {
    actions
        .iter()
        .filter_map(|a| match a {
            Action::Send(p) => Some(p.clone()),
            _ => None,
        })
        .collect()
}

/// Polls at `now` and checks the actions.
fn check(s: &mut Scheduler, now: Instant, expected: &[&str]) -> Vec<Action> {
    let mut out = Vec::new();
    s.poll(now, NOW_UNIX, &mut out);
    assert_eq!(show(&out), expected);
    out
}

fn complete(s: &mut Scheduler, p: Request, o: Outcome, now: Instant) -> Vec<String> {
    let mut out = Vec::new();
    s.complete(p, o, now, &mut out);
    show(&out)
}

#[test]
fn sends_up_to_the_limit_in_order_and_acks_on_success() {
    let t = Instant::now();
    let mut s = Scheduler::new(cfg(2));
    for r in 1..=3 {
        s.push(part(r, 1, 0..2));
    }
    let out = check(&mut s, t, &["send p1 r1@0x2", "send p1 r2@0x2"]);
    check(&mut s, t, &[]);
    let p = sends(&out);
    assert_eq!(complete(&mut s, p[0].clone(), ok(), t), ["ack r1"]);
    check(&mut s, t, &["send p1 r3@0x2"]);
    assert_eq!(s.records(), 2);
}

#[test]
fn pixels_are_served_round_robin() {
    let t = Instant::now();
    let mut s = Scheduler::new(cfg(2));
    for r in 1..=4 {
        s.push(part(r, 1, 0..1));
    }
    s.push(part(5, 2, 0..1));
    check(
        &mut s,
        t,
        &["send p1 r1@0x1", "send p2 r5@0x1", "send p1 r2@0x1"],
    );
}

#[test]
fn a_retry_backs_off_and_resends_the_oldest_first() {
    let t = Instant::now();
    let mut s = Scheduler::new(cfg(2));
    s.push(part(1, 1, 0..1));
    s.push(part(2, 1, 0..1));
    let p = sends(&check(&mut s, t, &["send p1 r1@0x1", "send p1 r2@0x1"]));
    assert!(complete(&mut s, p[1].clone(), meta(2, None), t).is_empty());
    assert!(complete(&mut s, p[0].clone(), Outcome::from_transport(TransportError::Timeout), t).is_empty());
    check(&mut s, t, &[]);
    let deadline = s.next_deadline().expect("a backoff deadline");
    assert!(deadline > t && deadline <= t + Duration::from_millis(200), "{:?}", deadline - t);
    check(&mut s, deadline, &["send p1 r1@0x1", "send p1 r2@0x1"]);
}

#[test]
fn throttling_halves_the_lane_and_success_restores_it() {
    let t = Instant::now();
    let mut s = Scheduler::new(cfg(4));
    for r in 1..=8 {
        s.push(part(r, 1, 0..1));
    }
    let p = sends(&check(&mut s, t, &["send p1 r1@0x1", "send p1 r2@0x1", "send p1 r3@0x1", "send p1 r4@0x1"]));
    complete(&mut s, p[0].clone(), meta(17, Some(2446079)), t);
    assert_eq!(s.status()[0].limit, 2);
    let later = t + Duration::from_secs(11);
    // Three still in flight, limit 2: nothing goes until they answer.
    check(&mut s, later, &[]);
    complete(&mut s, p[1].clone(), ok(), later);
    assert_eq!(s.status()[0].limit, 3);
}

#[test]
fn a_broken_token_holds_one_pixel_and_not_another() {
    let t = Instant::now();
    let mut s = Scheduler::new(cfg(1));
    s.push(part(1, 1, 0..1));
    s.push(part(2, 1, 0..1));
    s.push(part(3, 2, 0..1));
    let p = sends(&check(&mut s, t, &["send p1 r1@0x1", "send p2 r3@0x1"]));
    assert!(complete(&mut s, p[0].clone(), meta(190, Some(460)), t).is_empty());
    assert_eq!(s.status()[0].breaker, BreakerState::Open);
    s.push(part(4, 2, 0..1));
    assert_eq!(complete(&mut s, p[1].clone(), ok(), t), ["ack r3"]);
    check(&mut s, t, &["send p2 r4@0x1"]);
    // The probe, after 30 s: the oldest batch, alone.
    assert_eq!(s.next_deadline(), Some(t + Duration::from_secs(30)));
    let probe = sends(&check(&mut s, t + Duration::from_secs(30), &["send p1 r1@0x1"]));
    assert_eq!(s.status()[0].breaker, BreakerState::HalfOpen);
    // Still broken: the next probe waits twice as long.
    complete(&mut s, probe[0].clone(), meta(190, None), t + Duration::from_secs(30));
    assert_eq!(s.next_deadline(), Some(t + Duration::from_secs(90)));
    // The token was replaced: resumes at once.
    s.reset_pixel(1);
    let out = check(&mut s, t + Duration::from_secs(31), &["send p1 r1@0x1"]);
    assert_eq!(complete(&mut s, sends(&out)[0].clone(), ok(), t), ["ack r1"]);
}

#[test]
fn bisection_isolates_the_invalid_event_and_acks_after_the_last_part() {
    let t = Instant::now();
    let mut s = Scheduler::new(cfg(4));
    s.push(part(1, 1, 0..4));
    let whole = sends(&check(&mut s, t, &["send p1 r1@0x4"]));
    assert!(complete(&mut s, whole[0].clone(), meta(100, Some(2804019)), t).is_empty());
    let halves = sends(&check(&mut s, t, &["send p1 r1@0x2", &format!("send p1 r1@{}x2", whole[0].payload.len() / 2 + 1)]));
    assert_eq!(halves[0].payload.len() + halves[1].payload.len() + 1, whole[0].payload.len());
    assert!(complete(&mut s, halves[0].clone(), ok(), t).is_empty());
    assert!(complete(&mut s, halves[1].clone(), meta(100, None), t).is_empty());
    let quarters = sends(&check(&mut s, t, &[&format!("send p1 r1@{}x1", halves[1].parts[0].offset), &format!("send p1 r1@{}x1", halves[1].parts[0].offset + halves[1].payload.len() as u32 / 2 + 1)]));
    assert!(complete(&mut s, quarters[0].clone(), ok(), t).is_empty());
    assert_eq!(
        complete(&mut s, quarters[1].clone(), meta(100, Some(2804019)), t),
        ["dead r1 meta_rejected x1", "ack r1"]
    );
    assert!(s.is_idle());
}

#[test]
fn permanent_errors_dead_letter_the_batch() {
    let t = Instant::now();
    let mut s = Scheduler::new(cfg(1));
    s.push(part(9, 1, 0..3));
    let p = sends(&check(&mut s, t, &["send p1 r9@0x3"]));
    assert_eq!(complete(&mut s, p[0].clone(), meta(2500, None), t), ["dead r9 meta_rejected x3", "ack r9"]);
}

#[test]
fn expired_events_are_dead_lettered_before_sending() {
    let t = Instant::now();
    let mut s = Scheduler::new(cfg(1));
    let stale = NOW_UNIX - 7 * 86_400 + 60;
    let payload = [event(1, stale), event(2, NOW_UNIX - 5), event(3, stale)].join(",");
    s.push(Part { record: 1, offset: 0, pixel: 1, events: 3, oldest_time: stale, payload: Bytes::from(payload), received: None, group: 0 });
    let out = check(&mut s, t, &["dead r1 expired x2", "send p1 r1@0x1"]);
    let fresh = &sends(&out)[0];
    assert_eq!(fresh.payload, Bytes::from(event(2, NOW_UNIX - 5)));
    assert_eq!(fresh.parts[0].oldest_time, NOW_UNIX - 5);
    assert_eq!(complete(&mut s, fresh.clone(), ok(), t), ["ack r1"]);

    // All expired: nothing is sent, the record is acknowledged after its dead letters.
    s.push(Part { record: 2, offset: 0, pixel: 1, events: 1, oldest_time: stale, payload: Bytes::from(event(4, stale)), received: None, group: 0 });
    check(&mut s, t, &["dead r2 expired x1", "ack r2"]);
}

// Composition: one request from the free parts of a lane, closed by count, bytes or
// linger (counted from the first event of its oldest part).

fn composing(batch_size: usize, batch_bytes: usize, linger_ms: u64) -> SchedulerConfig {
    SchedulerConfig {
        batch_size,
        batch_bytes,
        linger: Duration::from_millis(linger_ms),
        ..cfg(2)
    }
}

fn arrived(record: RecordId, ids: std::ops::Range<u32>, at: Instant) -> Part {
    Part { received: Some(at), ..part(record, 1, ids) }
}

/// One step of a composition scenario at `ms` after the start.
enum Step {
    /// A record of `events` events (ids from a running counter) arrives.
    Push(RecordId, u32),
    /// Poll: the actions expected.
    Poll(&'static [&'static str]),
    /// The next deadline the scheduler asks for.
    Deadline(Option<u64>),
    /// The oldest request in flight is answered: the actions expected.
    Answer(fn() -> Outcome, &'static [&'static str]),
}

fn scenario(name: &str, cfg: SchedulerConfig, steps: &[(u64, Step)]) {
    let t = Instant::now();
    let mut s = Scheduler::new(cfg);
    let (mut next_id, mut in_flight) = (0u32, VecDeque::new());
    for (i, (ms, step)) in steps.iter().enumerate() {
        let now = t + Duration::from_millis(*ms);
        let at = format!("{name}: step {i} at {ms} ms");
        match step {
            Step::Push(r, n) => {
                s.push(arrived(*r, next_id..next_id + n, now));
                next_id += n;
            }
            Step::Poll(want) => {
                let mut out = Vec::new();
                s.poll(now, NOW_UNIX, &mut out);
                assert_eq!(show(&out), *want, "{at}");
                in_flight.extend(sends(&out));
            }
            Step::Deadline(want) => {
                assert_eq!(s.next_deadline(), want.map(|ms| t + Duration::from_millis(ms)), "{at}");
            }
            Step::Answer(outcome, want) => {
                let req = in_flight.pop_front().unwrap_or_else(|| panic!("{at}: nothing in flight"));
                assert_eq!(complete(&mut s, req, outcome(), now), *want, "{at}");
            }
        }
    }
    assert!(in_flight.is_empty(), "{name}: requests left in flight");
}

fn bad_event() -> Outcome {
    meta(100, Some(2804019))
}

fn refused() -> Outcome {
    meta(2500, None)
}

fn busy() -> Outcome {
    meta(2, None)
}

/// Bytes of `n` records of `events` events each, composed (`{"data":[…]}` included).
fn body_bytes(events_per_record: &[u32]) -> usize {
    let mut id = 0;
    let mut len = ENVELOPE_BYTES;
    for (k, n) in events_per_record.iter().enumerate() {
        len += usize::from(k > 0) + part(0, 1, id..id + n).payload.len();
        id += n;
    }
    len
}

#[test]
fn composition_by_count() {
    use Step::*;
    scenario(
        "count",
        composing(5, 4 << 20, 1000),
        &[
            (0, Push(1, 2)),
            (1, Push(2, 2)),
            (2, Poll(&[])),
            (2, Deadline(Some(1000))),
            // r3 would make 6 > 5: r1+r2 go, r3 lingers from its own first event.
            (3, Push(3, 2)),
            (3, Poll(&["send p1 r1@0x2+r2@0x2"])),
            (3, Deadline(Some(1003))),
            // Exactly 5 closes it too.
            (4, Push(4, 3)),
            (4, Poll(&["send p1 r3@0x2+r4@0x3"])),
            (5, Answer(ok, &["ack r1", "ack r2"])),
            (6, Answer(ok, &["ack r3", "ack r4"])),
            (6, Deadline(None)),
        ],
    );
}

#[test]
fn composition_by_bytes() {
    use Step::*;
    // Room for three one-event records, not four.
    scenario(
        "bytes",
        composing(1000, body_bytes(&[1, 1, 1]) + 10, 1000),
        &[
            (0, Push(1, 1)),
            (0, Push(2, 1)),
            (0, Push(3, 1)),
            (0, Poll(&[])),
            (0, Push(4, 1)),
            (0, Poll(&["send p1 r1@0x1+r2@0x1+r3@0x1"])),
            (0, Answer(ok, &["ack r1", "ack r2", "ack r3"])),
            (999, Poll(&[])),
            (1000, Poll(&["send p1 r4@0x1"])),
            (1000, Answer(ok, &["ack r4"])),
        ],
    );
    // A record larger than the cap still goes, alone.
    scenario(
        "bytes, one large record",
        composing(1000, body_bytes(&[2]) - 1, 1000),
        &[
            (0, Push(1, 2)),
            (0, Push(2, 1)),
            (0, Poll(&["send p1 r1@0x2"])),
            (0, Answer(ok, &["ack r1"])),
            (0, Poll(&[])),
            (1000, Poll(&["send p1 r2@0x1"])),
            (1000, Answer(ok, &["ack r2"])),
        ],
    );
}

#[test]
fn composition_by_linger() {
    use Step::*;
    scenario(
        "linger",
        composing(1000, 4 << 20, 1000),
        &[
            (0, Push(1, 1)),
            (0, Poll(&[])),
            (0, Deadline(Some(1000))),
            // Records of later generations join the lingering request.
            (400, Push(2, 3)),
            (999, Push(3, 1)),
            (999, Poll(&[])),
            (999, Deadline(Some(1000))),
            (1000, Poll(&["send p1 r1@0x1+r2@0x3+r3@0x1"])),
            // The next request lingers from its own first event.
            (1001, Push(4, 1)),
            (1001, Deadline(Some(2001))),
            (1500, Answer(ok, &["ack r1", "ack r2", "ack r3"])),
            (2000, Poll(&[])),
            (2001, Poll(&["send p1 r4@0x1"])),
            (2001, Answer(ok, &["ack r4"])),
        ],
    );
}

#[test]
fn linger_zero_sends_each_record_at_once() {
    use Step::*;
    scenario(
        "linger 0",
        composing(1000, 4 << 20, 0),
        &[
            (0, Push(1, 1)),
            (0, Push(2, 2)),
            (0, Push(3, 1)),
            (0, Poll(&["send p1 r1@0x1", "send p1 r2@0x2"])),
            (0, Deadline(None)),
            (1, Answer(ok, &["ack r1"])),
            (1, Poll(&["send p1 r3@0x1"])),
            (2, Answer(ok, &["ack r2"])),
            (2, Answer(ok, &["ack r3"])),
        ],
    );
}

#[test]
fn a_composed_request_is_bisected_along_its_records_then_within_one() {
    use Step::*;
    scenario(
        "bisect",
        composing(1000, 4 << 20, 1000),
        &[
            (0, Push(1, 2)),
            (0, Push(2, 1)),
            (0, Push(3, 1)),
            (1000, Poll(&["send p1 r1@0x2+r2@0x1+r3@0x1"])),
            // A newer record lingers on; the halves go at once, each alone.
            (1001, Push(4, 1)),
            (1001, Answer(bad_event, &[])),
            (1001, Poll(&["send p1 r1@0x2", "send p1 r2@0x1+r3@0x1"])),
            (1002, Answer(ok, &["ack r1"])),
            (1002, Answer(bad_event, &[])),
            (1002, Poll(&["send p1 r2@0x1", "send p1 r3@0x1"])),
            (1003, Answer(ok, &["ack r2"])),
            // One event Meta still refuses: dead-lettered, then its record acknowledged.
            (1003, Answer(bad_event, &["dead r3 meta_rejected x1", "ack r3"])),
            (1003, Poll(&[])),
            (2001, Poll(&["send p1 r4@0x1"])),
            (2001, Answer(ok, &["ack r4"])),
        ],
    );
}

#[test]
fn a_refused_composed_request_dead_letters_and_acks_each_record() {
    use Step::*;
    scenario(
        "dead letter",
        composing(1000, 4 << 20, 10),
        &[
            (0, Push(1, 2)),
            (0, Push(2, 1)),
            (10, Poll(&["send p1 r1@0x2+r2@0x1"])),
            (11, Answer(refused, &["dead r1 meta_rejected x2", "ack r1", "dead r2 meta_rejected x1", "ack r2"])),
        ],
    );
}

#[test]
fn a_retried_composed_request_is_composed_again_after_the_backoff() {
    use Step::*;
    scenario(
        "retry",
        composing(1000, 4 << 20, 10),
        &[
            (0, Push(1, 2)),
            (0, Push(2, 1)),
            (10, Poll(&["send p1 r1@0x2+r2@0x1"])),
            (11, Push(3, 1)),
            (11, Answer(busy, &[])),
            (11, Poll(&[])),
            // After the backoff (at most 100 ms here) the old parts go at once, with
            // the newer record behind them.
            (200, Poll(&["send p1 r1@0x2+r2@0x1+r3@0x1"])),
            (201, Answer(ok, &["ack r1", "ack r2", "ack r3"])),
        ],
    );
}

#[test]
fn composition_is_per_pixel_and_round_robin() {
    let t = Instant::now();
    let mut s = Scheduler::new(composing(1000, 4 << 20, 100));
    s.push(arrived(1, 0..1, t));
    s.push(Part { pixel: 2, ..arrived(2, 1..2, t) });
    s.push(arrived(3, 2..3, t));
    s.push(Part { pixel: 2, ..arrived(4, 3..4, t) });
    assert_eq!(s.next_deadline(), Some(t + Duration::from_millis(100)));
    check(&mut s, t + Duration::from_millis(100), &["send p1 r1@0x1+r3@0x1", "send p2 r2@0x1+r4@0x1"]);
}
