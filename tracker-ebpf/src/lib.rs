#![no_std]
// The library target lets tracker-userspace declare a build-dependency on this
// crate, so cargo rebuilds the eBPF object when its sources change.
