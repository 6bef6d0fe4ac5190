use std::time::Duration;
pub fn build_and_run(_k: Option<&str>, _t: Duration, _a: &[String]) -> anyhow::Result<()> { todo!() }
