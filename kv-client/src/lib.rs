//! # kv-client
//!
//! The Clerk (exactly-once client for the key/value service) and the `kv` CLI. Not built yet
//! (see the project's issue tracker); until it lands this crate exports nothing.
#![deny(missing_docs)]
