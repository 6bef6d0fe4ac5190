use std::time::Duration;
pub fn run_command(_k: &[&str], _c: &[String], _t: Duration) -> anyhow::Result<()> { todo!() }
