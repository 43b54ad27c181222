//! Criterion benches of the event core, each beside the ordinary baseline in the same
//! group so that one run gives the ratio:
//! - `parse_transform`: one ~600-byte browser event with advanced matching, parsed,
//!   normalized, hashed and written as a CAPI event (capig), vs serde_json owned parse +
//!   normalize + hash + serde_json serialize (ordinary);
//! - `hash_field`: one email normalized and hashed;
//! - `serialize`: writing an already parsed CAPI event as JSON (capig's tape writer vs
//!   serde_json of an owned `Value`).
//!
//! Run: `cargo bench -p capig-bench --bench transform`.

use criterion::{criterion_group, criterion_main, Criterion, Throughput};
use std::hint::black_box;

use capig::event::json::write_value;
use capig::event::normalize::{self, UserField};
use capig::event::Parser;
use capig_bench::{ordinary_hash_email, ordinary_transform, sample_event, sample_events, CapigPipeline, OrdinaryPipeline, NOW_MS};

fn parse_transform(c: &mut Criterion) {
    let events = sample_events(1000);
    let mut g = c.benchmark_group("parse_transform");
    g.throughput(Throughput::Elements(1));
    g.bench_function("capig", |b| {
        let mut p = CapigPipeline::default();
        let mut i = 0;
        b.iter(|| {
            i += 1;
            black_box(p.event(&events[i % events.len()]))
        })
    });
    g.bench_function("ordinary_serde", |b| {
        let mut p = OrdinaryPipeline::default();
        let mut i = 0;
        b.iter(|| {
            i += 1;
            black_box(p.event(&events[i % events.len()]))
        })
    });
    g.finish();
}

fn hash_field(c: &mut Criterion) {
    let mut g = c.benchmark_group("hash_field");
    g.throughput(Throughput::Elements(1));
    let email = " John_Smith@gmail.com ";
    g.bench_function("capig_em", |b| {
        let mut scratch = String::with_capacity(128);
        b.iter(|| black_box(normalize::hash(UserField::Em, black_box(email), &mut scratch).unwrap()))
    });
    g.bench_function("ordinary_em", |b| b.iter(|| black_box(ordinary_hash_email(black_box(email)))));
    let phone = "+1 (650) 555-1212";
    g.bench_function("capig_ph", |b| {
        let mut scratch = String::with_capacity(128);
        b.iter(|| black_box(normalize::hash(UserField::Ph, black_box(phone), &mut scratch).unwrap()))
    });
    g.finish();
}

fn serialize(c: &mut Criterion) {
    // The same CAPI event, already in memory, written out as JSON: capig's writer walking
    // a parsed tape (how custom properties and passthrough keys are forwarded) vs
    // serde_json serializing an owned `Value`.
    let mut capi = Vec::new();
    ordinary_transform(sample_event(1).as_bytes(), NOW_MS / 1000, &mut capi).unwrap();
    let value: serde_json::Value = serde_json::from_slice(&capi).unwrap();
    let mut g = c.benchmark_group("serialize");
    g.throughput(Throughput::Elements(1));
    let mut parser = Parser::default();
    let mut buf = capi.clone();
    parser
        .parse(&mut buf, |v| {
            g.bench_function("capig_write", |b| {
                let mut out = Vec::with_capacity(2048);
                b.iter(|| {
                    out.clear();
                    write_value(&mut out, black_box(v));
                    black_box(out.len())
                })
            });
        })
        .unwrap();
    g.bench_function("ordinary_serde_write", |b| {
        let mut out = Vec::with_capacity(2048);
        b.iter(|| {
            out.clear();
            serde_json::to_writer(&mut out, black_box(&value)).unwrap();
            black_box(out.len())
        })
    });
    g.finish();
}

criterion_group!(benches, parse_transform, hash_field, serialize);
criterion_main!(benches);
