//! BENCHMARKS.md from the typed `BENCH` rows: ratios first, raw figures
//! beside them, and the project's targets with what was measured. The prose
//! is in report.md.in; this file computes the figures and lays out the
//! tables.

use std::fmt::Write as _;
use std::time::Duration;

use super::rows::{Bpf, Counts, Cpu, Env, Field, Flows, Hooks, Paced, Row, Scrape};
use super::{Part, Replay, Run};

pub struct Context<'a> {
    pub runs: &'a [Run],
    pub replay: &'a Replay,
    pub machine: String,
    pub command: String,
    pub total: Duration,
    /// Spent waiting for another xtask's VM (not in `total`).
    pub waited: Duration,
}

/// The report's prose, in blocks named by `@@ name` lines.
const PROSE: &str = include_str!("report.md.in");

/// The prose block `name` with its `{placeholders}` filled in.
fn prose(name: &str, values: &[(&str, &str)]) -> String {
    let marker = format!("@@ {name}\n");
    let start = PROSE
        .find(&marker)
        .unwrap_or_else(|| panic!("report.md.in has no block {name}"))
        + marker.len();
    // The newline before the next marker ends the block's last line.
    let end = PROSE[start..]
        .find("\n@@ ")
        .map_or(PROSE.len(), |i| start + i + 1);
    let mut text = &PROSE[start..end];
    let mut out = String::with_capacity(text.len());
    while let Some(open) = text.find('{') {
        let close = open
            + text[open..]
                .find('}')
                .expect("an unclosed { in report.md.in");
        let key = &text[open + 1..close];
        let value = values
            .iter()
            .find(|(k, _)| *k == key)
            .unwrap_or_else(|| panic!("no value for {{{key}}} in block {name}"))
            .1;
        out.push_str(&text[..open]);
        out.push_str(value);
        text = &text[close + 1..];
    }
    out.push_str(text);
    out
}

/// The rows of one section of a run.
impl Run {
    fn env(&self) -> Option<&Env> {
        self.rows.iter().find_map(|r| match r {
            Row::Env(e) => Some(e),
            _ => None,
        })
    }

    fn hooks(&self) -> Option<&Hooks> {
        self.rows.iter().find_map(|r| match r {
            Row::Hooks(h) => Some(h),
            _ => None,
        })
    }

    fn scrape(&self, proto: &str) -> Option<&Scrape> {
        self.rows.iter().find_map(|r| match r {
            Row::Scrape(s) if s.proto == proto => Some(s),
            _ => None,
        })
    }

    fn rates(&self) -> impl Iterator<Item = &Flows> {
        self.rows.iter().filter_map(|r| match r {
            Row::Rate(f) => Some(f),
            _ => None,
        })
    }

    /// The further serve runs, scraped and not, in the order they ran.
    fn scrape_pairs(&self) -> impl Iterator<Item = &Flows> {
        self.rows.iter().filter_map(|r| match r {
            Row::ScrapePair(f) => Some(f),
            _ => None,
        })
    }

    /// The further runs of nothing listening and of `tracker events`, in the
    /// order they ran.
    fn rate_pairs(&self) -> impl Iterator<Item = &Flows> {
        self.rows.iter().filter_map(|r| match r {
            Row::RatePair(f) => Some(f),
            _ => None,
        })
    }

    /// The paced serve runs, scraped and not, in the order they ran.
    fn paced_scrapes(&self) -> impl Iterator<Item = &Paced> {
        self.rows.iter().filter_map(|r| match r {
            Row::ScrapePaced(p) => Some(p),
            _ => None,
        })
    }

    fn rate(&self, proto: &str, listener: &str) -> Option<&Flows> {
        self.rates()
            .find(|r| r.proto == proto && r.listener == listener)
    }

    fn losses(&self) -> impl Iterator<Item = &Flows> {
        self.rows.iter().filter_map(|r| match r {
            Row::Loss(f) => Some(f),
            _ => None,
        })
    }

    fn cpu(&self) -> impl Iterator<Item = &Cpu> {
        self.rows.iter().filter_map(|r| match r {
            Row::Cpu(c) => Some(c),
            _ => None,
        })
    }

    fn counts(&self) -> impl Iterator<Item = &Counts> {
        self.rows.iter().filter_map(|r| match r {
            Row::Counts(c) => Some(c),
            _ => None,
        })
    }

    fn bpf(&self) -> impl Iterator<Item = &Bpf> {
        self.rows.iter().filter_map(|r| match r {
            Row::Bpf(b) => Some(b),
            _ => None,
        })
    }

    fn bpf_update(&self) -> impl Iterator<Item = &Bpf> {
        self.rows.iter().filter_map(|r| match r {
            Row::BpfUpdate(b) => Some(b),
            _ => None,
        })
    }

    fn error(&self) -> Option<&str> {
        self.rows.iter().find_map(|r| match r {
            Row::Error(msg) => Some(msg.as_str()),
            _ => None,
        })
    }

    /// `ebpf` or `netlink`: the source the tracker measured.
    fn source(&self) -> String {
        self.env().map_or("ebpf".into(), |e| e.source.to_string())
    }

    fn kernel(&self) -> &str {
        self.env().map_or("?", |e| e.kernel.as_str())
    }
}

fn listener_name(v: &str, source: &str) -> String {
    let tracker = if source == "netlink" {
        "tracker --source netlink events"
    } else {
        "tracker events"
    };
    match v {
        "none" => "nothing listening".into(),
        "tracker" => format!("`{tracker} > /dev/null`"),
        "tracker-json" => format!("`{tracker} -o json > /dev/null`"),
        "tracker-all" => format!("`{tracker} -e ALL > /dev/null`"),
        "serve" => format!("`{}`, not scraped", tracker.replace("events", "serve")),
        "serve-scraped" => format!(
            "`{}`, GET /metrics every 100 ms",
            tracker.replace("events", "serve")
        ),
        "ct" => "`conntrack -E > /dev/null`".into(),
        "ct-b8M" => "`conntrack -E -b 8M > /dev/null`".into(),
        "ct-new" => "`conntrack -E -e NEW > /dev/null`".into(),
        "ct-new-b8M" => "`conntrack -E -e NEW -b 8M > /dev/null`".into(),
        other => other.into(),
    }
}

/// Events the listener should have shown: known only when its stream holds
/// NEW events alone during the run (UDP never gets a reply here; TCP gets
/// UPDATEs on ctnetlink, but the eBPF source has no UPDATE).
fn expected_known(r: &Flows, source: &str) -> bool {
    let v = &r.listener;
    // serve's "shown" is its NEW counter, whatever the protocol.
    r.proto == "udp"
        || v.starts_with("ct-new")
        || v.starts_with("serve")
        || (source == "ebpf" && v.starts_with("tracker"))
}

/// Events the listener should have shown: `expected` where the run says
/// (the CPU run's flush adds a DESTROY per entry), else one per entry.
fn expected(r: &Flows) -> Option<f64> {
    r.expected.num().or(r.created.num())
}

fn missing(r: &Flows, source: &str) -> Option<i64> {
    let created = expected(r)? as i64;
    let shown = r.shown.num()? as i64;
    expected_known(r, source).then_some((created - shown).max(0))
}

fn pct(x: f64) -> String {
    format!("{:.1} %", x * 100.0)
}

fn rate(x: f64) -> String {
    if x >= 1e6 {
        format!("{:.2} M/s", x / 1e6)
    } else if x >= 1e3 {
        format!("{:.1} k/s", x / 1e3)
    } else {
        format!("{x:.0}/s")
    }
}

/// What the tool itself says it lost.
fn lost_cell(r: &Flows) -> String {
    let lost = r.lost.as_str();
    if lost == "-" || lost.is_empty() {
        return "—".into();
    }
    if r.listener.starts_with("ct") {
        format!("{lost} ENOBUFS")
    } else {
        lost.into()
    }
}

fn loss_cell(r: &Flows, source: &str) -> String {
    match missing(r, source) {
        Some(m) => {
            let created = expected(r).unwrap_or(0.0).max(1.0);
            format!("{m} ({})", pct(m as f64 / created))
        }
        None => "n/a (UPDATEs)".into(),
    }
}

/// One listener's flow rate against nothing listening, same run and protocol.
struct Ratio {
    proto: String,
    listener: String,
    ratio: f64,
}

/// The tracker's flow-rate ratio for one protocol, and the best
/// `conntrack -E` variant's of the same run (`None` when none ran).
/// `tracker` is the median over the pairs of runs: the rate table's, then
/// the further ones taking turns (`pairs`, in that order), as 3 s runs of
/// one listener differ by several per cent. Each `conntrack -E` variant ran
/// once: its rate is set against the median rate with nothing listening
/// over the same runs, so that one fast or slow baseline run favours neither.
struct FlowRate {
    tracker: f64,
    pairs: Vec<f64>,
    best_ct: Option<f64>,
    /// Events the further tracker runs did not show, summed (`None` when
    /// not known).
    further_missing: Option<i64>,
}

fn flow_rate(run: &Run, ratios: &[Ratio], proto: &str, source: &str) -> Option<FlowRate> {
    let mut pairs = vec![
        ratios
            .iter()
            .find(|r| r.proto == proto && r.listener == "tracker")?
            .ratio,
    ];
    let further: Vec<&Flows> = run.rate_pairs().filter(|r| r.proto == proto).collect();
    pairs.extend(pair_ratios(&further, "tracker", "none"));
    let nothing: Vec<f64> = run
        .rate(proto, "none")
        .into_iter()
        .chain(further.iter().copied())
        .filter(|r| r.listener == "none")
        .filter_map(|r| r.rate.num())
        .filter(|b| *b > 0.0)
        .collect();
    let best_ct = (!nothing.is_empty())
        .then(|| {
            let base = median(&nothing);
            run.rates()
                .filter(|r| r.proto == proto && r.listener.starts_with("ct"))
                .filter_map(|r| r.rate.num())
                .map(|x| x / base)
                .reduce(f64::max)
        })
        .flatten();
    let further_missing = further
        .iter()
        .filter(|r| r.listener == "tracker")
        .map(|r| missing(r, source))
        .try_fold(0, |sum, m| m.map(|m| sum + m));
    Some(FlowRate {
        tracker: median(&pairs),
        pairs,
        best_ct,
        further_missing,
    })
}

fn rate_table(out: &mut String, run: &Run, source: &str) -> Vec<Ratio> {
    let mut ratios = Vec::new();
    if run.rates().next().is_none() {
        return ratios;
    }
    let pairs = run.rate_pairs().count() / 2;
    if pairs > 0 {
        let protos = run
            .rate_pairs()
            .map(|r| r.proto.as_str())
            .collect::<std::collections::BTreeSet<_>>()
            .len()
            .max(1);
        out.push_str(&prose(
            "rate-pairs",
            &[("pairs", &(pairs / protos).to_string())],
        ));
    }
    out.push_str(&prose("rate-table", &[]));
    for proto in ["udp", "tcp"] {
        let base = run.rate(proto, "none").and_then(|r| r.rate.num());
        for r in run.rates().filter(|r| r.proto == proto) {
            let v = r.listener.as_str();
            let ratio = match (base, r.rate.num()) {
                (Some(b), Some(x)) if b > 0.0 => x / b,
                _ => f64::NAN,
            };
            if v != "none" {
                ratios.push(Ratio {
                    proto: proto.into(),
                    listener: v.into(),
                    ratio,
                });
            }
            let what = if proto == "udp" {
                "UDP, 1 datagram each"
            } else {
                "TCP connect+close"
            };
            let _ = writeln!(
                out,
                "| {what} | {} | {} | {:.2} | {} | {} | {} | {} |",
                listener_name(v, source),
                rate(r.rate.num().unwrap_or(0.0)),
                ratio,
                r.created,
                r.shown,
                if v == "none" {
                    "—".into()
                } else {
                    loss_cell(r, source)
                },
                lost_cell(r),
            );
        }
    }
    out.push('\n');
    ratios
}

/// What `-e ALL` (UPDATE events) costs: TCP connect/close flow rate against
/// NEW/DESTROY only and against `conntrack -E`, and how often the UPDATE
/// hook ran per flow.
fn update_cost(out: &mut String, run: &Run) -> Option<()> {
    let all = run.rate("tcp", "tracker-all")?;
    let rate_of = |r: Option<&Flows>| r.and_then(|r| r.rate.num()).filter(|x| *x > 0.0);
    let all_rate = rate_of(Some(all))?;
    let vs = |listener: &str| {
        rate_of(run.rate("tcp", listener)).map_or("—".into(), |x| format!("{:.2}", all_rate / x))
    };
    out.push_str(&prose(
        "update-cost",
        &[
            ("vs_tracker", &vs("tracker")),
            ("vs_ct", &vs("ct")),
            ("vs_none", &vs("none")),
            ("shown", all.shown.as_str()),
            ("flows", all.created.as_str()),
        ],
    ));
    let flows = all.flows.num().or(all.created.num()).unwrap_or(f64::NAN);
    if run.bpf_update().next().is_some() {
        out.push_str(&prose("update-bpf-table", &[]));
        for r in run.bpf_update() {
            let cnt = r.run_cnt.num().unwrap_or(f64::NAN);
            let per = r.run_time_ns.num().unwrap_or(f64::NAN) / cnt;
            let _ = writeln!(
                out,
                "| {} | {} | {} | {:.2} | {per:.0} |",
                r.prog,
                prog_type(&r.kind),
                r.run_cnt,
                cnt / flows
            );
        }
        out.push('\n');
    }
    Some(())
}

/// Where one listener of the loss curve first lost events.
struct FirstLoss {
    listener: &'static str,
    /// The lowest rate with a loss, if any.
    at: Option<f64>,
    /// The highest rate reached.
    max: f64,
}

/// The listeners of the loss curve.
const LOSS_LISTENERS: [&str; 3] = ["tracker", "ct-new", "ct-new-b8M"];

/// Returns per listener the lowest offered rate with a loss.
fn loss_table(out: &mut String, run: &Run, source: &str) -> Vec<FirstLoss> {
    let rows: Vec<&Flows> = run.losses().collect();
    let mut first = Vec::new();
    if rows.is_empty() {
        return first;
    }
    let _ = write!(out, "| offered | ");
    for t in LOSS_LISTENERS {
        let _ = write!(out, "{} | ", listener_name(t, source));
    }
    let _ = writeln!(out, "\n|---:|{}", "---:|".repeat(LOSS_LISTENERS.len()));
    let mut offered: Vec<u64> = rows
        .iter()
        .filter_map(|r| r.offered.as_str().parse().ok())
        .collect();
    // Paced rates ascending, then 0: as fast as it goes.
    offered.sort_unstable_by(|a, b| (*a == 0).cmp(&(*b == 0)).then(a.cmp(b)));
    offered.dedup();
    for o in &offered {
        let label = if *o == 0 {
            "maximum".to_string()
        } else {
            rate(*o as f64)
        };
        let _ = write!(out, "| {label} | ");
        for t in LOSS_LISTENERS {
            let cell = rows
                .iter()
                .find(|r| r.listener == t && r.offered.as_str() == o.to_string())
                .map_or("—".into(), |r| {
                    format!(
                        "{}: {} missing, {}",
                        rate(r.rate.num().unwrap_or(0.0)),
                        missing(r, source).map_or("?".into(), |m| m.to_string()),
                        lost_cell(r)
                    )
                });
            let _ = write!(out, "{cell} | ");
        }
        out.push('\n');
    }
    for t in LOSS_LISTENERS {
        let of_listener = || rows.iter().filter(move |r| r.listener == t);
        let mut lossy: Vec<&&Flows> = of_listener()
            .filter(|r| {
                missing(r, source).unwrap_or(0) > 0 || r.lost.num().is_some_and(|l| l > 0.0)
            })
            .collect();
        lossy.sort_by(|a, b| {
            a.rate
                .num()
                .unwrap_or(0.0)
                .total_cmp(&b.rate.num().unwrap_or(0.0))
        });
        first.push(FirstLoss {
            listener: t,
            at: lossy.first().and_then(|r| r.rate.num()),
            max: of_listener()
                .filter_map(|r| r.rate.num())
                .fold(0.0, f64::max),
        });
    }
    out.push('\n');
    for f in &first {
        let _ = writeln!(
            out,
            "- {}: {}",
            listener_name(f.listener, source),
            match f.at {
                Some(r) => format!("first loses events at {}", rate(r)),
                None => format!("no loss up to {} (the maximum reached)", rate(f.max)),
            }
        );
    }
    out.push('\n');
    first
}

/// `tracker counts` against `conntrack -L | grep -c` at one table size.
struct CountsSpeedup {
    entries: f64,
    factor: f64,
}

fn counts_table(out: &mut String, run: &Run) -> Vec<CountsSpeedup> {
    let rows: Vec<&Counts> = run.counts().collect();
    let mut speedups = Vec::new();
    if rows.is_empty() {
        return speedups;
    }
    out.push_str(&prose("counts-table", &[]));
    let mut sizes: Vec<&str> = rows.iter().map(|r| r.entries.as_str()).collect();
    sizes.dedup();
    for n in sizes {
        let of_size = || rows.iter().filter(move |r| r.entries.as_str() == n);
        let ours = of_size()
            .find(|r| r.tool.starts_with("tracker"))
            .and_then(|r| r.us.num());
        for r in of_size() {
            let us = r.us.num().unwrap_or(f64::NAN);
            let factor = ours.map_or(f64::NAN, |o| us / o.max(1.0));
            if r.tool == "conntrack -L | grep -c mark=1" {
                speedups.push(CountsSpeedup {
                    entries: r.entries.num().unwrap_or(0.0),
                    factor,
                });
            }
            let mut answer = r.answer.replace('|', "\\|");
            answer.truncate(120);
            let _ = writeln!(
                out,
                "| {n} | `{}` | {:.1} ms | {} | `{answer}` |",
                r.tool.replace('|', "\\|"),
                us / 1000.0,
                if r.tool.starts_with("tracker") {
                    "1×".into()
                } else {
                    format!("{factor:.0}×")
                },
            );
        }
    }
    out.push('\n');
    speedups
}

/// Returns (CPU % of a core per 10 k events/s) of the tracker.
fn cpu_table(out: &mut String, run: &Run, source: &str) -> Option<f64> {
    let mut ours = None;
    if run.cpu().next().is_none() {
        return ours;
    }
    out.push_str(&prose("cpu-table", &[]));
    for r in run.cpu() {
        let secs = r.wall_ns.num().unwrap_or(f64::NAN) / 1e9;
        let cpu = r.ticks.num().unwrap_or(f64::NAN) / r.hz.num().unwrap_or(100.0) / secs;
        let ev = r.flows.rate.num().unwrap_or(f64::NAN);
        let per10k = cpu * 10_000.0 / ev;
        if r.flows.listener == "tracker" {
            ours = Some(per10k);
        }
        let _ = writeln!(
            out,
            "| {} | {} | {} | {} | {:.1} MiB | {} | {} |",
            listener_name(&r.flows.listener, source),
            rate(ev),
            pct(cpu),
            pct(per10k),
            r.rss_kib.num().unwrap_or(f64::NAN) / 1024.0,
            r.rss_anon_kib
                .num()
                .map_or("—".into(), |k| format!("{:.1} MiB", k / 1024.0)),
            loss_cell(&r.flows, source),
        );
    }
    out.push('\n');
    ours
}

/// Under a run's heading: the hook mode it measured, in the tracker's words.
fn hooks_line(out: &mut String, run: &Run) {
    let Some(h) = run.hooks() else {
        if run.part != Part::Host {
            let _ = writeln!(
                out,
                "Hooks measured: not reported (bench.sh printed no `hooks` row).\n"
            );
        }
        return;
    };
    let _ = write!(
        out,
        "Hooks measured: **{}** (the tracker's start-up lines: {}).",
        h.mode,
        h.detail.replace(';', "; ")
    );
    if !h.why.is_empty() {
        let _ = write!(out, " Not fentry/fexit, as the tracker said: {}.", h.why);
    }
    out.push_str("\n\n");
}

/// bpftool's program type, with what it means here.
fn prog_type(t: &str) -> &str {
    match t {
        "tracing" => "tracing (fentry/fexit)",
        other => other,
    }
}

/// ns of one new UDP flow with nothing listening: the median rate over the
/// `rate` section's UDP run of the same environment and the further runs
/// taking turns with `tracker events` (3 s runs differ by several per cent).
fn udp_flow_ns(run: &Run) -> Option<f64> {
    let rates: Vec<f64> = run
        .rate("udp", "none")
        .into_iter()
        .chain(run.rate_pairs())
        .filter(|r| r.proto == "udp" && r.listener == "none")
        .filter_map(|r| r.rate.num())
        .filter(|b| *b > 0.0)
        .collect();
    (!rates.is_empty()).then(|| 1e9 / median(&rates))
}

/// Every BPF program of the tracker, summed per connection.
#[derive(Clone, Copy)]
struct PerConnection {
    ns: f64,
    /// One new UDP flow with nothing listening, when measured.
    flow_ns: Option<f64>,
}

impl PerConnection {
    fn share(&self) -> Option<f64> {
        self.flow_ns.map(|f| self.ns / f)
    }
}

/// The tracker's BPF programs during the CPU section's `tracker events` run
/// and the flush after it; returns their sum per connection.
fn bpf_table(out: &mut String, run: &Run) -> Option<PerConnection> {
    run.bpf().next()?;
    let flow_ns = udp_flow_ns(run);
    // The entries the run made (`conntrack -C` before the flush), all
    // flushed while the stats ran: each connection passed NEW and DESTROY
    // once.
    let conns = run
        .cpu()
        .find(|r| r.flows.listener == "tracker")
        .and_then(|r| r.flows.created.num())
        .filter(|c| *c > 0.0);
    out.push_str(&prose("bpf-table", &[]));
    let mut total_ns = 0.0;
    for r in run.bpf() {
        let runs = r.run_cnt.num().unwrap_or(f64::NAN);
        let ns = r.run_time_ns.num().unwrap_or(f64::NAN);
        let per_conn = conns.map(|c| ns / c);
        total_ns += ns;
        let _ = writeln!(
            out,
            "| {} | {} | {} | {} | {} | {:.0} | {} | {} |",
            r.prog,
            prog_type(&r.kind),
            r.xlated_bytes
                .num()
                .filter(|b| *b > 0.0)
                .map_or("—".into(), |b| format!("{:.0}", b / 8.0)),
            r.run_cnt,
            conns.map_or("—".into(), |c| format!("{:.2}", runs / c)),
            ns / runs,
            per_conn.map_or("—".into(), |p| format!("{p:.0}")),
            match (per_conn, flow_ns) {
                (Some(p), Some(f)) => pct(p / f),
                _ => "—".into(),
            },
        );
    }
    // Which mode these programs ran as is measured, not assumed: it differs
    // per kernel (fexit where nf_conntrack has BTF, kprobes elsewhere).
    let mode_name = run.hooks().map_or("", |h| h.mode.as_str());
    let mode = |block| prose(block, &[("mode", mode_name)]);
    out.push_str(&match run.hooks() {
        Some(h) if h.has("kprobe") => mode("bpf-kprobe"),
        Some(h) if h.has("fexit") || h.has("fentry") => mode("bpf-trampoline"),
        Some(_) => mode("bpf-other-mode"),
        None => prose("bpf-mode-not-reported", &[]),
    });
    let Some(c) = conns else {
        out.push_str(&prose("bpf-no-connections", &[]));
        return None;
    };
    let cost = PerConnection {
        ns: total_ns / c,
        flow_ns,
    };
    let vs_flow = match (cost.share(), flow_ns) {
        (Some(s), Some(f)) => format!(
            ", {} of a new UDP flow's {f:.0} ns with nothing listening",
            pct(s)
        ),
        _ => String::new(),
    };
    out.push_str(&prose(
        "bpf-per-connection",
        &[
            ("ns", &format!("{:.0}", cost.ns)),
            ("vs_flow", &vs_flow),
            ("connections", &format!("{c:.0}")),
        ],
    ));
    Some(cost)
}

fn verdict(ok: bool) -> &'static str {
    if ok { "met" } else { "**not met**" }
}

/// One line of the Targets table.
struct Target {
    what: String,
    measured: String,
    met: bool,
}

/// The flow-rate target of one protocol: at least `want` of nothing
/// listening and, with `beat_ct`, above every `conntrack -E` variant of the
/// same run.
fn flow_target(tag: &str, proto: &str, fr: Option<&FlowRate>, want: f64, beat_ct: bool) -> Target {
    let what = format!(
        "{tag}: {proto} flow rate with `tracker events` ≥ {want} of nothing listening{}",
        if beat_ct {
            " and above every `conntrack -E`"
        } else {
            ""
        }
    );
    let Some(fr) = fr else {
        return Target {
            what,
            measured: "not measured".into(),
            met: false,
        };
    };
    let tracker = if fr.pairs.len() > 1 {
        let each: Vec<String> = fr.pairs.iter().map(|r| format!("{r:.2}")).collect();
        format!(
            "median of {} pairs {:.2} (each: {}; {})",
            fr.pairs.len(),
            fr.tracker,
            each.join(", "),
            match fr.further_missing {
                Some(m) => format!("the further tracker runs missed {m} events"),
                None => "what the further tracker runs missed is not known".into(),
            }
        )
    } else {
        format!("{:.2}", fr.tracker)
    };
    let measured = match (beat_ct, fr.best_ct) {
        (true, Some(ct)) => format!("{tracker} (best `conntrack -E`: {ct:.2})"),
        (true, None) => format!("{tracker} (no `conntrack -E` run)"),
        (false, _) => tracker,
    };
    let above = !beat_ct || fr.best_ct.is_none_or(|ct| fr.tracker > ct);
    Target {
        what,
        measured,
        met: fr.tracker >= want && above,
    }
}

/// `tracker serve` scraped every 100 ms against not scraped, UDP, same run,
/// at the maximum rate: the flow rate moves by less than 1 % and the NEW
/// counter misses nothing. Stricter than the service's condition (a paced
/// 20 k flows/s, `paced_scrape_target`): at the maximum every CPU cycle the
/// scrape takes, and the in-guest scraper's, is a flow not made. The move is
/// the median over the pairs of runs (the rate table's, then the further ones
/// taking turns), as single runs differ by more than 1 %.
fn scrape_target(tag: &str, run: &Run, ratios: &[Ratio], source: &str) -> Option<Target> {
    let ratio = |v: &str| {
        ratios
            .iter()
            .find(|r| r.proto == "udp" && r.listener == v)
            .map(|r| r.ratio)
    };
    let (quiet, scraped) = (ratio("serve")?, ratio("serve-scraped")?);
    let mut moves = vec![scraped / quiet - 1.0];
    let further: Vec<&Flows> = run.scrape_pairs().filter(|r| r.proto == "udp").collect();
    moves.extend(pair_ratios(&further, "serve-scraped", "serve").map(|r| r - 1.0));
    let median = median(&moves);
    let missed = run
        .rates()
        .chain(run.scrape_pairs())
        .filter(|r| r.listener.starts_with("serve"))
        .map(|r| missing(r, source))
        .try_fold(0, |sum, m| m.map(|m| sum + m));
    let spread = if moves.len() > 1 {
        format!(
            "median of {} pairs {} (each: {}); first pair ",
            moves.len(),
            signed(median),
            signed_list(&moves)
        )
    } else {
        String::new()
    };
    Some(Target {
        what: format!(
            "{tag}: `tracker serve` scraped every 100 ms at the maximum UDP rate (stricter \
             than the paced condition): flow rate within 1 % of not scraped, no NEW missed"
        ),
        measured: format!(
            "{spread}{scraped:.2} vs {quiet:.2} of nothing listening ({} moved); {}{}",
            pct((scraped / quiet - 1.0).abs()),
            missed_text(missed),
            run.scrape("udp").map(scrape_cpu).unwrap_or_default()
        ),
        met: median.abs() < 0.01 && missed == Some(0),
    })
}

/// `of` against `against` in each pair of further runs, which come two by
/// two in either order (a pair missing a rate is left out).
fn pair_ratios<'a>(
    further: &'a [&'a Flows],
    of: &'a str,
    against: &'a str,
) -> impl Iterator<Item = f64> + 'a {
    further.chunks_exact(2).filter_map(move |pair| {
        let rate = |v: &str| pair.iter().find(|r| r.listener == v)?.rate.num();
        let base = rate(against).filter(|b| *b > 0.0)?;
        Some(rate(of)? / base)
    })
}

/// The middle of `xs` (the mean of the two middle ones for an even count).
fn median(xs: &[f64]) -> f64 {
    let mut sorted = xs.to_vec();
    sorted.sort_by(f64::total_cmp);
    match sorted.len() {
        0 => f64::NAN,
        n if n % 2 == 1 => sorted[n / 2],
        n => (sorted[n / 2 - 1] + sorted[n / 2]) / 2.0,
    }
}

/// A relative change with its sign: `+0.3 %`, `−1.2 %`.
fn signed(m: f64) -> String {
    format!("{}{}", if m < 0.0 { "−" } else { "+" }, pct(m.abs()))
}

/// Relative changes with their signs, comma-separated.
fn signed_list(moves: &[f64]) -> String {
    moves
        .iter()
        .map(|&m| signed(m))
        .collect::<Vec<_>>()
        .join(", ")
}

/// `N missed`, or that it is not known.
fn missed_text(missed: Option<i64>) -> String {
    match missed {
        Some(m) => format!("{m} missed"),
        None => "missed: not known".into(),
    }
}

/// The service's load condition: `tracker serve` scraped every 100 ms while
/// UDP flows are made at a paced rate (20 k/s) loses no event and moves the
/// flow rate by less than 1 %, judged on the median over pairs of runs taking
/// turns. Paced, the rate falls only when the machine cannot keep up, so the
/// line also shows what serve and the whole machine spent, scraped and not.
fn paced_scrape_target(tag: &str, run: &Run, source: &str) -> Option<Target> {
    let runs: Vec<&Paced> = run.paced_scrapes().collect();
    let offered = runs.first()?.flows.offered.num()?;
    let mut moves = Vec::new();
    for pair in runs.chunks_exact(2) {
        let get = |v: &str| pair.iter().find(|p| p.flows.listener == v);
        if let (Some(q), Some(s)) = (get("serve"), get("serve-scraped"))
            && let (Some(qr), Some(sr)) = (q.flows.rate.num(), s.flows.rate.num())
            && qr > 0.0
        {
            moves.push(sr / qr - 1.0);
        }
    }
    if moves.is_empty() {
        return None;
    }
    let middle = median(&moves);
    let missed = runs
        .iter()
        .map(|p| missing(&p.flows, source))
        .try_fold(0, |sum, m| m.map(|m| sum + m));
    // serve's share of one core while the flows ran, median over the runs of
    // each kind: what a remote Prometheus's scrapes cost the host.
    let share = |v: &str| {
        let xs: Vec<f64> = runs
            .iter()
            .filter(|p| p.flows.listener == v)
            .filter_map(|p| {
                let secs = p.wall_ns.num()? / 1e9;
                (secs > 0.0).then_some(p.serve_ticks.num()? / p.hz.num()? / secs)
            })
            .collect();
        (!xs.is_empty()).then(|| median(&xs))
    };
    let cpu = match (share("serve-scraped"), share("serve")) {
        (Some(s), Some(q)) => format!(
            "; serve's CPU while the flows ran: {} of a core scraped, {} not",
            pct(s),
            pct(q)
        ),
        _ => String::new(),
    };
    let achieved: Vec<String> = runs
        .iter()
        .filter_map(|p| Some(format!("{:.0}", p.flows.rate.num()?)))
        .collect();
    Some(Target {
        what: format!(
            "{tag}: `tracker serve` scraped every 100 ms while {} UDP flows are made: \
             flow rate within 1 % of not scraped, no NEW missed",
            rate(offered)
        ),
        measured: format!(
            "median of {} pairs {} (each: {}; rates per run {}); {}{cpu}",
            moves.len(),
            signed(middle),
            signed_list(&moves),
            achieved.join(", "),
            missed_text(missed),
        ),
        met: middle.abs() < 0.01 && missed == Some(0),
    })
}

/// What a scrape costs in CPU: serve's own (what a remote Prometheus costs
/// the host), from back-to-back scrapes with no traffic, and the scraper's,
/// which runs in the same guest here and competes with the flows.
fn scrape_cpu(s: &Scrape) -> String {
    let hz = s.hz.num().unwrap_or(100.0);
    let per = |ticks: &Field, n: &Field| {
        let n = n.num().filter(|&n| n > 0.0)?;
        Some(ticks.num()? / hz / n * 1e3)
    };
    let (Some(serve), Some(scraper)) = (
        per(&s.idle_serve_ticks, &s.idle_scrapes),
        per(&s.scraper_ticks, &s.scrapes),
    ) else {
        return String::new();
    };
    format!(
        "; CPU per scrape: serve {serve:.1} ms ({} of a core at 10 scrapes/s; {} \
         back-to-back scrapes, no traffic), the scraper in the same guest {scraper:.1} ms",
        pct(serve / 100.0),
        s.idle_scrapes
    )
}

/// Every BPF program for one connection against a new UDP flow's time: at
/// most 15 % on the main kernel (the goal is 3 %), 40 % with the kprobes of
/// the kprobe kernel.
fn per_connection_target(tag: &str, part: Part, cost: Option<PerConnection>) -> Target {
    let (limit, goal) = if part == Part::Kprobe {
        (0.40, None)
    } else {
        (0.15, Some(0.03))
    };
    let what = format!(
        "{tag}: all BPF programs for one connection ≤ {:.0} % of a new UDP flow's time{}",
        limit * 100.0,
        goal.map_or(String::new(), |g| format!(" (goal {:.0} %)", g * 100.0))
    );
    let Some(cost) = cost else {
        return Target {
            what,
            measured: "not measured (no BPF run time per connection)".into(),
            met: false,
        };
    };
    let Some(share) = cost.share() else {
        let measured = format!(
            "{:.0} ns; no nothing-listening UDP rate to compare",
            cost.ns
        );
        return Target {
            what,
            measured,
            met: false,
        };
    };
    let mut measured = format!("{} ({:.0} ns)", pct(share), cost.ns);
    if let Some(g) = goal {
        measured.push_str(if share <= g {
            "; goal reached"
        } else {
            "; goal not reached"
        });
    }
    Target {
        what,
        measured,
        met: share <= limit,
    }
}

/// One run's line in the summary: per kernel, the hook mode, every program
/// for one connection and the tracker's flow-rate ratios.
struct Summary {
    environment: String,
    hooks: String,
    cost: Option<PerConnection>,
    udp: Option<FlowRate>,
    tcp: Option<FlowRate>,
}

/// One run's section; adds its targets and returns its summary line.
fn run_section(out: &mut String, run: &Run, targets: &mut Vec<Target>) -> Summary {
    let source = run.source();
    let env = run.env();
    let _ = writeln!(out, "## {}\n", run.title);
    if let Some(e) = env {
        out.push_str(&prose(
            "environment",
            &[
                ("kernel", e.kernel.as_str()),
                ("machine", e.machine.as_str()),
                ("conntrack", e.conntrack.as_str()),
                ("seconds", e.seconds.as_str()),
            ],
        ));
    }
    hooks_line(out, run);
    if let Some(p) = &run.problem {
        let _ = writeln!(out, "**Incomplete: {p}**\n");
    }
    if let Some(msg) = run.error() {
        let _ = writeln!(out, "**bench.sh stopped: {msg}**\n");
    }
    let seconds = env.map_or("?", |e| e.seconds.as_str());
    let kprobe_run = run.part == Part::Kprobe;

    let rate_intro = if kprobe_run {
        "rate-kprobe-kernel"
    } else {
        "rate"
    };
    out.push_str(&prose(rate_intro, &[("seconds", seconds)]));
    let ratios = rate_table(out, run, &source);
    if source == "ebpf" {
        // With netlink UPDATE is the default, so there is nothing to compare.
        update_cost(out, run);
    }
    let first = if kprobe_run {
        Vec::new()
    } else {
        out.push_str(&prose("loss", &[]));
        loss_table(out, run, &source)
    };
    let counts = if kprobe_run {
        Vec::new()
    } else if source == "ebpf" {
        out.push_str(&prose("counts", &[]));
        counts_table(out, run)
    } else {
        out.push_str(&prose("counts-not-measured", &[]));
        Vec::new()
    };
    let number = if kprobe_run { "2." } else { "4." };
    out.push_str(&prose("cpu", &[("number", number)]));
    let per10k = cpu_table(out, run, &source);
    let cost = bpf_table(out, run);

    // Targets, per environment, the per-connection cost next to the flow
    // rates.
    let hooks = run.hooks();
    let tag = match run.part {
        Part::Host => "netlink (host)".to_string(),
        Part::Main | Part::Kprobe => format!(
            "eBPF (VM {}, {})",
            run.kernel(),
            hooks.map_or("hook mode not reported", |h| &h.mode)
        ),
    };
    let udp = flow_rate(run, &ratios, "udp", &source);
    let tcp = flow_rate(run, &ratios, "tcp", &source);
    if !kprobe_run {
        targets.push(flow_target(&tag, "UDP", udp.as_ref(), 0.8, true));
        targets.push(flow_target(&tag, "TCP", tcp.as_ref(), 0.95, false));
    }
    if run.part != Part::Host {
        targets.push(per_connection_target(&tag, run.part, cost));
    }
    if !kprobe_run && let Some(t) = paced_scrape_target(&tag, run, &source) {
        targets.push(t);
    }
    if !kprobe_run && let Some(t) = scrape_target(&tag, run, &ratios, &source) {
        targets.push(t);
    }
    let ct_survives = first
        .iter()
        .filter(|f| f.listener.starts_with("ct"))
        .map(|f| f.at.unwrap_or(f.max))
        .fold(0.0, f64::max);
    if let Some(f) = first.iter().find(|f| f.listener == "tracker") {
        targets.push(Target {
            what: format!(
                "{tag}: zero loss at every rate conntrack -E survives and at the maximum (default ring)"
            ),
            measured: match f.at {
                Some(a) => format!(
                    "first loss at {} (conntrack -E lossless below {})",
                    rate(a),
                    rate(ct_survives)
                ),
                None => format!("no loss up to {}", rate(f.max)),
            },
            met: f.at.is_none(),
        });
    }
    for s in &counts {
        targets.push(Target {
            what: format!(
                "{tag}: `tracker counts` ≥ 1000× faster than `conntrack -L | grep -c` at {:.0} entries",
                s.entries
            ),
            measured: format!("{:.0}×", s.factor),
            met: s.factor >= 1000.0,
        });
    }
    if let (Some(c), false) = (per10k, kprobe_run) {
        targets.push(Target {
            what: format!("{tag}: ≤ 2 % of a core per 10 k events/s"),
            measured: pct(c),
            met: c <= 0.02,
        });
    }

    Summary {
        environment: match run.part {
            Part::Main => format!("VM, kernel {} (`--kernel`)", run.kernel()),
            Part::Kprobe => format!("VM, kernel {} (`--kprobe-kernel`)", run.kernel()),
            Part::Host => format!("this host, kernel {}", run.kernel()),
        },
        hooks: match (hooks, run.part) {
            (Some(h), _) => h.mode.clone(),
            (None, Part::Host) => "— (netlink source)".into(),
            (None, _) => "not reported".into(),
        },
        cost,
        udp,
        tcp,
    }
}

/// Per kernel, side by side: the hook mode, every program for one
/// connection, the flow-rate ratios.
fn summary_table(out: &mut String, summaries: &[Summary]) {
    out.push_str(&prose("summary", &[]));
    let ratio = |x: Option<f64>| x.map_or("—".into(), |x| format!("{x:.2}"));
    for s in summaries {
        let _ = writeln!(
            out,
            "| {} | {} | {} | {} | {} | {} | {} |",
            s.environment,
            s.hooks,
            s.cost.map_or("—".into(), |c| format!("{:.0} ns", c.ns)),
            s.cost.and_then(|c| c.share()).map_or("—".into(), pct),
            ratio(s.udp.as_ref().map(|f| f.tracker)),
            ratio(s.udp.as_ref().and_then(|f| f.best_ct)),
            ratio(s.tcp.as_ref().map(|f| f.tracker)),
        );
    }
    out.push('\n');
}

pub fn render(cx: &Context) -> String {
    let minutes = |d: Duration| format!("{:.1}", d.as_secs_f64() / 60.0);
    let mut out = prose(
        "header",
        &[
            ("machine", &cx.machine),
            ("command", &cx.command),
            ("total", &minutes(cx.total)),
            ("waited", &minutes(cx.waited)),
        ],
    );
    for run in cx.runs {
        let _ = writeln!(out, "- {}: {:.1} min", run.title, run.seconds / 60.0);
    }
    out.push('\n');

    // The sections come first so the summary above them can quote them.
    let mut targets: Vec<Target> = Vec::new();
    let mut sections = String::new();
    let summaries: Vec<Summary> = cx
        .runs
        .iter()
        .map(|run| run_section(&mut sections, run, &mut targets))
        .collect();
    if !summaries.is_empty() {
        summary_table(&mut out, &summaries);
    }
    out.push_str(&sections);

    out.push_str(&prose("userspace", &[]));
    if let Some(p) = &cx.replay.problem {
        let _ = writeln!(out, "**Incomplete: {p}**\n");
    }
    out.push_str(&prose("replay-table", &[]));
    for (mode, r) in &cx.replay.lines {
        let _ = writeln!(out, "| {mode} | {} |", rate(*r));
    }
    out.push('\n');
    let slowest_format = cx
        .replay
        .lines
        .iter()
        .filter(|(m, _)| m.starts_with("decode+text") || m.starts_with("decode+json"))
        .map(|(_, r)| *r)
        .fold(f64::INFINITY, f64::min);
    if slowest_format.is_finite() {
        targets.push(Target {
            what: "≥ 2 M events/s decode+format on one core (slowest format)".into(),
            measured: rate(slowest_format),
            met: slowest_format >= 2e6,
        });
    }

    out.push_str(&prose("targets", &[]));
    for t in &targets {
        let _ = writeln!(out, "| {} | {} | {} |", t.what, t.measured, verdict(t.met));
    }
    out.push('\n');
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn rows(text: &str) -> Vec<Row> {
        text.lines().filter_map(Row::parse).collect()
    }

    fn run(title: &str, part: Part, text: &str) -> Run {
        Run {
            title: title.into(),
            part,
            rows: rows(text),
            seconds: 60.0,
            problem: None,
        }
    }

    /// The report of some runs, with a replay result.
    fn render_runs(runs: &[Run], replay: Vec<(String, f64)>) -> String {
        let replay = Replay {
            lines: replay,
            problem: None,
        };
        render(&Context {
            runs,
            replay: &replay,
            machine: "m".into(),
            command: "cargo xtask bench".into(),
            total: Duration::from_secs(90),
            waited: Duration::ZERO,
        })
    }

    /// The report of one run made of `BENCH` lines, with a replay result.
    fn render_rows(title: &str, part: Part, text: &str, replay: Vec<(String, f64)>) -> String {
        render_runs(&[run(title, part, text)], replay)
    }

    #[test]
    fn scraped_serve_is_judged_against_unscraped_serve() {
        let md = render_rows(
            "host",
            Part::Host,
            "BENCH\tenv\tkernel=6.18\tsource=netlink\tseconds=1\n\
                 BENCH\trate\tproto=udp\tlistener=none\toffered=0\trate=200000\tcreated=600000\tshown=-\tlost=-\n\
                 BENCH\trate\tproto=udp\tlistener=serve\toffered=0\trate=100000\tcreated=300000\tshown=300000\tlost=0\n\
                 BENCH\trate\tproto=udp\tlistener=serve-scraped\toffered=0\trate=98000\tcreated=294000\tshown=293990\tlost=0\n\
                 BENCH\tscrape\tproto=udp\tscrapes=30\tscraper_ticks=45\tidle_scrapes=100\tidle_serve_ticks=20\thz=100\n",
            vec![],
        );
        assert!(
            md.contains(
                "| `tracker --source netlink serve`, GET /metrics every 100 ms | 98.0 k/s | 0.49 |"
            ),
            "{md}"
        );
        assert!(
            md.contains(
                "scraped every 100 ms at the maximum UDP rate (stricter than the paced \
                 condition): flow rate within 1 % of not scraped, no NEW missed | \
                 0.49 vs 0.50 of nothing listening (2.0 % moved); 10 missed; CPU per scrape: \
                 serve 2.0 ms (2.0 % of a core at 10 scrapes/s; 100 back-to-back scrapes, no \
                 traffic), the scraper in the same guest 15.0 ms | **not met** |"
            ),
            "{md}"
        );
    }

    #[test]
    fn the_scrape_target_judges_the_median_of_the_pairs() {
        let pair = |v: &str, rate: u32| {
            format!(
                "BENCH\tscrape-pair\tproto=udp\tlistener={v}\toffered=0\trate={rate}\t\
                 created={rate}\tshown={rate}\tlost=0\n"
            )
        };
        let mut text = String::from(
            "BENCH\tenv\tkernel=6.18\tsource=netlink\tseconds=1\n\
             BENCH\trate\tproto=udp\tlistener=none\toffered=0\trate=200000\tcreated=600000\tshown=-\tlost=-\n\
             BENCH\trate\tproto=udp\tlistener=serve\toffered=0\trate=100000\tcreated=300000\tshown=300000\tlost=0\n\
             BENCH\trate\tproto=udp\tlistener=serve-scraped\toffered=0\trate=98000\tcreated=294000\tshown=294000\tlost=0\n",
        );
        for (k, scraped) in [99500, 100500, 99800, 101000].into_iter().enumerate() {
            // In alternating order, as bench.sh runs them.
            if k % 2 == 0 {
                text += &pair("serve-scraped", scraped);
                text += &pair("serve", 100000);
            } else {
                text += &pair("serve", 100000);
                text += &pair("serve-scraped", scraped);
            }
        }
        let md = render_rows("host", Part::Host, &text, vec![]);
        assert!(
            md.contains(
                "no NEW missed | median of 5 pairs −0.2 % (each: −2.0 %, −0.5 %, +0.5 %, \
                 −0.2 %, +1.0 %); first pair 0.49 vs 0.50 of nothing listening (2.0 % moved); \
                 0 missed | met |"
            ),
            "{md}"
        );
        // The further runs stay out of the rate table.
        assert_eq!(md.matches("GET /metrics every 100 ms |").count(), 1, "{md}");
    }

    #[test]
    fn the_flow_rate_targets_judge_the_median_of_the_pairs() {
        let pair = |proto: &str, v: &str, rate: u32| {
            format!(
                "BENCH\trate-pair\tproto={proto}\tlistener={v}\toffered=0\trate={rate}\t\
                 created={rate}\tshown={rate}\tlost=0\n"
            )
        };
        let mut text = String::from(
            "BENCH\tenv\tkernel=6.18\tsource=netlink\tseconds=1\n\
             BENCH\trate\tproto=udp\tlistener=none\toffered=0\trate=150000\tcreated=450000\tshown=-\tlost=-\n\
             BENCH\trate\tproto=udp\tlistener=tracker\toffered=0\trate=105000\tcreated=315000\tshown=315000\tlost=0\n\
             BENCH\trate\tproto=udp\tlistener=ct\toffered=0\trate=75000\tcreated=225000\tshown=225000\tlost=0\n\
             BENCH\trate\tproto=tcp\tlistener=none\toffered=0\trate=10000\tcreated=30000\tshown=-\tlost=-\n\
             BENCH\trate\tproto=tcp\tlistener=tracker\toffered=0\trate=8400\tcreated=25200\tshown=50400\tlost=0\n",
        );
        // In alternating order, as bench.sh runs them: UDP 0.90, 0.85, 0.80;
        // TCP 0.97, 0.99 (its first pair 0.84).
        for (k, (proto, none, tracker)) in [
            (0, ("udp", 100000, 90000)),
            (1, ("udp", 80000, 68000)),
            (2, ("udp", 100000, 80000)),
            (0, ("tcp", 10000, 9700)),
            (1, ("tcp", 10000, 9900)),
        ] {
            if k % 2 == 0 {
                text += &pair(proto, "tracker", tracker);
                text += &pair(proto, "none", none);
            } else {
                text += &pair(proto, "none", none);
                text += &pair(proto, "tracker", tracker);
            }
        }
        let md = render_rows("host", Part::Host, &text, vec![]);
        // The median of 0.70, 0.90, 0.85 and 0.80 is 0.825: at least 0.8 and
        // above the one `conntrack -E` run's 0.75, though the first pair alone
        // (0.70) is neither. That 0.75 is against the median rate with nothing
        // listening (150, 100, 80 and 100 k/s: 100 k/s), not the table's fast
        // first run (0.50).
        assert!(
            md.contains(
                "UDP flow rate with `tracker events` ≥ 0.8 of nothing listening and above \
                 every `conntrack -E` | median of 4 pairs 0.82 (each: 0.70, 0.90, 0.85, 0.80; \
                 the further tracker runs missed 0 events) (best `conntrack -E`: 0.75) | met |"
            ),
            "{md}"
        );
        assert!(
            md.contains(
                "TCP flow rate with `tracker events` ≥ 0.95 of nothing listening | median of \
                 3 pairs 0.97 (each: 0.84, 0.97, 0.99; what the further tracker runs missed is \
                 not known) | met |"
            ),
            "{md}"
        );
        // The further runs stay out of the rate table.
        assert_eq!(
            md.matches("| `tracker --source netlink events > /dev/null` |")
                .count(),
            2,
            "{md}"
        );
    }

    #[test]
    fn the_paced_scrape_target_judges_the_median_of_the_pairs_and_shows_the_cpu() {
        // serve's ticks of 100 Hz over 3 s: 30 are 10 % of a core.
        let paced = |v: &str, rate: u32, shown: u32, serve: u32| {
            format!(
                "BENCH\tscrape-paced\tproto=udp\tlistener={v}\toffered=20000\trate={rate}\t\
                 created=60000\tshown={shown}\tlost=0\tserve_ticks={serve}\t\
                 wall_ns=3000000000\thz=100\n"
            )
        };
        let base = "BENCH\tenv\tkernel=6.18\tsource=netlink\tseconds=3\n\
                    BENCH\trate\tproto=udp\tlistener=none\toffered=0\trate=200000\tcreated=600000\tshown=-\tlost=-\n";
        let text = String::from(base)
            + &paced("serve-scraped", 20000, 60000, 30)
            + &paced("serve", 20000, 60000, 20)
            + &paced("serve", 20000, 60000, 21)
            + &paced("serve-scraped", 19900, 60000, 33)
            + &paced("serve-scraped", 19980, 60000, 30)
            + &paced("serve", 20000, 60000, 20);
        let md = render_rows("host", Part::Host, &text, vec![]);
        assert!(
            md.contains(
                "| netlink (host): `tracker serve` scraped every 100 ms while 20.0 k/s UDP flows \
                 are made: flow rate within 1 % of not scraped, no NEW missed | median of 3 pairs \
                 −0.1 % (each: +0.0 %, −0.5 %, −0.1 %; rates per run 20000, 20000, 20000, 19900, \
                 19980, 20000); 0 missed; serve's CPU while the flows ran: 10.0 % of a core \
                 scraped, 6.7 % not | met |"
            ),
            "{md}"
        );
        // A lost event fails it whatever the rates.
        let text = String::from(base)
            + &paced("serve-scraped", 20000, 59999, 30)
            + &paced("serve", 20000, 60000, 20);
        let md = render_rows("host", Part::Host, &text, vec![]);
        assert!(
            md.contains("; 1 missed; serve's CPU while the flows ran: 10.0 % of a core scraped, 6.7 % not | **not met** |"),
            "{md}"
        );
    }

    #[test]
    fn tables_and_targets_come_from_rows() {
        let md = render_rows(
            "host",
            Part::Host,
            "BENCH\tenv\tkernel=6.18\tsource=netlink\tseconds=1\n\
                 BENCH\trate\tproto=udp\tlistener=none\toffered=0\trate=200000\tcreated=600000\tshown=-\tlost=-\n\
                 BENCH\trate\tproto=udp\tlistener=tracker\toffered=0\trate=190000\tcreated=570000\tshown=570000\tlost=0\n\
                 BENCH\trate\tproto=tcp\tlistener=tracker-all\toffered=0\trate=21000\tflows=63000\tcreated=63000\tshown=378000\tlost=0\n\
                 BENCH\trate\tproto=tcp\tlistener=ct\toffered=0\trate=20000\tcreated=60000\tshown=250000\tlost=3\n\
                 BENCH\tloss\tproto=udp\tlistener=tracker\toffered=10000\trate=10000\tcreated=10000\tshown=10000\tlost=0\n\
                 BENCH\tloss\tproto=udp\tlistener=ct-new\toffered=10000\trate=10000\tcreated=10000\tshown=9000\tlost=1\n\
                 BENCH\tcpu\tlistener=tracker\trate=10000\tticks=10\thz=100\twall_ns=2000000000\trss_kib=4096\tcreated=20000\tshown=20000\tlost=0\n",
            vec![("decode+text".into(), 3e6)],
        );
        assert!(md.contains("| UDP, 1 datagram each | `tracker --source netlink events > /dev/null` | 190.0 k/s | 0.95 |"), "{md}");
        assert!(md.contains("n/a (UPDATEs)"), "{md}");
        // With netlink UPDATE is the default: no `-e ALL` comparison.
        assert!(!md.contains("Cost of UPDATE events"), "{md}");
        assert!(md.contains("first loses events at 10.0 k/s"), "{md}");
        // No hooks on the netlink source: no hook line, no per-connection
        // target, the flow rates in the summary.
        assert!(!md.contains("Hooks measured"), "{md}");
        assert!(!md.contains("netlink (host): all BPF programs"), "{md}");
        assert!(
            md.contains("| this host, kernel 6.18 | — (netlink source) | — | — | 0.95 | — | — |"),
            "{md}"
        );
        assert!(
            md.contains(
                "| netlink (host): ≤ 2 % of a core per 10 k events/s | 5.0 % | **not met** |"
            ),
            "{md}"
        );
        assert!(
            md.contains(
                "| ≥ 2 M events/s decode+format on one core (slowest format) | 3.00 M/s | met |"
            ),
            "{md}"
        );
    }

    #[test]
    fn update_cost_is_reported_for_the_ebpf_source() {
        let md = render_rows(
            "vm",
            Part::Main,
            "BENCH\tenv\tkernel=6.1\tsource=ebpf\tseconds=1\n\
                 BENCH\trate\tproto=tcp\tlistener=none\toffered=0\trate=25000\tcreated=75000\tshown=-\tlost=-\n\
                 BENCH\trate\tproto=tcp\tlistener=tracker\toffered=0\trate=24000\tcreated=72000\tshown=72000\tlost=0\n\
                 BENCH\trate\tproto=tcp\tlistener=tracker-all\toffered=0\trate=21000\tflows=63000\tcreated=63000\tshown=378000\tlost=0\n\
                 BENCH\tbpf-update\tprog=ct_event_kprobe\ttype=kprobe\trun_cnt=315000\trun_time_ns=315000000\n\
                 BENCH\trate\tproto=tcp\tlistener=ct\toffered=0\trate=20000\tcreated=60000\tshown=250000\tlost=3\n",
            Vec::new(),
        );
        assert!(
            md.contains("flow rate with `-e ALL` is 0.88 of NEW/DESTROY only, 1.05 of `conntrack -E` (all events), 0.84 of nothing listening; it showed 378000 events for 63000 flows"),
            "{md}"
        );
        assert!(
            md.contains("| ct_event_kprobe | kprobe | 315000 | 5.00 | 1000 |"),
            "{md}"
        );
        assert!(
            md.contains(
                "| TCP connect+close | `tracker events -e ALL > /dev/null` | 21.0 k/s | 0.84 |"
            ),
            "{md}"
        );
    }

    /// A main-kernel run with fexit hooks, as bench.sh prints it.
    const FEXIT_61: &str = "BENCH\tenv\tkernel=6.1.0-56-amd64\tsource=ebpf\tseconds=1\n\
        BENCH\thooks\tmode=fexit\tdetail=NEW (packet path): fexit on __nf_conntrack_confirm;DESTROY: fexit on nf_ct_delete;mark change (ctnetlink): fentry on nf_conntrack_eventmask_report\twhy=\n\
        BENCH\trate\tproto=udp\tlistener=none\trate=10000\tflows=30000\tcreated=30000\n\
        BENCH\trate\tproto=udp\tlistener=tracker\trate=9000\tflows=27000\tcreated=27000\tshown=27000\tlost=0\n\
        BENCH\trate\tproto=udp\tlistener=ct-new\trate=9500\tflows=28500\tcreated=28500\tshown=28500\tlost=0\n\
        BENCH\trate\tproto=tcp\tlistener=none\trate=2000\tflows=6000\tcreated=6000\n\
        BENCH\trate\tproto=tcp\tlistener=tracker\trate=1960\tflows=5880\tcreated=5880\tshown=5880\tlost=0\n\
        BENCH\tbpf\tprog=confirm_fexit\ttype=tracing\trun_cnt=1000\trun_time_ns=10000000\n\
        BENCH\tbpf\tprog=delete_fexit\ttype=tracing\trun_cnt=1000\trun_time_ns=4000000\n\
        BENCH\tbpf\tprog=eventmask_fentry\ttype=tracing\trun_cnt=1000\trun_time_ns=1000000\txlated_bytes=1160\n\
        BENCH\tcpu\tproto=udp\tlistener=tracker\trate=1000\tflows=1000\tcreated=1000\texpected=2000\tticks=10\thz=100\twall_ns=1000000000\trss_kib=20480\tshown=2000\tlost=0\n";

    /// The kprobe kernel's run: only the UDP rates and the CPU run.
    const KPROBE_510: &str = "BENCH\tenv\tkernel=5.10.0-35-amd64\tsource=ebpf\tseconds=1\n\
        BENCH\thooks\tmode=kprobe\tdetail=NEW (packet path): kprobe+kretprobe on __nf_conntrack_confirm;DESTROY: kprobe+kretprobe on nf_ct_delete.part.0\twhy=NEW (packet path): fexit: the kernel has no BTF for __nf_conntrack_confirm\n\
        BENCH\trate\tproto=udp\tlistener=none\trate=5000\tflows=15000\tcreated=15000\n\
        BENCH\trate\tproto=udp\tlistener=tracker\trate=2000\tflows=6000\tcreated=6000\tshown=6000\tlost=0\n\
        BENCH\tbpf\tprog=confirm_kprobe\ttype=kprobe\trun_cnt=1000\trun_time_ns=20000000\n\
        BENCH\tbpf\tprog=confirm_kretprobe\ttype=kprobe\trun_cnt=1000\trun_time_ns=40000000\n\
        BENCH\tbpf\tprog=delete_kprobe\ttype=kprobe\trun_cnt=1000\trun_time_ns=5000000\n\
        BENCH\tbpf\tprog=delete_kretprobe\ttype=kprobe\trun_cnt=1000\trun_time_ns=15000000\n\
        BENCH\tbpf\tprog=eventmask_kprobe\ttype=kprobe\trun_cnt=1000\trun_time_ns=1000000\n\
        BENCH\tcpu\tproto=udp\tlistener=tracker\trate=1000\tflows=1000\tcreated=1000\texpected=2000\tticks=20\thz=100\twall_ns=1000000000\trss_kib=20480\tshown=2000\tlost=0\n";

    /// The sum over every program per connection, against the flow time
    /// with nothing listening, with the hook mode and the verdicts.
    #[test]
    fn per_connection_cost_sums_every_program() {
        let md = render_rows("VM 6.1", Part::Main, FEXIT_61, vec![]);
        assert!(
            md.contains("Hooks measured: **fexit** (the tracker's start-up lines: NEW (packet path): fexit on __nf_conntrack_confirm; DESTROY: fexit on nf_ct_delete; mark change (ctnetlink): fentry on nf_conntrack_eventmask_report)."),
            "{md}"
        );
        // Nothing fell back to kprobes: no reason, no kprobe prose.
        assert!(!md.contains("Not fentry/fexit"), "{md}");
        assert!(!md.contains("kprobe+kretprobe pair"), "{md}");
        assert!(
            md.contains("Measured with **fexit** hooks: BPF trampolines"),
            "{md}"
        );
        assert!(
            md.contains(
                "| eventmask_fentry | tracing (fentry/fexit) | 145 | 1000 | 1.00 | 1000 | 1000 | 1.0 % |"
            ),
            "{md}"
        );
        // (10 + 4 + 1) ms over 1000 connections, against 1e9 / 10000 ns.
        assert!(
            md.contains("**All programs for one connection: 15000 ns**, 15.0 % of a new UDP flow's 100000 ns"),
            "{md}"
        );
        // The per-connection figure comes right after the flow rates.
        let udp = "| eBPF (VM 6.1.0-56-amd64, fexit): UDP flow rate with `tracker events` ≥ 0.8 of nothing listening and above every `conntrack -E` | 0.90 (best `conntrack -E`: 0.95) | **not met** |\n";
        let tcp = "| eBPF (VM 6.1.0-56-amd64, fexit): TCP flow rate with `tracker events` ≥ 0.95 of nothing listening | 0.98 | met |\n";
        let bpf = "| eBPF (VM 6.1.0-56-amd64, fexit): all BPF programs for one connection ≤ 15 % of a new UDP flow's time (goal 3 %) | 15.0 % (15000 ns); goal not reached | met |\n";
        assert!(md.contains(&format!("{udp}{tcp}{bpf}")), "{md}");
        assert!(
            md.contains(
                "| VM, kernel 6.1.0-56-amd64 (`--kernel`) | fexit | 15000 ns | 15.0 % | 0.90 | 0.95 | 0.98 |"
            ),
            "{md}"
        );
    }

    /// The kprobe kernel's run is a section of its own with only the rate and
    /// CPU parts, says why the hooks are kprobes, and is held to 40 %.
    #[test]
    fn kprobe_kernel_run_has_its_own_section_and_limit() {
        let md = render_runs(
            &[
                run("VM 6.1", Part::Main, FEXIT_61),
                run("VM 5.10", Part::Kprobe, KPROBE_510),
            ],
            vec![],
        );
        let kprobe = &md[md.find("## VM 5.10").expect("kprobe section")..];
        let kprobe = &kprobe[..kprobe.find("## 5. Userspace").unwrap()];
        assert!(
            kprobe.contains("Hooks measured: **kprobe** (the tracker's start-up lines: NEW (packet path): kprobe+kretprobe on __nf_conntrack_confirm; DESTROY: kprobe+kretprobe on nf_ct_delete.part.0). Not fentry/fexit, as the tracker said: NEW (packet path): fexit: the kernel has no BTF for __nf_conntrack_confirm."),
            "{kprobe}"
        );
        assert!(kprobe.contains("### 1. New-flow rate (UDP)"), "{kprobe}");
        assert!(kprobe.contains("### 2. CPU and memory"), "{kprobe}");
        assert!(!kprobe.contains("Loss curve"), "{kprobe}");
        assert!(!kprobe.contains("Per-mark counts"), "{kprobe}");
        assert!(
            kprobe.contains(
                "Measured with **kprobe** hooks: a kprobe+kretprobe pair is two programs above"
            ),
            "{kprobe}"
        );
        assert!(
            kprobe.contains(
                "| confirm_kretprobe | kprobe | — | 1000 | 1.00 | 40000 | 40000 | 20.0 % |"
            ),
            "{kprobe}"
        );
        // 81 ms over 1000 connections against 1e9 / 5000 ns.
        assert!(
            kprobe.contains("**All programs for one connection: 81000 ns**, 40.5 % of a new UDP flow's 200000 ns"),
            "{kprobe}"
        );
        assert!(
            md.contains("| eBPF (VM 5.10.0-35-amd64, kprobe): all BPF programs for one connection ≤ 40 % of a new UDP flow's time | 40.5 % (81000 ns) | **not met** |"),
            "{md}"
        );
        // Only the per-connection target applies to that kernel.
        assert_eq!(
            md.matches("| eBPF (VM 5.10.0-35-amd64, kprobe):").count(),
            1,
            "{md}"
        );
        // Both kernels side by side in the summary, before the sections.
        let summary = &md[md.find("## Summary").unwrap()..md.find("## VM 6.1").unwrap()];
        assert!(
            summary.contains("| VM, kernel 6.1.0-56-amd64 (`--kernel`) | fexit | 15000 ns | 15.0 % | 0.90 | 0.95 | 0.98 |"),
            "{summary}"
        );
        assert!(
            summary.contains("| VM, kernel 5.10.0-35-amd64 (`--kprobe-kernel`) | kprobe | 81000 ns | 40.5 % | 0.40 | — | — |"),
            "{summary}"
        );
    }

    /// testdata/runs.txt: `RUN<TAB>part<TAB>seconds<TAB>title` starts a run,
    /// `PROBLEM<TAB>text` sets its problem, `REPLAY<TAB>mode<TAB>rate` adds a
    /// replay result, the rest are bench.sh's `BENCH` lines.
    fn fixture_runs(text: &str) -> (Vec<Run>, Vec<(String, f64)>) {
        let mut runs: Vec<Run> = Vec::new();
        let mut replay = Vec::new();
        for line in text.lines() {
            let fields: Vec<&str> = line.split('\t').collect();
            match fields[..] {
                ["RUN", part, seconds, title] => runs.push(Run {
                    title: title.into(),
                    part: match part {
                        "Main" => Part::Main,
                        "Kprobe" => Part::Kprobe,
                        _ => Part::Host,
                    },
                    rows: Vec::new(),
                    seconds: seconds.parse().unwrap(),
                    problem: None,
                }),
                ["PROBLEM", text] => runs.last_mut().unwrap().problem = Some(text.into()),
                ["REPLAY", mode, rate] => replay.push((mode.into(), rate.parse().unwrap())),
                _ => runs.last_mut().unwrap().rows.extend(Row::parse(line)),
            }
        }
        (runs, replay)
    }

    /// Every section of the report from a fixed set of rows, byte for byte
    /// as the report was when the fixture was written (`BLESS=1` rewrites
    /// testdata/report.md after a deliberate change of the report).
    #[test]
    fn fixture_renders_as_recorded() {
        let (runs, replay) = fixture_runs(include_str!("testdata/runs.txt"));
        let md = render_runs(&runs, replay);
        let path = concat!(env!("CARGO_MANIFEST_DIR"), "/src/bench/testdata/report.md");
        if std::env::var_os("BLESS").is_some() {
            std::fs::write(path, &md).unwrap();
        }
        let recorded = std::fs::read_to_string(path).unwrap();
        assert!(md == recorded, "the report differs from {path}:\n{md}");
    }

    /// The one hook-mode sentence the fixture has no run for.
    #[test]
    fn other_hook_modes_are_named_as_reported() {
        assert_eq!(
            prose("bpf-other-mode", &[("mode", "raw_tp")]),
            "\nThe tracker reported hooks **raw_tp**; the types above are bpftool's.\n\n"
        );
    }

    /// An eBPF run without the `hooks` or `bpf` rows says so instead of
    /// leaving the per-connection target out.
    #[test]
    fn missing_hook_mode_and_bpf_rows_are_reported() {
        let md = render_rows(
            "VM 6.1",
            Part::Main,
            "BENCH\tenv\tkernel=6.1\tsource=ebpf\tseconds=1\n\
             BENCH\trate\tproto=udp\tlistener=none\trate=10000\tflows=30000\tcreated=30000\n",
            vec![],
        );
        assert!(md.contains("Hooks measured: not reported"), "{md}");
        assert!(
            md.contains("| eBPF (VM 6.1, hook mode not reported): all BPF programs for one connection ≤ 15 % of a new UDP flow's time (goal 3 %) | not measured (no BPF run time per connection) | **not met** |"),
            "{md}"
        );
        assert!(
            md.contains("| eBPF (VM 6.1, hook mode not reported): UDP flow rate with `tracker events` ≥ 0.8 of nothing listening and above every `conntrack -E` | not measured | **not met** |"),
            "{md}"
        );
    }
}
