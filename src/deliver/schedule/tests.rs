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

/// What `poll` asked for, in a compact form: `send r<record>@<offset>x<events>`,
/// `ack r<record>`, `dead <reason> x<events>`.
fn show(actions: &[Action]) -> Vec<String> {
    actions
        .iter()
        .map(|a| match a {
            Action::Send(p) => format!("send p{} r{}@{}x{}", p.pixel, p.record, p.offset, p.events),
            Action::Ack(r) => format!("ack r{r}"),
            Action::DeadLetter(d) => format!("dead r{} {} x{}", d.record, d.reason.as_str(), d.events),
        })
        .collect()
}

fn sends(actions: &[Action]) -> Vec<Part> {
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

fn complete(s: &mut Scheduler, p: Part, o: Outcome, now: Instant) -> Vec<String> {
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
    let quarters = sends(&check(&mut s, t, &[&format!("send p1 r1@{}x1", halves[1].offset), &format!("send p1 r1@{}x1", halves[1].offset + halves[1].payload.len() as u32 / 2 + 1)]));
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
    s.push(Part { record: 1, offset: 0, pixel: 1, events: 3, oldest_time: stale, payload: Bytes::from(payload), received: None });
    let out = check(&mut s, t, &["dead r1 expired x2", "send p1 r1@0x1"]);
    let fresh = &sends(&out)[0];
    assert_eq!(fresh.payload, Bytes::from(event(2, NOW_UNIX - 5)));
    assert_eq!(fresh.oldest_time, NOW_UNIX - 5);
    assert_eq!(complete(&mut s, fresh.clone(), ok(), t), ["ack r1"]);

    // All expired: nothing is sent, the record is acknowledged after its dead letters.
    s.push(Part { record: 2, offset: 0, pixel: 1, events: 1, oldest_time: stale, payload: Bytes::from(event(4, stale)), received: None });
    check(&mut s, t, &["dead r2 expired x1", "ack r2"]);
}
