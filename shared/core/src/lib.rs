//! Sightline core: domain model, SDK wire protocol, request handlers and the ports they run on.
//!
//! Core performs no I/O of its own: hosts (the local server, Lambda functions, the edge
//! Worker) supply [`ports`] implementations. It builds for native targets and `wasm32`.

pub mod condition;
pub mod error;
pub mod events;
pub mod keys;
pub mod model;
#[cfg(not(target_arch = "wasm32"))]
pub mod otlp;
pub mod pii;
pub mod ports;
pub mod publish;
pub mod stacktrace;
pub mod stream;
pub mod timefmt;
pub mod wire;

pub use error::{Error, ErrorKind, Result};

pub mod app;
pub use app::Sightline;
