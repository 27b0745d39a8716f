//! Sightline core: domain model, SDK wire protocol, request handlers and the ports they run on.
//!
//! Core performs no I/O of its own: hosts (the local server, Lambda functions, the edge
//! Worker) supply [`ports`] implementations. It builds for native targets and `wasm32`.

pub mod condition;
pub mod events;
pub mod pii;
pub mod ports;
