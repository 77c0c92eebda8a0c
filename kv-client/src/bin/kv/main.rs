//! `kv`: get, put, append, delete, cas, status and bench against the replicated key/value
//! service. `kv --help` documents the flags and exit codes.

mod args;
mod bench;
mod output;

use std::process::ExitCode;
use std::time::Duration;

use clap::Parser;
use kv_client::{Client, ClientError, ClientOptions};
use raft_transport_quic::pki::ClientTls;

use args::{exit, Cli, Command};
use output::Format;

fn main() -> ExitCode {
    let cli = Cli::parse();
    let filter = tracing_subscriber::EnvFilter::try_from_default_env()
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("warn"));
    let _ = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .try_init();
    let runtime = match tokio::runtime::Runtime::new() {
        Ok(runtime) => runtime,
        Err(e) => return fail(exit::SETUP, &format!("cannot start a runtime: {e}")),
    };
    ExitCode::from(runtime.block_on(run(cli)))
}

fn fail(code: u8, message: &str) -> ExitCode {
    eprintln!("kv: {message}");
    ExitCode::from(code)
}

/// Prints `message` and returns `code`.
fn error(code: u8, message: &str) -> u8 {
    eprintln!("kv: {message}");
    code
}

/// A value argument's bytes: `-` reads standard input whole (raw bytes, any size).
fn input(value: String) -> Vec<u8> {
    if value != "-" {
        return value.into_bytes();
    }
    let mut bytes = Vec::new();
    if let Err(e) = std::io::Read::read_to_end(&mut std::io::stdin(), &mut bytes) {
        eprintln!("kv: cannot read the value from standard input: {e}");
        std::process::exit(i32::from(exit::USAGE));
    }
    bytes
}

/// The exit code for a failed operation.
fn failed(e: &ClientError) -> u8 {
    let code = match e {
        ClientError::NotApplied(_) | ClientError::Server(_) => exit::NOT_APPLIED,
        ClientError::OutcomeUnknown(_) | ClientError::Closed | ClientError::Call(_) => {
            exit::UNKNOWN
        }
    };
    error(code, &e.to_string())
}

async fn run(cli: Cli) -> u8 {
    let endpoints = match args::parse_endpoints(&cli.endpoints) {
        Ok(endpoints) => endpoints,
        Err(e) => return error(exit::USAGE, &e),
    };
    let tls = match ClientTls::read_from(&cli.tls_dir) {
        Ok(tls) => tls,
        Err(e) => {
            return error(
                exit::SETUP,
                &format!("cannot read the client certificate (--tls-dir): {e}"),
            )
        }
    };
    if !(cli.timeout.is_finite() && cli.timeout > 0.0) {
        return error(
            exit::USAGE,
            "--timeout must be a positive number of seconds",
        );
    }
    let format = Format::new(cli.hex, cli.json);
    let options = ClientOptions {
        op_timeout: Duration::from_secs_f64(cli.timeout),
        ..ClientOptions::default()
    };
    let connect = |options: ClientOptions| Client::with_options(endpoints.clone(), &tls, options);
    if let Command::Bench(bench) = &cli.command {
        return bench::run(bench, &endpoints, &tls, options, format).await;
    }
    let client = match connect(options) {
        Ok(client) => client,
        Err(e) => return error(exit::SETUP, &e.to_string()),
    };
    let code = match cli.command {
        Command::Get { key } => match client.get(key.as_bytes()).await {
            Ok(value) => {
                format.value(&key, value.as_deref());
                if value.is_some() {
                    exit::OK
                } else {
                    exit::NO
                }
            }
            Err(e) => failed(&e),
        },
        Command::Put { key, value } => match client.put(key.as_bytes(), input(value)).await {
            Ok(()) => {
                format.done("put", &key);
                exit::OK
            }
            Err(e) => failed(&e),
        },
        Command::Append { key, value } => match client.append(key.as_bytes(), input(value)).await {
            Ok(()) => {
                format.done("append", &key);
                exit::OK
            }
            Err(e) => failed(&e),
        },
        Command::Delete { key } => match client.delete(key.as_bytes()).await {
            Ok(existed) => {
                format.deleted(&key, existed);
                if existed {
                    exit::OK
                } else {
                    exit::NO
                }
            }
            Err(e) => failed(&e),
        },
        Command::Cas {
            key,
            new,
            expected,
            expect_absent: _,
        } => {
            let expected = expected.map(String::into_bytes);
            match client
                .compare_and_swap(key.as_bytes(), expected, input(new))
                .await
            {
                Ok((swapped, previous)) => {
                    format.swapped(&key, swapped, previous.as_deref());
                    if swapped {
                        exit::OK
                    } else {
                        exit::NO
                    }
                }
                Err(e) => failed(&e),
            }
        }
        Command::Status => {
            let mut rows = Vec::new();
            for &(id, addr) in &endpoints {
                rows.push((id, addr, client.status(addr).await));
            }
            format.status(&rows);
            if rows.iter().any(|(_, _, status)| status.is_ok()) {
                exit::OK
            } else {
                error(exit::SETUP, "no endpoint answered")
            }
        }
        Command::Bench(_) => unreachable!("handled above"),
    };
    client.close().await;
    code
}
