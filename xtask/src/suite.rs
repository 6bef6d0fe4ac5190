use std::time::Duration;
pub fn run(_k: &[&str], _h: bool, _kg: bool, _t: Duration) -> anyhow::Result<()> { todo!() }
