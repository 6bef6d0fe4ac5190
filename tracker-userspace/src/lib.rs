//! The tracker's userspace: sources (eBPF ring, ctnetlink) produce `Event`s,
//! filters select them, outputs print them. `main.rs` is the binary's edge;
//! the library exists so the benchmarks can drive the same code.

pub mod btf;
pub mod cli;
pub mod command;
pub mod counts;
pub mod event;
pub mod filter;
pub mod metrics;
pub mod model;
pub mod output;
pub mod privileges;
pub mod source;
