//! Turning `Event`s into text: conntrack -E lines, JSON lines, and the
//! per-mark count report. Outputs never know which source produced an event.

pub mod conntrack_text;
pub mod counts;
pub mod json;

use std::fmt;
use std::io::{self, BufWriter, IsTerminal, Stdout, Write};
use std::str::FromStr;

pub use conntrack_text::TextOptions;

use crate::event::Event;

/// What `-o` selected. conntrack's `-o` takes a comma list; the text options
/// combine (`-o extended,timestamp`), JSON stands alone.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum OutputFormat {
    /// conntrack -E lines.
    Text(TextOptions),
    /// One JSON object per line.
    Json,
}

impl OutputFormat {
    pub const DEFAULT: OutputFormat = OutputFormat::Text(TextOptions {
        extended: false,
        timestamp: false,
        id: false,
        ktimestamp: false,
    });

    /// The `-o` item only ctnetlink can deliver, if any: the eBPF hooks
    /// cannot compute the kernel's conntrack id.
    pub fn netlink_only(&self) -> Option<&'static str> {
        match self {
            OutputFormat::Text(TextOptions { id: true, .. }) => Some("-o id"),
            _ => None,
        }
    }
}

impl Default for OutputFormat {
    fn default() -> Self {
        Self::DEFAULT
    }
}

/// conntrack's `-o` items the tracker refuses, with what to use instead.
const REFUSED: [(&str, &str); 3] = [
    ("xml", "use -o json for machine-readable output"),
    (
        "labels",
        "the tracker does not read connection labels; use conntrack -E -o labels, or a \
         connmark and -m",
    ),
    (
        "save",
        "it prints conntrack -I/-D command lines, not events; use -o json",
    ),
];

impl FromStr for OutputFormat {
    type Err = String;

    /// Comma list of `extended`, `timestamp`, `id`, `ktimestamp`,
    /// `userspace`, `json` (or `default`); each a case-insensitive prefix, as
    /// conntrack parses `-o`, tried in conntrack's order (`-o i` is `id`).
    fn from_str(s: &str) -> Result<Self, String> {
        let mut text = TextOptions::default();
        let mut json = false;
        for item in s.split(',') {
            let lower = item.trim().to_ascii_lowercase();
            let is = |full: &str| !lower.is_empty() && full.starts_with(&lower);
            if is("default") {
            } else if is("extended") {
                text.extended = true;
            } else if is("timestamp") {
                text.timestamp = true;
            } else if is("id") {
                text.id = true;
            } else if is("ktimestamp") {
                text.ktimestamp = true;
            } else if is("userspace") {
                // conntrack 1.4.7 accepts it and sets no flag: `[USERSPACE]
                // portid=N` ends every line a netlink request caused anyway.
            } else if is("json") {
                json = true;
            } else if let Some((name, instead)) = REFUSED.iter().find(|(o, _)| is(o)) {
                return Err(format!(
                    "conntrack's `-o {name}` is not supported: {instead}"
                ));
            } else {
                return Err(format!(
                    "`{item}` is not an output format: use extended, timestamp, id, ktimestamp \
                     or json"
                ));
            }
        }
        if !json {
            Ok(OutputFormat::Text(text))
        } else if text == TextOptions::default() {
            Ok(OutputFormat::Json)
        } else {
            Err(format!(
                "`{s}`: json cannot be combined with extended, timestamp, id or ktimestamp (JSON \
                 always has the times and an id)"
            ))
        }
    }
}

impl fmt::Display for OutputFormat {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            OutputFormat::Json => f.write_str("json"),
            OutputFormat::Text(t) => {
                let parts: Vec<&str> = [
                    (t.extended, "extended"),
                    (t.timestamp, "timestamp"),
                    (t.id, "id"),
                    (t.ktimestamp, "ktimestamp"),
                ]
                .iter()
                .filter(|(on, _)| *on)
                .map(|(_, name)| *name)
                .collect();
                if parts.is_empty() {
                    f.write_str("default")
                } else {
                    f.write_str(&parts.join(","))
                }
            }
        }
    }
}

#[derive(Debug, thiserror::Error)]
pub enum OutputError {
    /// The reader went away (EPIPE): end quietly, like `conntrack -E | head`.
    #[error("output closed by the reader")]
    Closed,
    #[error("cannot write output: {0}")]
    Io(io::Error),
    #[error("cannot encode event as JSON: {0}")]
    Json(#[from] serde_json::Error),
}

impl From<io::Error> for OutputError {
    fn from(e: io::Error) -> Self {
        if e.kind() == io::ErrorKind::BrokenPipe {
            OutputError::Closed
        } else {
            OutputError::Io(e)
        }
    }
}

/// Formats events into a buffered sink. Call [`Writer::flush`] once per batch
/// of events; on a terminal every event is flushed at once.
pub struct Writer<W: Write> {
    out: W,
    format: OutputFormat,
    flush_each: bool,
    line: String,
    json: Vec<u8>,
}

impl Writer<BufWriter<Stdout>> {
    /// A writer on stdout that flushes every event when stdout is a terminal.
    pub fn stdout(format: OutputFormat) -> Self {
        let out = io::stdout();
        let tty = out.is_terminal();
        Writer::new(BufWriter::with_capacity(64 * 1024, out), format, tty)
    }
}

impl<W: Write> Writer<W> {
    pub fn new(out: W, format: OutputFormat, flush_each: bool) -> Self {
        Writer {
            out,
            format,
            flush_each,
            line: String::with_capacity(512),
            json: Vec::with_capacity(1024),
        }
    }

    pub fn write_event(&mut self, ev: &Event) -> Result<(), OutputError> {
        let bytes = match self.format {
            OutputFormat::Text(opts) => {
                self.line.clear();
                conntrack_text::format_event(&mut self.line, ev, opts);
                self.line.as_bytes()
            }
            OutputFormat::Json => {
                self.json.clear();
                json::format_event(&mut self.json, ev)?;
                &self.json
            }
        };
        self.out.write_all(bytes)?;
        if self.flush_each {
            self.out.flush()?;
        }
        Ok(())
    }

    pub fn flush(&mut self) -> Result<(), OutputError> {
        self.out.flush()?;
        Ok(())
    }

    #[cfg(test)]
    fn into_inner(self) -> W {
        self.out
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::event::EventKind;

    #[test]
    fn output_format_lists() {
        assert_eq!(
            "default".parse::<OutputFormat>().unwrap(),
            OutputFormat::DEFAULT
        );
        assert_eq!(
            "extended".parse::<OutputFormat>().unwrap(),
            OutputFormat::Text(TextOptions {
                extended: true,
                timestamp: false,
                ..TextOptions::default()
            })
        );
        assert_eq!(
            "ext".parse::<OutputFormat>().unwrap(),
            OutputFormat::Text(TextOptions {
                extended: true,
                timestamp: false,
                ..TextOptions::default()
            })
        );
        assert_eq!(
            "timestamp".parse::<OutputFormat>().unwrap(),
            OutputFormat::Text(TextOptions {
                extended: false,
                timestamp: true,
                ..TextOptions::default()
            })
        );
        assert_eq!(
            "extended,timestamp".parse::<OutputFormat>().unwrap(),
            OutputFormat::Text(TextOptions {
                extended: true,
                timestamp: true,
                ..TextOptions::default()
            })
        );
        assert_eq!("JSON".parse::<OutputFormat>().unwrap(), OutputFormat::Json);
        assert!(
            "json,extended"
                .parse::<OutputFormat>()
                .unwrap_err()
                .contains("cannot be combined")
        );
        assert!(
            "xml"
                .parse::<OutputFormat>()
                .unwrap_err()
                .contains("not supported")
        );
        for (item, sentence) in [
            (
                "xml",
                "conntrack's `-o xml` is not supported: use -o json for machine-readable output",
            ),
            (
                "labels",
                "conntrack's `-o labels` is not supported: the tracker does not read connection \
                 labels; use conntrack -E -o labels, or a connmark and -m",
            ),
            (
                "save",
                "conntrack's `-o save` is not supported: it prints conntrack -I/-D command lines, \
                 not events; use -o json",
            ),
        ] {
            assert_eq!(item.parse::<OutputFormat>().unwrap_err(), sentence);
        }
        // conntrack's prefixes, in its order: `i` is id, `k` ktimestamp,
        // `u` userspace (no flag), `l` labels.
        let id = OutputFormat::Text(TextOptions {
            id: true,
            ..TextOptions::default()
        });
        assert_eq!("i".parse::<OutputFormat>().unwrap(), id);
        assert_eq!("ID".parse::<OutputFormat>().unwrap(), id);
        assert_eq!(id.netlink_only(), Some("-o id"));
        assert_eq!(OutputFormat::DEFAULT.netlink_only(), None);
        assert_eq!(
            "k,ext".parse::<OutputFormat>().unwrap(),
            OutputFormat::Text(TextOptions {
                extended: true,
                ktimestamp: true,
                ..TextOptions::default()
            })
        );
        assert_eq!(
            "userspace".parse::<OutputFormat>().unwrap(),
            OutputFormat::DEFAULT
        );
        assert!("l".parse::<OutputFormat>().unwrap_err().contains("labels"));
        assert!(
            "json,id"
                .parse::<OutputFormat>()
                .unwrap_err()
                .contains("cannot be combined")
        );
        assert!(
            "fancy"
                .parse::<OutputFormat>()
                .unwrap_err()
                .contains("`fancy`")
        );
        assert!("extended,".parse::<OutputFormat>().is_err());
        for f in [
            "default",
            "json",
            "extended",
            "timestamp",
            "extended,timestamp",
            "id",
            "extended,timestamp,id,ktimestamp",
        ] {
            assert_eq!(f.parse::<OutputFormat>().unwrap().to_string(), f);
        }
    }

    /// Counts flushes and can fail with a chosen error.
    struct Sink {
        data: Vec<u8>,
        flushes: usize,
        fail: Option<io::ErrorKind>,
    }

    impl Write for Sink {
        fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
            if let Some(kind) = self.fail {
                return Err(io::Error::from(kind));
            }
            self.data.extend_from_slice(buf);
            Ok(buf.len())
        }

        fn flush(&mut self) -> io::Result<()> {
            self.flushes += 1;
            Ok(())
        }
    }

    fn sink() -> Sink {
        Sink {
            data: Vec::new(),
            flushes: 0,
            fail: None,
        }
    }

    #[test]
    fn writes_lines_and_flushes_per_batch() {
        let ev = json::tests::sample(EventKind::New);
        let mut w = Writer::new(sink(), OutputFormat::DEFAULT, false);
        w.write_event(&ev).unwrap();
        w.write_event(&ev).unwrap();
        w.flush().unwrap();
        let s = w.into_inner();
        assert_eq!(s.flushes, 1);
        let text = String::from_utf8(s.data).unwrap();
        assert_eq!(text.lines().count(), 2);
        assert!(text.starts_with("    [NEW] tcp      6 120 SYN_SENT src=10.0.0.1 "));
    }

    #[test]
    fn flushes_every_event_on_a_terminal() {
        let ev = json::tests::sample(EventKind::New);
        let mut w = Writer::new(sink(), OutputFormat::Json, true);
        w.write_event(&ev).unwrap();
        w.write_event(&ev).unwrap();
        let s = w.into_inner();
        assert_eq!(s.flushes, 2);
        assert_eq!(String::from_utf8(s.data).unwrap().lines().count(), 2);
    }

    #[test]
    fn closed_pipe_is_distinguishable() {
        let ev = json::tests::sample(EventKind::New);
        let mut w = Writer::new(
            Sink {
                fail: Some(io::ErrorKind::BrokenPipe),
                ..sink()
            },
            OutputFormat::DEFAULT,
            false,
        );
        assert!(matches!(w.write_event(&ev), Err(OutputError::Closed)));
        let mut w = Writer::new(
            Sink {
                fail: Some(io::ErrorKind::StorageFull),
                ..sink()
            },
            OutputFormat::DEFAULT,
            false,
        );
        assert!(matches!(w.write_event(&ev), Err(OutputError::Io(_))));
    }

    #[test]
    fn epipe_from_a_real_pipe() {
        let mut fds = [0; 2];
        // SAFETY: fds has room for two descriptors.
        assert_eq!(unsafe { libc::pipe(fds.as_mut_ptr()) }, 0);
        // SAFETY: we own both fresh descriptors.
        unsafe { libc::close(fds[0]) };
        // SAFETY: fds[1] is an open descriptor we own.
        let file = unsafe { <std::fs::File as std::os::fd::FromRawFd>::from_raw_fd(fds[1]) };
        // Rust ignores SIGPIPE in its runtime, so the write fails with EPIPE.
        let mut w = Writer::new(file, OutputFormat::DEFAULT, true);
        let ev = json::tests::sample(EventKind::New);
        assert!(matches!(w.write_event(&ev), Err(OutputError::Closed)));
    }
}
