//! `kv-server`: one node of the replicated key/value service. `kv-server --help` lists the
//! flags; `kv-server certs --help` makes a cluster's certificates.

use std::process::ExitCode;

use clap::Parser;
use kv_service::server::args::{Cli, Command};
use kv_service::server::{certs, serve, telemetry, ServerConfig};

fn main() -> ExitCode {
    let cli = Cli::parse(); // usage errors exit with 2
    telemetry::init_logs();
    match cli.command {
        Some(Command::Certs(args)) => match certs::generate(&args) {
            Ok(dirs) => {
                for dir in dirs {
                    println!("{}", dir.display());
                }
                ExitCode::SUCCESS
            }
            Err(e) => fail(&e, 1),
        },
        None => {
            let config = match ServerConfig::resolve(cli.serve) {
                Ok(config) => config,
                Err(e) => return fail(&e, 2),
            };
            let runtime = match tokio::runtime::Runtime::new() {
                Ok(runtime) => runtime,
                Err(e) => return fail(&e, 1),
            };
            match runtime.block_on(serve(config, shutdown_signal())) {
                Ok(()) => ExitCode::SUCCESS,
                Err(e) => fail(&e, 1),
            }
        }
    }
}

fn fail(error: &dyn std::fmt::Display, code: u8) -> ExitCode {
    eprintln!("kv-server: {error}");
    ExitCode::from(code)
}

/// Completes at the first SIGINT or SIGTERM; a second one exits the process at once.
async fn shutdown_signal() {
    use tokio::signal::unix::{signal, SignalKind};
    let (Ok(mut interrupt), Ok(mut terminate)) = (
        signal(SignalKind::interrupt()),
        signal(SignalKind::terminate()),
    ) else {
        tracing::warn!("cannot install signal handlers; stop the server with SIGKILL");
        return std::future::pending().await;
    };
    tokio::select! {
        _ = interrupt.recv() => {}
        _ = terminate.recv() => {}
    }
    tokio::spawn(async move {
        tokio::select! {
            _ = interrupt.recv() => {}
            _ = terminate.recv() => {}
        }
        eprintln!("kv-server: second signal, exiting at once");
        std::process::exit(130);
    });
}
