//! Starting the eBPF source: everything between "the process may load
//! programs" and "events are flowing", and its undoing when the source drops.

use tracker_common::{KernelFilter, filter_kind, stat};

use super::event_cache::{self, Prepared};
use super::hooks::HookMode;
use super::{EbpfError, EbpfSource, Options};
use crate::counts::maps;
use crate::model::{EventKinds, NetnsSelection};
use crate::source::Notice;

/// What a command asks of the eBPF source.
pub struct Request<'a> {
    pub hook_mode: HookMode,
    pub ring_size: u32,
    /// What the programs let through; UPDATE only when asked for with `-e`.
    pub filter: KernelFilter,
    /// `-e` as given; `None` means NEW and DESTROY, since UPDATE costs a
    /// hook run per state change.
    pub kinds: Option<EventKinds>,
    /// `--set-nf-conntrack-events`.
    pub set_events_sysctl: bool,
    /// The namespace whose event-cache sysctl UPDATE events depend on.
    pub netns: &'a NetnsSelection,
    /// `tracker serve`: keep closed-flow totals and per-kind counters.
    pub account_closed: bool,
}

#[derive(Debug)]
pub enum StartError {
    /// The hooks cannot run on this kernel: ctnetlink may stand in.
    Unavailable(EbpfError),
    /// The hooks could run, but something they need was refused.
    Failed(String),
}

impl EbpfSource {
    /// Attaches the hooks and readies the run: UPDATE events' event cache,
    /// per-mark counts seeded from the table, and their pins for `tracker
    /// counts` (removed when the source drops).
    pub fn start(req: &Request) -> Result<Self, StartError> {
        if let Some(note) =
            crate::privileges::ensure_conntrack_loaded().map_err(StartError::Failed)?
        {
            Notice::ModulesLoaded(note).say();
        }
        let updates = req.kinds.is_some_and(|k| k.update);
        let mut filter = req.filter;
        if !updates {
            filter.kinds &= !filter_kind::UPDATE;
        }
        let mut source = Self::open(&Options {
            hook_mode: req.hook_mode,
            ring_size: req.ring_size,
            filter,
            updates,
            account_closed: req.account_closed,
        })
        .map_err(StartError::Unavailable)?;
        for outcome in &source.outcomes {
            Notice::Hook(outcome.to_string()).say();
        }
        if updates {
            // Without the event cache the UPDATE hook never fires. Checked
            // once the hooks are known to attach, so a host that falls back
            // to netlink (which needs no sysctl) is not asked to change
            // anything.
            let prepared =
                event_cache::prepare(req.netns, req.set_events_sysctl, source.events_autodetect)
                    .map_err(StartError::Failed)?;
            match prepared {
                Prepared::Enabled => {}
                Prepared::Set(guard, note) => {
                    Notice::EventCache(note).say();
                    source.event_cache = Some(guard);
                }
                Prepared::Unchecked(warning) => Notice::EventCache(warning).say(),
            }
        } else if req.set_events_sysctl {
            Notice::SysctlWithoutUpdates.say();
        }
        if req.kinds.is_none() {
            Notice::UpdatesOptIn.say();
        }
        source.seed();
        match maps::pin(&source.ebpf) {
            Ok(dir) => {
                if let Some(it) = source.expired.take() {
                    match it.pin(&dir, maps::EXPIRED_PINS) {
                        Ok(links) => source.expired_pins = links,
                        Err(e) => log::warn!("iterators over live entries: {e}"),
                    }
                }
                source.pins = Some(dir);
            }
            Err(e) => Notice::PinFailed(e).say(),
        }
        Ok(source)
    }

    /// Counts the entries that existed before the hooks, with the one table
    /// dump the tracker makes: through the seed hook where it loaded (the
    /// kernel then remembers each one, so its expiry is seen too), else
    /// from the dump's marks.
    fn seed(&mut self) {
        if let Some(hook) = self.seed_hook.take() {
            match hook.during(&mut self.ebpf, crate::counts::dump::dump_marks) {
                Ok(Ok(entries)) => {
                    log::info!(
                        "{} entries listed at start-up, {} of them not yet counted by the \
                         hooks (remembered and counted now)",
                        entries.len(),
                        self.stat(stat::SEEDED)
                    );
                    return;
                }
                Ok(Err(e)) => {
                    Notice::SeedFailed(e.to_string()).say();
                    return;
                }
                // Not attached: the dump did not run; count from it below.
                Err(e) => log::warn!("seed hook: {e}; counting from the dump's marks"),
            }
        }
        if !self.tuple_hashes {
            // Predicted to load, yet it did not: the counts kept no tuple
            // hashes to recognise entries the hooks counted since attaching.
            log::warn!(
                "entries made while the tracker started may be counted twice until they end"
            );
        }
        match maps::seed(&mut self.ebpf, self.live_buckets) {
            Ok(n) => log::info!("{n} entries existed before start (counted once)"),
            Err(e) => Notice::SeedFailed(e).say(),
        }
    }
}

impl Drop for EbpfSource {
    fn drop(&mut self) {
        if let Some(dir) = self.pins.take() {
            maps::unpin(&dir);
        }
    }
}
