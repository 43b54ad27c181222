#!/usr/bin/python3
"""Writes bench/REPORT.md (and its chart) from the numbers `bench/compare` measured.

    /usr/bin/python3 bench/report.py bench/report.json bench/REPORT.md [--no-chart]

`--no-chart` writes the text only (no matplotlib needed): scripts/test.sh uses it to
check that bench/REPORT.md is exactly what this script makes of bench/report.json.

Every figure in the report is computed here from report.json; nothing is typed in by hand.
"""

import json
import os
import re
import statistics
import sys

TARGET_IDLE = 100_000


def med(xs):
    return statistics.median(xs) if xs else float("nan")


def spread(xs):
    """(max - min) / median, the rep-to-rep spread."""
    return (max(xs) - min(xs)) / med(xs) if len(xs) > 1 and med(xs) else 0.0


def rep_ratio(same, a, b, key="cpu_us"):
    """The median over reps of a ÷ b, each rep's pair measured minutes apart at most:
    steadier than a ratio of medians when the shared machine drifts during the run."""
    return med([x[key] / y[key] for x, y in zip(same[a], same[b])])


def pct(x):
    return f"{x * 100:.1f} %"


def mib(b):
    return f"{b / 2**20:,.0f} MiB"


# Where a profile sample's time goes, by symbol and object: first match wins.
GROUPS = [
    ("kernel: TCP/IP, loopback and softirq", r"tcp|ip_|inet|skb|sock|net_rx|napi|loopback|__dev_queue|netif|nf_|dst_|sk_|raw_spin|_copy_|copy_user|csum|__local_bh|do_softirq|rep_movs|memcg|kmem|kmalloc|kfree|slab|page|folio"),
    ("kernel: io_uring", r"io_uring|io_\w+|__io_"),
    ("kernel: file system and fsync (spool)", r"ext4|jbd2|xfs|blk|bio|fsync|filemap|generic_perform|iomap|shmem"),
    ("kernel: scheduling, futex, syscall entry", r"schedule|futex|switch|entry_|syscall|do_sys|__x64|finish_task|pick_next|enqueue|dequeue|update_|ttwu|try_to_wake|hrtimer|tick|clock|ktime|native_|epoll|ep_|poll"),
    ("SHA-256 (ring)", r"sha256|ring_core|ring::"),
    ("JSON parse (simd-json tape)", r"simd_json|simdjson|tape|value_trait"),
    ("capig transform and normalization", r"capig::event"),
    ("capig HTTP/1.1 and WebSocket codecs", r"capig::proto"),
    ("capig ingest (connections, edge, batching)", r"capig::ingest|capig::deliver::batch|capig::deliver::handoff"),
    ("capig spool and delivery threads", r"capig::deliver|capig::sim|h2::|hyper|tokio|crossbeam"),
    ("monoio runtime", r"monoio"),
    ("allocator and memcpy", r"malloc|free|realloc|cfree|memcpy|memmove|memset|_int_|__libc|alloc::"),
]


def profile_parts(r):
    """(entries, threads) of the run's profile: entries (share, thread, object, space, symbol)."""
    prof = r.get("profile") or {}
    if isinstance(prof, list):  # an older report.json, without threads
        return [(x[0], "?", x[1], x[2], x[3]) for x in prof], []
    return [tuple(x) for x in prof.get("entries", [])], [tuple(x) for x in prof.get("threads", [])]


def thread_split(threads):
    """{thread: (kernel %, user %)} from the per-thread, per-object totals."""
    out = {}
    for share, comm, dso in threads:
        k, u = out.get(comm, (0.0, 0.0))
        if dso.startswith("[kernel"):
            k += share
        else:
            u += share
        out[comm] = (k, u)
    return out


def group_profile(rows):
    totals = {}
    for share, _thread, dso, space, sym in rows:
        name = None
        for g, rx in GROUPS:
            if g.startswith("kernel") and space != "kernel":
                continue
            if re.search(rx, sym):
                name = g
                break
        if name is None:
            name = "kernel: other" if space == "kernel" else f"other user space ({dso})"
        totals[name] = totals.get(name, 0.0) + share
    return sorted(totals.items(), key=lambda kv: -kv[1])


def left(w, r, cpu, cg, r_nginx, r_ws, ws10, http_cpu, entries, threads, cost):
    """What the numbers of this run say about the targets not met."""
    notes = []
    split = thread_split(threads)
    core = next((v for k, v in split.items() if k.startswith("capig-core")), None)
    others = {k: v for k, v in split.items() if not k.startswith("capig-core")}
    native = cg.get("capig_native_ns", 0) / 1000
    if r_nginx > 1.0:
        text = (f"**HTTP ({r_nginx:.2f}× nginx, goal ≤ 1.00×).** nginx spends {cpu['nginx']:.2f} µs per request, "
                f"all of it HTTP and TCP; capig spends {cpu['capig']:.2f} µs. ")
        if native:
            text += (f"capig does what nginx does plus the in-process pipeline, which alone is {native:.2f} µs/event "
                     f"in this run ({native / cpu['nginx']:.2f}× nginx's whole request): meeting the goal would need "
                     "capig's HTTP and TCP work to undercut nginx's by that much, so the pipeline is the first "
                     "thing to make cheaper. ")
        if core:
            text += (f"In the profile the core thread is {sum(core):.0f} % of capig's samples, {core[0]:.0f} points "
                     "of them in the kernel (TCP send and receive through io_uring, the loopback's softirq "
                     "work for the peer)")
            if others:
                text += "; " + ", ".join(f"{k} {sum(v):.0f} %" for k, v in sorted(others.items()))
            text += ". "
        text += (f"capig's kernel time per request ({med_of(r, 'capig', 'kernel_us'):.2f} µs) is above nginx's "
                 f"({med_of(r, 'nginx', 'kernel_us'):.2f} µs) although both make one receive and one send per "
                 "request: capig's answer goes out only after the group commit, in a later loop turn, and "
                 "the spool writer and the sender to the simulator add their own system calls.")
        notes.append(text)
    if r_ws < 4.0:
        ws_us = 1e6 / ws10
        text = (f"**WebSocket, 10 events per frame ({r_ws:.2f}× HTTP, goal ≥ 4×).** An event costs {ws_us:.2f} µs "
                f"over WebSocket and {http_cpu:.2f} µs over HTTP. ")
        if native:
            rest = ws_us - native
            need = http_cpu / 4.0 - rest
            text += (f"{native:.2f} µs of each is the in-process pipeline (on the bench fixture; capig-load's "
                     f"generated events are smaller, so somewhat less), {rest:.2f} µs the rest (frame, batch, "
                     "spool, delivery). ")
            if need > 0:
                text += (f"With the rest as it is, 4× needs the pipeline at {need:.2f} µs, "
                         f"{need / native:.2f}× of what it is now: the pipeline is the lever here too.")
            else:
                text += "Even a free pipeline would not reach 4× with the rest as it is: the rest is the lever."
        notes.append(text)
    if cost > 0.10:
        same = r["same_core"]
        per_rep = [1 - x["rps"] / y["rps"] for x, y in zip(same["capig"], same["capig-tmpfs"])]
        text = (f"**Spool on disk ({pct(cost)} of the throughput lost against tmpfs, goal ≤ 10 %).** Per rep: "
                + ", ".join(pct(c) for c in per_rep)
                + f"; the two capig peers' req/s spread {pct(spread([x['rps'] for x in same['capig']]))} and "
                f"{pct(spread([x['rps'] for x in same['capig-tmpfs']]))} from rep to rep in this run. CPU per "
                f"request: {cpu['capig']:.2f} µs with the spool on disk, {cpu['capig-tmpfs']:.2f} µs on tmpfs "
                f"({cpu['capig'] - cpu['capig-tmpfs']:+.2f} µs, of it "
                f"{med_of(r, 'capig', 'kernel_us') - med_of(r, 'capig-tmpfs', 'kernel_us'):+.2f} µs in the kernel, "
                "where the spool's writes and fdatasync are).")
        if min(per_rep) < 0.05 < 0.10 < max(per_rep):
            text += " Reps this far apart (one under 5 %, one over 10 %) say much of it is the machine's noise: rerun to tell."
        notes.append(text)
    if notes:
        w("## What is left")
        w("")
        for n in notes:
            w(n)
            w("")


def med_of(r, name, key):
    return med([x[key] for x in r["same_core"][name]])


def chart(r, path):
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    same = r["same_core"]
    names = [n for n in ["nginx", "ordinary", "capig", "capig-tmpfs", "capig-epoll"] if n in same]
    labels = {
        "nginx": "nginx\nreturn 204",
        "ordinary": "hyper+serde\n(ordinary)",
        "capig": "capig\n(spool on disk)",
        "capig-tmpfs": "capig\n(spool on tmpfs)",
        "capig-epoll": "capig\n(epoll driver)",
    }
    user = [med([x["user_us"] for x in same[n]]) for n in names]
    kern = [med([x["kernel_us"] for x in same[n]]) for n in names]
    fig, (ax1, ax2) = plt.subplots(1, 2, figsize=(12, 4.6), gridspec_kw={"width_ratios": [5, 3]})
    xs = range(len(names))
    colors_u = ["#9e9e9e" if n in ("nginx", "ordinary") else "#1f77b4" for n in names]
    ax1.bar(xs, kern, color="#d9d9d9", edgecolor="#555", label="kernel")
    ax1.bar(xs, user, bottom=kern, color=colors_u, edgecolor="#555", label="user space")
    # The label is the table's figure (median of the total), the bar its median parts.
    total = [med([x["cpu_us"] for x in same[n]]) for n in names]
    for i, (u, k, t) in enumerate(zip(user, kern, total)):
        ax1.text(i, u + k, f"{t:.2f}", ha="center", va="bottom", fontsize=9)
    ax1.set_xticks(list(xs))
    ax1.set_xticklabels([labels[n] for n in names], fontsize=8)
    ax1.set_ylabel("server CPU µs per request (lower is better)")
    ax1.set_title("HTTP POST, one 500-byte event per request\n(same vCPU as wrk, median of reps)", fontsize=10)
    ax1.legend(fontsize=8, loc="upper left")

    ws = r["ws"]
    http_wrk = med([x["cpu_us"] for x in same["capig"]])
    kinds = [("HTTP\n1 event/request\n(wrk)", 1e6 / http_wrk)]
    for key, label in [("http_k1", "HTTP\n1 event/request\n(capig-load)"), ("ws_k1", "WebSocket\n1 event/frame"),
                       ("ws_k10", "WebSocket\n10 events/frame")]:
        kinds.append((label, med([x["events_per_cpu_second"] for x in ws[key]])))
    ax2.bar(range(len(kinds)), [k[1] / 1000 for k in kinds], color="#1f77b4", edgecolor="#555")
    for i, (_, v) in enumerate(kinds):
        ax2.text(i, v / 1000, f"{v / 1000:,.0f}k", ha="center", va="bottom", fontsize=9)
    ax2.set_xticks(range(len(kinds)))
    ax2.set_xticklabels([k[0] for k in kinds], fontsize=8)
    ax2.set_ylabel("capig events per second of server CPU (thousands)")
    ax2.set_title("capig ingest per core, by transport", fontsize=10)
    fig.tight_layout()
    fig.savefig(path, dpi=110)


def main():
    src, out = sys.argv[1], sys.argv[2]
    draw = "--no-chart" not in sys.argv[3:]
    r = json.load(open(src))
    m = r["machine"]
    same = r["same_core"]
    cpu = {n: med([x["cpu_us"] for x in v]) for n, v in same.items()}
    rps = {n: med([x["rps"] for x in v]) for n, v in same.items()}
    ws = r["ws"]
    http_cpu = cpu["capig"]
    ws10 = med([x["events_per_cpu_second"] for x in ws["ws_k10"]])
    ws1 = med([x["events_per_cpu_second"] for x in ws["ws_k1"]])
    http_load = med([x["events_per_cpu_second"] for x in ws["http_k1"]])
    cg = r["callgrind"]
    idle = r["idle"]
    idle_projected = idle["rss_before"] + idle["per_connection"] * TARGET_IDLE

    rows = []

    def target(name, measured, goal, ok, shown_measured, shown_goal):
        miss = "" if ok else f" — missed by {abs(measured / goal - 1) * 100:.0f} %"
        rows.append(f"| {name} | {shown_measured} | {shown_goal} | {'**met**' if ok else 'not met' + miss} |")

    r_nginx = rep_ratio(same, "capig", "nginx")
    target("HTTP, 1 event/request: capig server CPU per request ÷ nginx `return 204`",
           r_nginx, 1.00, r_nginx <= 1.00, f"{r_nginx:.2f}×", "≤ 1.00×")
    r_cg = cg["capig"] / cg["ordinary"]
    target("In-process transform: capig ÷ ordinary serde pipeline, callgrind instructions/event",
           r_cg, 0.50, r_cg <= 0.50, f"{r_cg:.2f}×", "≤ 0.50×")
    r_ws = ws10 / (1e6 / http_cpu)
    target("WebSocket, 10 events/frame: events/s per core ÷ capig's HTTP events/s per core",
           r_ws, 4.0, r_ws >= 4.0, f"{r_ws:.2f}×", "≥ 4×")
    rss = idle["rss_with"] if idle["connections"] >= TARGET_IDLE else idle_projected
    rss_label = mib(rss) if idle["connections"] >= TARGET_IDLE else f"{mib(rss)} (projected from {idle['connections']:,})"
    target(f"RSS with {TARGET_IDLE:,} idle WebSocket connections", rss, 2**30, rss <= 2**30, rss_label, "≤ 1 GiB")
    cost = 1 - rep_ratio(same, "capig", "capig-tmpfs", "rps")
    target("Spool group commit on disk: HTTP throughput lost against the spool on tmpfs",
           max(cost, 1e-9), 0.10, cost <= 0.10, pct(cost), "≤ 10 %")

    L = []
    w = L.append
    w("# capig performance report")
    w("")
    w(f"Produced by `{r['command']}` on {r['started']} (finished {r['finished']}), commit `{m['commit']}`"
      f"{' with uncommitted changes' if m['dirty'] else ''}. Every number below was measured in that one run and "
      "is computed by `bench/report.py` from `bench/report.json`, which the harness wrote.")
    w("")
    w("## Targets")
    w("")
    w("| target | measured | goal | |")
    w("|---|---|---|---|")
    L.extend(rows)
    w("")
    w(f"![server CPU per request and events per CPU-second]({os.path.basename(chart_path(out))})")
    w("")
    w("## HTTP, one 500-byte event per request (same-core)")
    w("")
    a = r["args"]
    w(f"wrk (`-t1 -c{a['connections']}`, keep-alive) and every server pinned to CPU 1 (`taskset -c 1`), `capig sim` "
      f"on CPU 0; {a['reps']} reps × {a['seconds']} s, the servers interleaved rep by rep; medians. Server CPU is "
      "utime + stime of the whole process from `/proc/PID/stat` (capig: core, spool and delivery threads), from "
      "the start of the run until 1.5 s after it (every peer gets the same pause, in which capig's last batches "
      "reach the simulator), divided by the requests wrk counted. The ratio columns are the median "
      "over reps of each rep's ratio (peers of one rep ran within a minute of each other).")
    w("")
    w("| server | req/s | rep spread | CPU µs/request | user µs | kernel µs | ÷ nginx | ÷ ordinary | p50 µs | p99 µs |")
    w("|---|---|---|---|---|---|---|---|---|---|")
    desc = {
        "nginx": "nginx 1 worker, `return 204;`",
        "ordinary": "hyper 1 + tokio current-thread + serde_json (`ordinary-server`)",
        "capig": "**capig** (transform, batching, spool on disk, delivery)",
        "capig-tmpfs": "capig, spool on tmpfs",
        "capig-epoll": "capig, epoll driver (`--epoll`)",
    }
    for n, runs in same.items():
        w(f"| {desc.get(n, n)} | {rps[n]:,.0f} | {pct(spread([x['cpu_us'] for x in runs]))} | {cpu[n]:.2f} | "
          f"{med([x['user_us'] for x in runs]):.2f} | {med([x['kernel_us'] for x in runs]):.2f} | "
          f"{rep_ratio(same, n, 'nginx'):.2f}× | {rep_ratio(same, n, 'ordinary'):.2f}× | "
          f"{med([x['latency_us'].get('50', 0) for x in runs]):,.0f} | {med([x['latency_us'].get('99', 0) for x in runs]):,.0f} |")
    bad = {n: sum(x["non_2xx"] for x in v) for n, v in same.items()}
    if "capig_native_ns" in cg:
        floor = cpu["nginx"] + cg["capig_native_ns"] / 1000
        w("")
        w(f"What capig does beyond nginx's `return 204` is the in-process pipeline, which costs "
          f"{cg['capig_native_ns'] / 1000:.2f} µs/event natively on this machine in the same run "
          f"(`pipeline-count`, below, on the bench fixture with seven personal fields to hash; the wrk event has "
          f"five; the ordinary pipeline: {cg['ordinary_native_ns'] / 1000:.2f} µs). nginx plus that "
          f"pipeline is {floor:.2f} µs/request = {floor / cpu['nginx']:.2f}× nginx: the floor for capig with an HTTP "
          f"stack as cheap as nginx's. capig measured {cpu['capig']:.2f} µs = {cpu['capig'] / floor:.2f}× that floor; "
          "the rest is the batching, the spool writer and the delivery to the simulator (their own threads, "
          "counted here), and capig's HTTP path.")
    w("")
    w("Answers other than 2xx: " + ", ".join(f"{n} {b}" for n, b in bad.items()) + ".")
    ack = r.get("acknowledged")
    if ack:
        got = r["sim"]["events_received"]
        acked = ack["wrk"] + ack["capig_load"]
        w(f"Events the three capig instances acknowledged (every run, warm-up and profile included): {acked:,}; "
          f"events the simulator accepted: {got:,} "
          f"({'consistent: ' if acked <= got <= acked + ack['slack'] else 'INCONSISTENT: '}"
          f"wrk stops counting with up to {a['connections']} requests in flight per run).")
    w("")
    w("## Split-core HTTP (informational)")
    w("")
    w("wrk on CPU 0 (with the simulator), servers on CPU 1; one run each. On this VM every cross-vCPU wake-up is "
      "a VM exit, so these numbers are noisy; they show tail latency under load, not cost.")
    w("")
    w("| server | req/s | CPU µs/request | p50 µs | p90 µs | p99 µs |")
    w("|---|---|---|---|---|---|")
    for n, x in r["split_core"].items():
        w(f"| {desc.get(n, n)} | {x['rps']:,.0f} | {x['cpu_us']:.2f} | {x['latency_us'].get('50', 0):,.0f} | "
          f"{x['latency_us'].get('90', 0):,.0f} | {x['latency_us'].get('99', 0):,.0f} |")
    w("")
    w("## capig ingest by transport (capig-load, same-core)")
    w("")
    w(f"`capig-load` ({a.get('ws_connections', 64)} connections, one request or frame in flight on each, realistic generated events: varying "
      "users, a third of the URLs with `fbclid`, advanced matching on half) pinned to CPU 1 with capig. "
      "Events per CPU-second = acknowledged events ÷ capig's CPU seconds: what one core of capig ingests "
      "when it is the bottleneck.")
    w("")
    w("| transport | events/s (same-core) | capig CPU µs/event | events per CPU-second | ÷ HTTP (wrk) | p99 ack µs |")
    w("|---|---|---|---|---|---|")
    w(f"| HTTP, 1 event/request (wrk, above) | {rps['capig']:,.0f} | {http_cpu:.2f} | {1e6 / http_cpu:,.0f} | 1.00× | "
      f"{med([x['latency_us'].get('99', 0) for x in same['capig']]):,.0f} |")
    for key, label in [("http_k1", "HTTP, 1 event/request (capig-load)"), ("ws_k1", "WebSocket, 1 event/frame"),
                       ("ws_k10", "WebSocket, 10 events/frame")]:
        xs = ws[key]
        eps = med([x["events_per_cpu_second"] for x in xs])
        w(f"| {label} | {med([x['events_per_second'] for x in xs]):,.0f} | "
          f"{med([x['cpu_us_per_event'] for x in xs]):.2f} | {eps:,.0f} | {eps / (1e6 / http_cpu):.2f}× | "
          f"{med([x['latency_us']['p99'] for x in xs]):,.0f} |")
    w("")
    w("## In-process transform (callgrind)")
    w("")
    n1, n2 = cg["n"]
    w(f"`pipeline-count capig|ordinary N` under `valgrind --tool=callgrind`, N = {n1:,} and {n2:,}; "
      f"instructions/event = (Ir({n2:,}) − Ir({n1:,})) ÷ {n2 - n1:,}. capig: the body parsed in place into a "
      "tape, normalized, hashed, written as a CAPI event into a batch buffer. Ordinary: serde_json into owned "
      "structs, normalize into new Strings, ring SHA-256 with `format!` hex, serde_json serialize. Both produce "
      "the same CAPI event (a test checks it). valgrind's CPU has no SHA-NI/AVX-512, so both take ring's "
      "portable SHA-256: the hash counts the same on both sides.")
    w("")
    w("| pipeline | instructions/event | ratio | native ns/event (best of 3) |")
    w("|---|---|---|---|")
    w(f"| capig | {cg['capig']:,.0f} | {r_cg:.2f}× | {cg.get('capig_native_ns', 0):,.0f} |")
    w(f"| ordinary serde | {cg['ordinary']:,.0f} | 1.00× | {cg.get('ordinary_native_ns', 0):,.0f} |")
    w("")
    w("## Idle WebSocket connections")
    w("")
    w(f"A fresh capig (one core), {idle['connections']:,} WebSockets opened by `capig-idle` from source addresses "
      f"127.1.0.1 upwards (1,000 per address), handshake completed, then silent; RSS (`VmRSS`) read 2 s after the "
      f"last one opened, and afterwards every connection pinged: {idle['alive']:,} answered.")
    w("")
    w("| | RSS |")
    w("|---|---|")
    w(f"| capig before | {mib(idle['rss_before'])} |")
    w(f"| with {idle['connections']:,} idle WebSockets | {mib(idle['rss_with'])} |")
    w(f"| per connection | {idle['per_connection']:,.0f} bytes |")
    w(f"| opening them took | {idle['open_seconds']:.1f} s |")
    if idle["connections"] < TARGET_IDLE:
        w(f"| projected for {TARGET_IDLE:,} (before + {TARGET_IDLE:,} × per connection) | {mib(idle_projected)} |")
    w("")
    if idle["connections"] < idle.get("requested", TARGET_IDLE):
        w(f"This run could not open {idle.get('requested', TARGET_IDLE):,}: the file-descriptor hard limit here is "
          f"{idle.get('fd_limit', 0):,} and the harness lacks CAP_SYS_RESOURCE to raise it (a container). The "
          "per-connection figure is what a connection costs; run the harness as a root with that capability (an EC2 "
          "instance) to measure 100,000 directly.")
        w("")
    w("## Where capig's CPU goes (perf, HTTP load)")
    w("")
    entries, threads = profile_parts(r)
    if not entries:
        w("perf could not record on this machine in this run (no profile).")
        w("")
    else:
        w("`perf record -e cpu-clock` on the capig process during a same-core wrk run (software clock: this VM has "
          "no hardware counters).")
        w("")
        if threads:
            w("By thread, all samples:")
            w("")
            w("| thread | kernel | user space | total |")
            w("|---|---|---|---|")
            for comm, (k, u) in sorted(thread_split(threads).items(), key=lambda kv: -sum(kv[1])):
                w(f"| {comm} | {k:.1f} % | {u:.1f} % | {k + u:.1f} % |")
            w("")
        w("Entries of at least 0.3 % of the samples, grouped by what they are:")
        w("")
        w("| share of capig's samples | where |")
        w("|---|---|")
        for g, share in group_profile(entries):
            w(f"| {share:.1f} % | {g} |")
        w("")
        w("<details><summary>The 30 largest entries</summary>")
        w("")
        w("| share | thread | object | symbol |")
        w("|---|---|---|---|")
        for share, comm, dso, space, sym in entries[:30]:
            w(f"| {share:.1f} % | {comm} | {dso} | `{sym[:90].strip()}` |")
        w("")
        w("</details>")
        w("")
    left(w, r, cpu, cg, r_nginx, r_ws, ws10, http_cpu, entries, threads, cost)
    w("## Machine")
    w("")
    w(f"- CPU: {m['cpu']}, {m['vcpus']} vCPUs; memory {m['memory_gib']} GiB; kernel {m['kernel']}")
    w(f"- {m['nginx']}; {m['wrk']}; {m['valgrind']}; {m['rustc']}")
    w("- capig and the bench binaries: `cargo build --release` (fat LTO, one codegen unit)")
    w("")
    w("## Commands")
    w("")
    w("```sh")
    w(f"{r['command']}        # all of the above; writes bench/REPORT.md, bench/report.json, bench/report-chart.png")
    w("# what it runs, per peer and rep:")
    w("taskset -c 0 capig sim --listen 127.0.0.1:PORT --keep 1000")
    w("taskset -c 1 capig serve --config capig.toml      # cores = 1, http listener, spool on disk / tmpfs, --epoll")
    w("taskset -c 1 nginx -c nginx.conf                  # master_process off, 1 worker, location / { return 204; }")
    w("taskset -c 1 ordinary-server 127.0.0.1:PORT")
    w(f"taskset -c 1 wrk -t1 -c{a['connections']} -d{a['seconds']}s --latency -s post.lua http://127.0.0.1:PORT/capig/events")
    w(f"taskset -c 1 capig-load --mode ws -k 10 --connections {a.get('ws_connections', 64)} --duration {a['seconds']} --target 127.0.0.1:PORT")
    w(f"taskset -c 0 capig-idle --connections {idle['connections']} --target 127.0.0.1:PORT")
    w(f"valgrind --tool=callgrind pipeline-count capig {n2}")
    w("```")
    w("")
    with open(out, "w") as f:
        f.write("\n".join(L))
    if draw:
        chart(r, chart_path(out))


def chart_path(out):
    base = os.path.splitext(out)[0]
    return (os.path.join(os.path.dirname(out), "report-chart.png") if os.path.basename(base) == "REPORT"
            else base + "-chart.png")


if __name__ == "__main__":
    main()
