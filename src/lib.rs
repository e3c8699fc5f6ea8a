//! `sportello`: the binary's library — the HTTP API and the command line — so that tests can
//! drive the router in-process ([`api::app`]) as well as run the binary.
//!
//! ## Layout
//! - [`api`]: the HTTP API, one module per group of resources, merged in [`api::app`].
//! - [`web`]: the pages for citizens and staff, on the same application service as the API.
//! - [`cli`]: one module per subcommand of `sportello`, and the wiring that opens the store,
//!   the vault and the read models from the settings.

pub mod api;
pub mod cli;
pub mod web;
