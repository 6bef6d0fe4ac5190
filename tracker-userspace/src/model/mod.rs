//! The values the tracker works with, whatever asks for them: filters,
//! sources and the command line. Each parses from the text a user writes
//! (`FromStr`), with an error that names the bad value.

pub mod addr;
pub mod duration;
pub mod event_kinds;
pub mod mark;
pub mod netns;
pub mod number;
pub mod protocol;
pub mod size;
pub mod state;

pub use addr::{Cidr, Family};
pub use duration::DurationArg;
pub use event_kinds::EventKinds;
pub use mark::MarkMask;
pub use netns::{NetnsArg, NetnsSelection};
pub use protocol::Protocol;
pub use size::ByteSize;
pub use state::{CtState, Lacking, STATE_PROTOCOLS, StateArg, StateSet};
