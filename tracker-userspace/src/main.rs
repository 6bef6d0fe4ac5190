//! `tracker`: conntrack events and live per-mark counts from eBPF hooks on
//! nf_conntrack, with a ctnetlink fallback.

use std::process::ExitCode;

use tracker_userspace::{cli, command};

fn main() -> ExitCode {
    let cli = cli::parse();
    let level = match cli.verbose {
        0 => "warn",
        1 => "info",
        2 => "debug",
        _ => "trace",
    };
    env_logger::Builder::from_env(env_logger::Env::default().default_filter_or(level))
        .format_timestamp(None)
        .init();
    let runtime = match tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
    {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("tracker: cannot start the runtime: {e}");
            return ExitCode::FAILURE;
        }
    };
    let result = runtime.block_on(async {
        match &cli.command {
            cli::Command::Events(args) => command::events::run(&cli, args).await,
            cli::Command::Counts(args) => command::counts::run(&cli, args).await,
            cli::Command::Serve(args) => command::serve::run(&cli, args).await,
        }
    });
    match result {
        Ok(code) => code,
        Err(e) if e.downcast_ref::<command::UsageError>().is_some() => {
            eprintln!("error: {e:#}");
            ExitCode::from(2)
        }
        Err(e) => {
            eprintln!("tracker: {e:#}");
            ExitCode::FAILURE
        }
    }
}
