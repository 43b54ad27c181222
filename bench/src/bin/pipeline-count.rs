//! Runs N events through one in-process pipeline and exits: the program the comparison
//! harness (`bench/compare`) runs under callgrind twice per pipeline, with two values of
//! N, so that start-up cancels out of `(Ir(N2) - Ir(N1)) / (N2 - N1)`.
//!
//! `pipeline-count capig|ordinary N` — prints `{"events":N,"ns_per_event":T}`: the events
//! accepted and, run natively, the wall time per event (the harness's native figure).

use std::process::ExitCode;

use capig_bench::{sample_events, CapigPipeline, OrdinaryPipeline};

fn main() -> ExitCode {
    let args: Vec<String> = std::env::args().collect();
    let (Some(which), Some(n)) = (args.get(1), args.get(2).and_then(|n| n.parse::<usize>().ok())) else {
        eprintln!("usage: pipeline-count capig|ordinary N");
        return ExitCode::from(2);
    };
    // Built before either count is taken and the same for both values of N.
    let events = sample_events(1000);
    let start = std::time::Instant::now();
    let ok = match which.as_str() {
        "capig" => {
            let mut p = CapigPipeline::default();
            run(&events, n, |body| p.event(body))
        }
        "ordinary" => {
            let mut p = OrdinaryPipeline::default();
            run(&events, n, |body| p.event(body))
        }
        other => {
            eprintln!("unknown pipeline {other:?}: use capig or ordinary");
            return ExitCode::from(2);
        }
    };
    let ns = start.elapsed().as_nanos() as f64 / n.max(1) as f64;
    println!("{{\"events\":{ok},\"ns_per_event\":{ns:.1}}}");
    if ok == n {
        ExitCode::SUCCESS
    } else {
        eprintln!("{} of {n} events were refused: the fixture no longer fits the pipeline", n - ok);
        ExitCode::FAILURE
    }
}

/// Feeds `n` events (the fixtures, round robin) to `event`; the events it accepted.
fn run(events: &[Vec<u8>], n: usize, mut event: impl FnMut(&[u8]) -> bool) -> usize {
    (0..n).filter(|i| event(&events[i % events.len()])).count()
}
