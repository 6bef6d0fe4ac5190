//! Event kinds.

use std::str::FromStr;

/// Which event kinds to show.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct EventKinds {
    pub new: bool,
    pub update: bool,
    pub destroy: bool,
}

impl EventKinds {
    pub const ALL: EventKinds = EventKinds {
        new: true,
        update: true,
        destroy: true,
    };
    pub const NONE: EventKinds = EventKinds {
        new: false,
        update: false,
        destroy: false,
    };

    pub fn is_empty(&self) -> bool {
        *self == Self::NONE
    }
}

impl Default for EventKinds {
    fn default() -> Self {
        Self::ALL
    }
}

impl FromStr for EventKinds {
    type Err = String;

    /// Like conntrack's `-e`: comma list of ALL, NEW, UPDATES, DESTROY; each
    /// item a case-insensitive prefix (NEW, UPDATE, UPD, D are fine).
    fn from_str(s: &str) -> Result<Self, String> {
        let mut kinds = EventKinds {
            new: false,
            update: false,
            destroy: false,
        };
        for item in s.split(',') {
            let up = item.trim().to_ascii_uppercase();
            let is = |full: &str| !up.is_empty() && full.starts_with(&up);
            if is("ALL") {
                kinds = EventKinds::ALL;
            } else if is("NEW") {
                kinds.new = true;
            } else if is("UPDATES") {
                kinds.update = true;
            } else if is("DESTROY") {
                kinds.destroy = true;
            } else {
                return Err(format!(
                    "`{item}` is not an event kind: use NEW, UPDATE, DESTROY or ALL, comma separated"
                ));
            }
        }
        Ok(kinds)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn event_kinds_like_conntrack() {
        let k: EventKinds = "NEW,UPDATES,DESTROY".parse().unwrap();
        assert_eq!(k, EventKinds::ALL);
        let k: EventKinds = "new,destroy".parse().unwrap();
        assert_eq!(
            k,
            EventKinds {
                new: true,
                update: false,
                destroy: true
            }
        );
        let k: EventKinds = "UPDATE".parse().unwrap();
        assert_eq!(
            k,
            EventKinds {
                new: false,
                update: true,
                destroy: false
            }
        );
        let k: EventKinds = "all".parse().unwrap();
        assert_eq!(k, EventKinds::ALL);
        let k: EventKinds = "d".parse().unwrap();
        assert_eq!(
            k,
            EventKinds {
                new: false,
                update: false,
                destroy: true
            }
        );
        assert!("NEWS".parse::<EventKinds>().unwrap_err().contains("`NEWS`"));
        assert!("NEW,".parse::<EventKinds>().is_err());
        assert!("".parse::<EventKinds>().is_err());
    }
}
