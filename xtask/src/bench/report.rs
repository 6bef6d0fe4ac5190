//! BENCHMARKS.md from the parsed `BENCH` rows: ratios first, raw figures
//! beside them, and the project's targets with what was measured.

use std::fmt::Write as _;
use std::time::Duration;

use super::{Part, Replay, Row, Run};

pub struct Context<'a> {
    pub runs: &'a [Run],
    pub replay: &'a Replay,
    pub machine: String,
    pub command: String,
    pub total: Duration,
    /// Spent waiting for another xtask's VM (not in `total`).
    pub waited: Duration,
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
fn expected_known(r: &Row, source: &str) -> bool {
    let v = r.get("listener");
    r.get("proto") == "udp"
        || v.starts_with("ct-new")
        || (source == "ebpf" && v.starts_with("tracker"))
}

fn missing(r: &Row, source: &str) -> Option<i64> {
    // `expected`: the CPU run's flush adds a DESTROY per entry.
    let created = r.num("expected").or(r.num("created"))? as i64;
    let shown = r.num("shown")? as i64;
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

fn source_of(run: &Run) -> String {
    run.rows
        .iter()
        .find(|r| r.section == "env")
        .map_or("ebpf".into(), |r| r.get("source").to_string())
}

/// What the tool itself says it lost.
fn lost_cell(r: &Row) -> String {
    let lost = r.get("lost");
    if lost == "-" || lost.is_empty() {
        return "—".into();
    }
    if r.get("listener").starts_with("ct") {
        format!("{lost} ENOBUFS")
    } else {
        lost.into()
    }
}

fn loss_cell(r: &Row, source: &str) -> String {
    match missing(r, source) {
        Some(m) => {
            let created = r
                .num("expected")
                .or(r.num("created"))
                .unwrap_or(0.0)
                .max(1.0);
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
struct FlowRate {
    tracker: f64,
    best_ct: Option<f64>,
}

fn flow_rate(ratios: &[Ratio], proto: &str) -> Option<FlowRate> {
    let of_proto = || ratios.iter().filter(move |r| r.proto == proto);
    Some(FlowRate {
        tracker: of_proto().find(|r| r.listener == "tracker")?.ratio,
        best_ct: of_proto()
            .filter(|r| r.listener.starts_with("ct"))
            .map(|r| r.ratio)
            .reduce(f64::max),
    })
}

fn rate_table(out: &mut String, run: &Run, source: &str) -> Vec<Ratio> {
    let mut ratios = Vec::new();
    let rows: Vec<&Row> = run.rows.iter().filter(|r| r.section == "rate").collect();
    if rows.is_empty() {
        return ratios;
    }
    let _ = writeln!(
        out,
        "| flows | listener | flows/s | vs nothing listening | flows made | events shown | events missing | loss reported by the tool |\n|---|---|---:|---:|---:|---:|---:|---:|"
    );
    for proto in ["udp", "tcp"] {
        let base = rows
            .iter()
            .find(|r| r.get("proto") == proto && r.get("listener") == "none")
            .and_then(|r| r.num("rate"));
        for r in rows.iter().filter(|r| r.get("proto") == proto) {
            let v = r.get("listener");
            let ratio = match (base, r.num("rate")) {
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
                rate(r.num("rate").unwrap_or(0.0)),
                ratio,
                r.get("created"),
                r.get("shown"),
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
    let tcp = |v: &str| {
        run.rows
            .iter()
            .find(|r| r.section == "rate" && r.get("proto") == "tcp" && r.get("listener") == v)
    };
    let all = tcp("tracker-all")?;
    let rate_of = |r: Option<&Row>| r.and_then(|r| r.num("rate")).filter(|x| *x > 0.0);
    let all_rate = rate_of(Some(all))?;
    let vs_nd = rate_of(tcp("tracker")).map(|x| all_rate / x);
    let vs_ct = rate_of(tcp("ct")).map(|x| all_rate / x);
    let vs_none = rate_of(tcp("none")).map(|x| all_rate / x);
    let f = |x: Option<f64>| x.map_or("—".into(), |x| format!("{x:.2}"));
    let _ = writeln!(
        out,
        "**Cost of UPDATE events (`-e ALL`)**, TCP connect+close from the table above: flow rate with `-e ALL` is {} of NEW/DESTROY only, {} of `conntrack -E` (all events), {} of nothing listening; it showed {} events for {} flows.\n",
        f(vs_nd),
        f(vs_ct),
        f(vs_none),
        all.get("shown"),
        all.get("created"),
    );
    let flows = all.num("flows").or(all.num("created")).unwrap_or(f64::NAN);
    let bpf: Vec<&Row> = run
        .rows
        .iter()
        .filter(|r| r.section == "bpf-update")
        .collect();
    if !bpf.is_empty() {
        let _ = writeln!(
            out,
            "BPF program runs during that `-e ALL` run (`kernel.bpf_stats_enabled=1`):\n\n| program | type | runs | runs per flow | ns per run |\n|---|---|---:|---:|---:|"
        );
        for r in bpf {
            let cnt = r.num("run_cnt").unwrap_or(f64::NAN);
            let per = r.num("run_time_ns").unwrap_or(f64::NAN) / cnt;
            let _ = writeln!(
                out,
                "| {} | {} | {} | {:.2} | {per:.0} |",
                r.get("prog"),
                prog_type(r.get("type")),
                r.get("run_cnt"),
                cnt / flows
            );
        }
        out.push('\n');
    }
    Some(())
}

/// Returns per tool the lowest offered rate with a loss.
fn loss_table(out: &mut String, run: &Run, source: &str) -> Vec<(String, Option<f64>, f64)> {
    let rows: Vec<&Row> = run.rows.iter().filter(|r| r.section == "loss").collect();
    let mut first = Vec::new();
    if rows.is_empty() {
        return first;
    }
    let tools = ["tracker", "ct-new", "ct-new-b8M"];
    let _ = write!(out, "| offered | ");
    for t in tools {
        let _ = write!(out, "{} | ", listener_name(t, source));
    }
    let _ = writeln!(out, "\n|---:|{}", "---:|".repeat(tools.len()));
    let mut offered: Vec<u64> = rows
        .iter()
        .filter_map(|r| r.get("offered").parse().ok())
        .collect();
    offered.sort_unstable_by(|a, b| (*a == 0).cmp(&(*b == 0)).then(a.cmp(b)));
    offered.dedup();
    for o in &offered {
        let label = if *o == 0 {
            "maximum".to_string()
        } else {
            rate(*o as f64)
        };
        let _ = write!(out, "| {label} | ");
        for t in tools {
            let cell = rows
                .iter()
                .find(|r| r.get("listener") == t && r.get("offered") == o.to_string())
                .map_or("—".into(), |r| {
                    format!(
                        "{}: {} missing, {}",
                        rate(r.num("rate").unwrap_or(0.0)),
                        missing(r, source).map_or("?".into(), |m| m.to_string()),
                        lost_cell(r)
                    )
                });
            let _ = write!(out, "{cell} | ");
        }
        out.push('\n');
    }
    for t in tools {
        let mut lossy: Vec<&&Row> = rows
            .iter()
            .filter(|r| r.get("listener") == t)
            .filter(|r| {
                missing(r, source).unwrap_or(0) > 0 || r.num("lost").is_some_and(|l| l > 0.0)
            })
            .collect();
        lossy.sort_by(|a, b| {
            a.num("rate")
                .unwrap_or(0.0)
                .total_cmp(&b.num("rate").unwrap_or(0.0))
        });
        let max_rate = rows
            .iter()
            .filter(|r| r.get("listener") == t)
            .filter_map(|r| r.num("rate"))
            .fold(0.0, f64::max);
        first.push((
            t.to_string(),
            lossy.first().and_then(|r| r.num("rate")),
            max_rate,
        ));
    }
    out.push('\n');
    for (t, at, max) in &first {
        let _ = writeln!(
            out,
            "- {}: {}",
            listener_name(t, source),
            match at {
                Some(r) => format!("first loses events at {}", rate(*r)),
                None => format!("no loss up to {} (the maximum reached)", rate(*max)),
            }
        );
    }
    out.push('\n');
    first
}

fn counts_table(out: &mut String, run: &Run) -> Vec<(f64, f64)> {
    let rows: Vec<&Row> = run.rows.iter().filter(|r| r.section == "counts").collect();
    let mut speedups = Vec::new();
    if rows.is_empty() {
        return speedups;
    }
    let _ = writeln!(
        out,
        "| live entries | command | time | `tracker counts` is faster by | answer |\n|---:|---|---:|---:|---|"
    );
    let mut sizes: Vec<&str> = rows.iter().map(|r| r.get("entries")).collect();
    sizes.dedup();
    for n in sizes {
        let ours = rows
            .iter()
            .find(|r| r.get("entries") == n && r.get("tool").starts_with("tracker"))
            .and_then(|r| r.num("us"));
        for r in rows.iter().filter(|r| r.get("entries") == n) {
            let us = r.num("us").unwrap_or(f64::NAN);
            let factor = ours.map_or(f64::NAN, |o| us / o.max(1.0));
            if r.get("tool") == "conntrack -L | grep -c mark=1" {
                speedups.push((r.num("entries").unwrap_or(0.0), factor));
            }
            let mut answer = r.get("answer").replace('|', "\\|");
            answer.truncate(120);
            let _ = writeln!(
                out,
                "| {n} | `{}` | {:.1} ms | {} | `{answer}` |",
                r.get("tool").replace('|', "\\|"),
                us / 1000.0,
                if r.get("tool").starts_with("tracker") {
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
    let rows: Vec<&Row> = run.rows.iter().filter(|r| r.section == "cpu").collect();
    let mut ours = None;
    if rows.is_empty() {
        return ours;
    }
    let _ = writeln!(
        out,
        "| listener | events/s | CPU (% of a core) | per 10 k events/s | RSS | events missing |\n|---|---:|---:|---:|---:|---:|"
    );
    for r in &rows {
        let secs = r.num("wall_ns").unwrap_or(f64::NAN) / 1e9;
        let cpu = r.num("ticks").unwrap_or(f64::NAN) / r.num("hz").unwrap_or(100.0) / secs;
        let ev = r.num("rate").unwrap_or(f64::NAN);
        let per10k = cpu * 10_000.0 / ev;
        if r.get("listener") == "tracker" {
            ours = Some(per10k);
        }
        let _ = writeln!(
            out,
            "| {} | {} | {} | {} | {:.1} MiB | {} |",
            listener_name(r.get("listener"), source),
            rate(ev),
            pct(cpu),
            pct(per10k),
            r.num("rss_kib").unwrap_or(f64::NAN) / 1024.0,
            loss_cell(r, source),
        );
    }
    out.push('\n');
    ours
}

/// How the tracker's hooks attached in a run: bench.sh's `hooks` row, from
/// the start-up lines of its first plain `tracker events` (the variant whose
/// programs the CPU section times; `-e ALL` adds the UPDATE kprobe).
struct Hooks<'a> {
    /// `hooks=` of `tracker: listening`: `fexit`, `kprobe`, `fexit+kprobe`...
    mode: &'a str,
    /// `ROLE: KIND on FUNCTION` per attached hook, `;`-separated.
    detail: &'a str,
    /// For the first hook that attached as a kprobe: why fentry/fexit did
    /// not, in the tracker's words (empty when none fell back).
    why: &'a str,
}

impl<'a> Hooks<'a> {
    fn of(run: &'a Run) -> Option<Self> {
        let h = run.rows.iter().find(|r| r.section == "hooks")?;
        Some(Hooks {
            mode: h.get("mode"),
            detail: h.get("detail"),
            why: h.get("why"),
        })
    }

    fn has(&self, kind: &str) -> bool {
        self.mode.split('+').any(|m| m == kind)
    }
}

/// Under a run's heading: the hook mode it measured, in the tracker's words.
fn hooks_line(out: &mut String, run: &Run, hooks: Option<&Hooks>) {
    let Some(h) = hooks else {
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

/// ns of one new UDP flow with nothing listening: the `rate` section's UDP
/// run of the same environment.
fn udp_flow_ns(run: &Run) -> Option<f64> {
    run.rows
        .iter()
        .find(|r| r.section == "rate" && r.get("proto") == "udp" && r.get("listener") == "none")
        .and_then(|r| r.num("rate"))
        .filter(|b| *b > 0.0)
        .map(|b| 1e9 / b)
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
fn bpf_table(out: &mut String, run: &Run, hooks: Option<&Hooks>) -> Option<PerConnection> {
    let bpf: Vec<&Row> = run.rows.iter().filter(|r| r.section == "bpf").collect();
    if bpf.is_empty() {
        return None;
    }
    let flow_ns = udp_flow_ns(run);
    // The entries the run made (`conntrack -C` before the flush), all
    // flushed while the stats ran: each connection passed NEW and DESTROY
    // once.
    let conns = run
        .rows
        .iter()
        .find(|r| r.section == "cpu" && r.get("listener") == "tracker")
        .and_then(|r| r.num("created"))
        .filter(|c| *c > 0.0);
    let _ = writeln!(
        out,
        "BPF run time (`kernel.bpf_stats_enabled=1`, `bpftool prog show`) during the `tracker events` run above and the `conntrack -F` after it (which times the DESTROY hooks):\n\n| program | type | runs | runs per connection | ns per run | ns per connection | vs the time of one new UDP flow with nothing listening |\n|---|---|---:|---:|---:|---:|---:|"
    );
    let mut total_ns = 0.0;
    for r in bpf {
        let runs = r.num("run_cnt").unwrap_or(f64::NAN);
        let ns = r.num("run_time_ns").unwrap_or(f64::NAN);
        let per_conn = conns.map(|c| ns / c);
        total_ns += ns;
        let _ = writeln!(
            out,
            "| {} | {} | {} | {} | {:.0} | {} | {} |",
            r.get("prog"),
            prog_type(r.get("type")),
            r.get("run_cnt"),
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
    let _ = writeln!(
        out,
        "\n{}\n",
        match hooks {
            Some(h) if h.has("kprobe") => format!(
                "Measured with **{}** hooks: a kprobe+kretprobe pair is two programs above (entry and return), both in the sum.",
                h.mode
            ),
            Some(h) if h.has("fexit") || h.has("fentry") => format!(
                "Measured with **{}** hooks: BPF trampolines, the `tracing` programs above.",
                h.mode
            ),
            Some(h) => format!(
                "The tracker reported hooks **{}**; the types above are bpftool's.",
                h.mode
            ),
            None =>
                "The hook mode was not reported for this run; the types above are bpftool's.".into(),
        }
    );
    let Some(c) = conns else {
        let _ = writeln!(
            out,
            "No connection count from the CPU run: no per-connection figure.\n"
        );
        return None;
    };
    let cost = PerConnection {
        ns: total_ns / c,
        flow_ns,
    };
    let _ = writeln!(
        out,
        "**All programs for one connection: {:.0} ns**{} — the sum of *ns per connection* over every program above, over {c:.0} connections (entries made, then flushed); *runs per connection* is how often each program ran for one.\n",
        cost.ns,
        match (cost.share(), flow_ns) {
            (Some(s), Some(f)) => format!(
                ", {} of a new UDP flow's {f:.0} ns with nothing listening",
                pct(s)
            ),
            _ => String::new(),
        }
    );
    Some(cost)
}

fn verdict(ok: bool) -> &'static str {
    if ok { "met" } else { "**not met**" }
}

/// One line of the Targets table: what, what was measured, whether met.
type Target = (String, String, bool);

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
        return (what, "not measured".into(), false);
    };
    let measured = match (beat_ct, fr.best_ct) {
        (true, Some(ct)) => format!("{:.2} (best `conntrack -E`: {ct:.2})", fr.tracker),
        (true, None) => format!("{:.2} (no `conntrack -E` run)", fr.tracker),
        (false, _) => format!("{:.2}", fr.tracker),
    };
    let above = !beat_ct || fr.best_ct.is_none_or(|ct| fr.tracker > ct);
    (what, measured, fr.tracker >= want && above)
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
        return (
            what,
            "not measured (no BPF run time per connection)".into(),
            false,
        );
    };
    let Some(share) = cost.share() else {
        let measured = format!(
            "{:.0} ns; no nothing-listening UDP rate to compare",
            cost.ns
        );
        return (what, measured, false);
    };
    let mut measured = format!("{} ({:.0} ns)", pct(share), cost.ns);
    if let Some(g) = goal {
        measured.push_str(if share <= g {
            "; goal reached"
        } else {
            "; goal not reached"
        });
    }
    (what, measured, share <= limit)
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

fn kernel_of(run: &Run) -> &str {
    run.rows
        .iter()
        .find(|r| r.section == "env")
        .map_or("?", |r| r.get("kernel"))
}

/// One run's section; adds its targets and returns its summary line.
fn run_section(out: &mut String, run: &Run, targets: &mut Vec<Target>) -> Summary {
    let source = source_of(run);
    let env = run.rows.iter().find(|r| r.section == "env");
    let _ = writeln!(out, "## {}\n", run.title);
    if let Some(e) = env {
        let _ = writeln!(
            out,
            "kernel {}, {}; {}; {} s per generator run.\n",
            e.get("kernel"),
            e.get("machine"),
            e.get("conntrack"),
            e.get("seconds")
        );
    }
    let hooks = Hooks::of(run);
    hooks_line(out, run, hooks.as_ref());
    if let Some(p) = &run.problem {
        let _ = writeln!(out, "**Incomplete: {p}**\n");
    }
    if let Some(err) = run.rows.iter().find(|r| r.section == "error") {
        let _ = writeln!(out, "**bench.sh stopped: {}**\n", err.get("msg"));
    }
    let seconds = env.map_or("?", |e| e.get("seconds"));
    let kprobe_run = run.part == Part::Kprobe;

    if kprobe_run {
        let _ = writeln!(
            out,
            "Only what the per-connection cost needs: the UDP flow rate with nothing listening (the flow time) and with `tracker events`, then the tracker's CPU run with BPF stats.\n\n### 1. New-flow rate (UDP)\n\nAs on the main kernel: flowgen in a network namespace of its own, {seconds} s per run, table flushed between runs.\n"
        );
    } else {
        let _ = writeln!(
            out,
            "### 1. New-flow rate with each listener\n\nflowgen makes new conntrack entries in a network namespace of its own (loopback; an nft `ct state` rule makes conntrack track there; `nf_conntrack_events=1`), {seconds} s per run, table flushed between runs. *events missing* = flows made (`conntrack -C`) − events the listener printed (its exit line); for conntrack that is the only loss count, its ENOBUFS warnings each lose an unknown number.\n"
        );
    }
    let ratios = rate_table(out, run, &source);
    if source == "ebpf" {
        // With netlink UPDATE is the default, so there is nothing to compare.
        update_cost(out, run);
    }
    let first = if kprobe_run {
        Vec::new()
    } else {
        let _ = writeln!(out, "### 2. Loss curve (UDP, paced)\n");
        loss_table(out, run, &source)
    };
    let counts = if kprobe_run {
        Vec::new()
    } else if source == "ebpf" {
        let _ = writeln!(
            out,
            "### 3. Per-mark counts of a large table\n\nUDP flows from the namespace with a 600 s UDP timeout and nft rules `ct mark set 1` / `ct mark set 2` by destination port range; a `tracker events` runs (its pinned maps are what `tracker counts` reads). Fast commands best of three, `conntrack -L` once.\n"
        );
        counts_table(out, run)
    } else {
        let _ = writeln!(
            out,
            "### 3. Per-mark counts\n\nNot measured on this host: `tracker counts` needs the eBPF hooks (see the VM section).\n"
        );
        Vec::new()
    };
    let _ = writeln!(
        out,
        "### {} CPU and memory of the listener (paced UDP)\n\nFrom /proc/PID/stat (utime+stime) over the generator's run and VmRSS at its end.\n",
        if kprobe_run { "2." } else { "4." }
    );
    let per10k = cpu_table(out, run, &source);
    let cost = bpf_table(out, run, hooks.as_ref());

    // Targets, per environment, the per-connection cost next to the flow
    // rates.
    let tag = match run.part {
        Part::Host => "netlink (host)".to_string(),
        Part::Main | Part::Kprobe => format!(
            "eBPF (VM {}, {})",
            kernel_of(run),
            hooks.as_ref().map_or("hook mode not reported", |h| h.mode)
        ),
    };
    let udp = flow_rate(&ratios, "udp");
    let tcp = flow_rate(&ratios, "tcp");
    if !kprobe_run {
        targets.push(flow_target(&tag, "UDP", udp.as_ref(), 0.8, true));
        targets.push(flow_target(&tag, "TCP", tcp.as_ref(), 0.95, false));
    }
    if run.part != Part::Host {
        targets.push(per_connection_target(&tag, run.part, cost));
    }
    let ct_survives = first
        .iter()
        .filter(|(t, _, _)| t.starts_with("ct"))
        .map(|(_, at, max)| at.unwrap_or(*max))
        .fold(0.0, f64::max);
    if let Some((_, at, max)) = first.iter().find(|(t, _, _)| t == "tracker") {
        targets.push((
            format!("{tag}: zero loss at every rate conntrack -E survives and at the maximum (default ring)"),
            match at {
                Some(a) => format!("first loss at {} (conntrack -E lossless below {})", rate(*a), rate(ct_survives)),
                None => format!("no loss up to {}", rate(*max)),
            },
            at.is_none(),
        ));
    }
    for (n, f) in &counts {
        targets.push((
            format!("{tag}: `tracker counts` ≥ 1000× faster than `conntrack -L | grep -c` at {n:.0} entries"),
            format!("{f:.0}×"),
            *f >= 1000.0,
        ));
    }
    if let (Some(c), false) = (per10k, kprobe_run) {
        targets.push((
            format!("{tag}: ≤ 2 % of a core per 10 k events/s"),
            pct(c),
            c <= 0.02,
        ));
    }

    Summary {
        environment: match run.part {
            Part::Main => format!("VM, kernel {} (`--kernel`)", kernel_of(run)),
            Part::Kprobe => format!("VM, kernel {} (`--kprobe-kernel`)", kernel_of(run)),
            Part::Host => format!("this host, kernel {}", kernel_of(run)),
        },
        hooks: match (&hooks, run.part) {
            (Some(h), _) => h.mode.to_string(),
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
    let _ = writeln!(
        out,
        "## Summary\n\nPer environment: how the tracker's NEW and DESTROY hooks attached, all its BPF programs for one connection (the sum over every program of its ns per connection, against the time of one new UDP flow with nothing listening), and the flow rate with `tracker events` against nothing listening. From the sections below; verdicts under Targets.\n\n| environment | hooks | all programs for one connection | vs a new UDP flow | UDP flow rate | best `conntrack -E`, UDP | TCP flow rate |\n|---|---|---:|---:|---:|---:|---:|"
    );
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
    let mut out = String::new();
    let _ = writeln!(
        out,
        "# Benchmarks\n\nWritten by `cargo xtask bench` (xtask/src/bench.rs, tests/bench/bench.sh, xtask/src/bin/flowgen.rs, tracker-userspace/benches/replay.rs). Every figure below comes from one run; rerun to refresh. Absolute rates under QEMU TCG are far below real hardware — compare the ratios, which are measured side by side in the same guest.\n\n- machine: {}\n- command: `{}`\n- run time: {:.1} min (not counting {:.1} min spent waiting for another xtask's VM)\n",
        cx.machine,
        cx.command,
        cx.total.as_secs_f64() / 60.0,
        cx.waited.as_secs_f64() / 60.0
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

    let _ = writeln!(
        out,
        "## 5. Userspace alone (this host, one core)\n\nSynthesised ring records (70 % TCP, 25 % UDP, 5 % ICMP; 10 % IPv6; NEW and DESTROY) through `decode::record` → `decode::event` → `Filter::matches` → `output::Writer` into a 64 KiB buffer on `io::sink()`.\n"
    );
    if let Some(p) = &cx.replay.problem {
        let _ = writeln!(out, "**Incomplete: {p}**\n");
    }
    let _ = writeln!(out, "| mode | events/s |\n|---|---:|");
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
        targets.push((
            "≥ 2 M events/s decode+format on one core (slowest format)".into(),
            rate(slowest_format),
            slowest_format >= 2e6,
        ));
    }

    let _ = writeln!(out, "## Targets\n\n| target | measured | |\n|---|---|---|");
    for (t, m, ok) in &targets {
        let _ = writeln!(out, "| {t} | {m} | {} |", verdict(*ok));
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
        BENCH\tbpf\tprog=eventmask_fentry\ttype=tracing\trun_cnt=1000\trun_time_ns=1000000\n\
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
                "| eventmask_fentry | tracing (fentry/fexit) | 1000 | 1.00 | 1000 | 1000 | 1.0 % |"
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
            kprobe
                .contains("| confirm_kretprobe | kprobe | 1000 | 1.00 | 40000 | 40000 | 20.0 % |"),
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
