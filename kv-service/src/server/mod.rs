//! The `kv-server` binary's parts: flags and configuration file ([`args`], [`config`]),
//! certificate generation ([`certs`]), logs and metrics ([`telemetry`]), and running a node
//! ([`run`]).

pub mod args;
pub mod certs;
pub mod config;
pub mod run;
pub mod telemetry;

pub use config::{ConfigError, ServerConfig};
pub use run::{serve, ServerError};
