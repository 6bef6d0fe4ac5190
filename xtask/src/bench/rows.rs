//! bench.sh's `BENCH<TAB>section<TAB>key=value...` lines, parsed once into a
//! typed row per section; the report reads fields, never keys.

use std::collections::BTreeMap;
use std::fmt;

/// A value as bench.sh printed it: the report shows some as they are
/// (`-` for "not measured", counts) and computes with others.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct Field(String);

impl Field {
    pub fn as_str(&self) -> &str {
        &self.0
    }

    pub fn num(&self) -> Option<f64> {
        self.0.parse().ok()
    }
}

impl fmt::Display for Field {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

/// `env`: where the section ran.
#[derive(Clone, Debug, Default)]
pub struct Env {
    pub kernel: Field,
    pub machine: Field,
    pub conntrack: Field,
    pub seconds: Field,
    /// `ebpf` or `netlink`.
    pub source: Field,
}

/// `hooks`: how the tracker's hooks attached, from the start-up lines of
/// its first plain `tracker events` (the variant whose programs the CPU
/// section times; `-e ALL` adds the UPDATE kprobe).
#[derive(Clone, Debug, Default)]
pub struct Hooks {
    /// `hooks=` of `tracker: listening`: `fexit`, `kprobe`, `fexit+kprobe`...
    pub mode: String,
    /// `ROLE: KIND on FUNCTION` per attached hook, `;`-separated.
    pub detail: String,
    /// For the first hook that attached as a kprobe: why fentry/fexit did
    /// not, in the tracker's words (empty when none fell back).
    pub why: String,
}

impl Hooks {
    pub fn has(&self, kind: &str) -> bool {
        self.mode.split('+').any(|m| m == kind)
    }
}

/// One generator run with one listener: `rate` (as fast as it goes) and
/// `loss` (paced at `offered`, 0 = as fast as it goes) rows, and the
/// events part of a `cpu` row.
#[derive(Clone, Debug, Default)]
pub struct Flows {
    pub proto: String,
    /// `none`, `tracker`, `tracker-json`, `tracker-all`, `ct`, `ct-new`...
    pub listener: String,
    pub offered: Field,
    /// Flows (or, in the CPU run, events) per second.
    pub rate: Field,
    pub flows: Field,
    /// Entries made (`conntrack -C`).
    pub created: Field,
    /// Events the listener should show, where not one per entry made (the
    /// CPU run's flush adds a DESTROY per entry).
    pub expected: Field,
    /// Events the listener printed (its exit line).
    pub shown: Field,
    /// What the listener itself said it lost (`-`: nothing to say).
    pub lost: Field,
}

/// `cpu`: a listener's CPU time and memory over a paced run.
#[derive(Clone, Debug, Default)]
pub struct Cpu {
    pub flows: Flows,
    pub ticks: Field,
    pub hz: Field,
    pub wall_ns: Field,
    pub rss_kib: Field,
    /// RssAnon: the private part of `rss_kib` (absent in older runs).
    pub rss_anon_kib: Field,
}

/// `counts`: one way of counting the entries of a mark.
#[derive(Clone, Debug, Default)]
pub struct Counts {
    pub entries: Field,
    /// The command line timed.
    pub tool: String,
    pub us: Field,
    pub answer: String,
}

/// `bpf` / `bpf-update`: one BPF program's run count and time.
#[derive(Clone, Debug, Default)]
pub struct Bpf {
    pub prog: String,
    /// bpftool's program type.
    pub kind: String,
    pub run_cnt: Field,
    pub run_time_ns: Field,
    /// Size of the program after verification (8 bytes per instruction).
    pub xlated_bytes: Field,
}

/// `scrape`: the CPU a scraped `tracker serve` run cost — the in-guest
/// scraper's over the `scrapes` it made during the run, and serve's own over
/// `idle_scrapes` back-to-back scrapes after the flows stopped (apart from
/// the events it follows).
#[derive(Clone, Debug, Default)]
pub struct Scrape {
    pub proto: String,
    pub scrapes: Field,
    pub scraper_ticks: Field,
    pub idle_scrapes: Field,
    pub idle_serve_ticks: Field,
    pub hz: Field,
}

/// `scrape-paced`: a run of `tracker serve`, scraped or not, at a paced
/// rate, with what the CPUs spent while the flows were made: `serve_ticks`
/// of serve itself, `busy_ticks` of the whole machine (every CPU, all but
/// idle and iowait) over `wall_ns`.
#[derive(Clone, Debug)]
pub struct Paced {
    pub flows: Flows,
    pub serve_ticks: Field,
    pub wall_ns: Field,
    pub hz: Field,
}

/// One `BENCH` line.
#[derive(Clone, Debug)]
pub enum Row {
    Env(Env),
    Hooks(Hooks),
    Rate(Flows),
    /// A further run of `tracker serve`, scraped or not, taking turns with
    /// the other after the rate section.
    ScrapePair(Flows),
    /// A further run of nothing listening or of `tracker events`, taking
    /// turns with the other after the rate section.
    RatePair(Flows),
    /// `tracker serve` at a paced rate, scraped or not, taking turns.
    ScrapePaced(Paced),
    Loss(Flows),
    Cpu(Cpu),
    Counts(Counts),
    /// The CPU run's `tracker events` and the flush after it.
    Bpf(Bpf),
    /// The `-e ALL` rate run.
    BpfUpdate(Bpf),
    Scrape(Scrape),
    /// bench.sh stopped early, saying why.
    Error(String),
}

impl Row {
    /// A `BENCH` line of a known section; anything else is `None`.
    pub fn parse(line: &str) -> Option<Row> {
        let mut parts = line.trim_end().strip_prefix("BENCH\t")?.split('\t');
        let section = parts.next()?;
        // Like the shell: a key given twice keeps its last value.
        let fields: BTreeMap<&str, &str> = parts.filter_map(|kv| kv.split_once('=')).collect();
        let text = |key: &str| fields.get(key).copied().unwrap_or_default().to_string();
        let flows = || Flows {
            proto: text("proto"),
            listener: text("listener"),
            offered: Field(text("offered")),
            rate: Field(text("rate")),
            flows: Field(text("flows")),
            created: Field(text("created")),
            expected: Field(text("expected")),
            shown: Field(text("shown")),
            lost: Field(text("lost")),
        };
        Some(match section {
            "env" => Row::Env(Env {
                kernel: Field(text("kernel")),
                machine: Field(text("machine")),
                conntrack: Field(text("conntrack")),
                seconds: Field(text("seconds")),
                source: Field(text("source")),
            }),
            "hooks" => Row::Hooks(Hooks {
                mode: text("mode"),
                detail: text("detail"),
                why: text("why"),
            }),
            "rate" => Row::Rate(flows()),
            "scrape-pair" => Row::ScrapePair(flows()),
            "rate-pair" => Row::RatePair(flows()),
            "scrape-paced" => Row::ScrapePaced(Paced {
                flows: flows(),
                serve_ticks: Field(text("serve_ticks")),
                wall_ns: Field(text("wall_ns")),
                hz: Field(text("hz")),
            }),
            "loss" => Row::Loss(flows()),
            "cpu" => Row::Cpu(Cpu {
                flows: flows(),
                ticks: Field(text("ticks")),
                hz: Field(text("hz")),
                wall_ns: Field(text("wall_ns")),
                rss_kib: Field(text("rss_kib")),
                rss_anon_kib: Field(text("rss_anon_kib")),
            }),
            "counts" => Row::Counts(Counts {
                entries: Field(text("entries")),
                tool: text("tool"),
                us: Field(text("us")),
                answer: text("answer"),
            }),
            "bpf" | "bpf-update" => {
                let bpf = Bpf {
                    prog: text("prog"),
                    kind: text("type"),
                    run_cnt: Field(text("run_cnt")),
                    run_time_ns: Field(text("run_time_ns")),
                    xlated_bytes: Field(text("xlated_bytes")),
                };
                if section == "bpf" {
                    Row::Bpf(bpf)
                } else {
                    Row::BpfUpdate(bpf)
                }
            }
            "scrape" => Row::Scrape(Scrape {
                proto: text("proto"),
                scrapes: Field(text("scrapes")),
                scraper_ticks: Field(text("scraper_ticks")),
                idle_scrapes: Field(text("idle_scrapes")),
                idle_serve_ticks: Field(text("idle_serve_ticks")),
                hz: Field(text("hz")),
            }),
            "error" => Row::Error(text("msg")),
            _ => return None,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_line_becomes_its_section_row() {
        let Some(Row::Rate(r)) =
            Row::parse("BENCH\trate\tproto=udp\tlistener=ct\trate=2.5e3\tshown=-\tlost=3\n")
        else {
            panic!("not a rate row");
        };
        assert_eq!(r.listener, "ct");
        assert_eq!(r.rate.num(), Some(2500.0));
        assert_eq!(r.shown.as_str(), "-");
        assert_eq!(r.shown.num(), None);
        assert_eq!(r.created.as_str(), "", "absent fields are empty");
        assert!(Row::parse("BENCH\tsomething-new\ta=1").is_none());
        assert!(Row::parse("rate\tproto=udp").is_none());
    }
}
