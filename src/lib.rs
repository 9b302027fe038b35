//! The `crm` application: the configuration, the wiring that turns it into
//! running processes, the maintenance commands, and the command-line client
//! of a running server (`crm customers`). `src/main.rs` is the
//! command line over it; tests start [`application::Application`] in
//! process where a real process is not the point.
pub mod application;
pub mod client;
pub mod config;
pub mod ops;
pub mod runtime;
pub mod seed;
