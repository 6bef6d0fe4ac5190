//! What the tracker tells the user while it starts its source: every such
//! line is a `Notice`, printed by [`Notice::say`] as `tracker: ...`.

use std::fmt;

use super::ebpf::EbpfError;

#[derive(Debug)]
pub enum Notice {
    /// Kernel modules loaded with modprobe, as `privileges` words it.
    ModulesLoaded(String),
    /// A hook attached, or why it did not.
    Hook(String),
    /// A hook whose module was loaded after start-up attached.
    LateHook(String),
    /// What was done about the event-cache sysctl, or why it was not checked.
    EventCache(String),
    /// `--set-nf-conntrack-events` given without UPDATE events.
    SysctlWithoutUpdates,
    /// `--set-nf-conntrack-events` given to the netlink source.
    SysctlWithNetlink,
    /// The eBPF source's default event kinds.
    UpdatesOptIn,
    /// The start-up dump that seeds the per-mark counts failed.
    SeedFailed(String),
    /// The count maps could not be pinned for `tracker counts`.
    PinFailed(String),
    /// The eBPF source lacks these capabilities: ctnetlink is tried.
    EbpfLacks(Vec<&'static str>),
    /// The eBPF source cannot run here: ctnetlink is used.
    Fallback(EbpfError),
    /// An option only ctnetlink serves (e.g. `-o id`) chose the source.
    NetlinkOnly(&'static str),
    /// The source is running, described.
    Listening(String),
}

impl Notice {
    pub fn say(&self) {
        eprintln!("tracker: {self}");
    }
}

impl fmt::Display for Notice {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Notice::ModulesLoaded(note) | Notice::EventCache(note) => f.write_str(note),
            Notice::Hook(outcome) => write!(f, "hook {outcome}"),
            Notice::LateHook(outcome) => {
                write!(f, "hook {outcome} (its module was loaded after start-up)")
            }
            Notice::SysctlWithoutUpdates => f.write_str(
                "--set-nf-conntrack-events has no effect without UPDATE events (-e ALL or -e \
                 UPDATE)",
            ),
            // ctnetlink listeners get UPDATE events under the default 2 as well.
            Notice::SysctlWithNetlink => {
                f.write_str("--set-nf-conntrack-events has no effect with the netlink source")
            }
            Notice::UpdatesOptIn => f.write_str(
                "showing NEW and DESTROY; UPDATE events are opt-in with the eBPF source (-e ALL)",
            ),
            Notice::SeedFailed(e) => write!(
                f,
                "per-mark counts leave out entries that existed before start: the start-up dump \
                 failed: {e}"
            ),
            Notice::PinFailed(e) => write!(f, "`tracker counts` cannot read this instance: {e}"),
            Notice::EbpfLacks(missing) => write!(
                f,
                "the eBPF source needs {} which this process lacks: trying ctnetlink",
                missing.join(", ")
            ),
            Notice::Fallback(e) => write!(
                f,
                "{e}: using ctnetlink events instead; expect event loss under load"
            ),
            Notice::NetlinkOnly(option) => write!(
                f,
                "{option} needs the kernel's conntrack id, which only ctnetlink reports: using \
                 ctnetlink events; expect event loss under load"
            ),
            Notice::Listening(description) => write!(f, "listening ({description})"),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The shell scenarios grep these lines: their words must not drift.
    #[test]
    fn lines_read_as_the_scenarios_expect() {
        let line = |n: Notice| format!("tracker: {n}");
        assert_eq!(
            line(Notice::Listening("source=netlink, buffer=4 MiB".into())),
            "tracker: listening (source=netlink, buffer=4 MiB)"
        );
        assert_eq!(
            line(Notice::LateHook("mark: kprobe on x".into())),
            "tracker: hook mark: kprobe on x (its module was loaded after start-up)"
        );
        assert_eq!(
            line(Notice::Fallback(EbpfError::Attach("no kprobes".into()))),
            "tracker: the eBPF hooks cannot attach: no kprobes: using ctnetlink events instead; \
             expect event loss under load"
        );
        assert_eq!(
            line(Notice::EbpfLacks(vec!["CAP_BPF", "CAP_PERFMON"])),
            "tracker: the eBPF source needs CAP_BPF, CAP_PERFMON which this process lacks: \
             trying ctnetlink"
        );
    }
}
