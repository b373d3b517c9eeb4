//! The notes app: domain, ports, adapters and the Lambda handlers that serve it.
//!
//! The domain (`domain`) knows no AWS type. Each capability it needs is a narrow trait in `ports`,
//! with an AWS adapter in `adapters` (one module per AWS service) and an embedded twin in `embedded`
//! that `notesctl dev` runs on. Handlers (`auth`, `notes`, `websocket`) take `&Deps` and a
//! `LambdaEvent`, so the same code runs on Lambda and in `notesctl dev`.

pub mod adapters;
pub mod auth;
pub mod config;
pub mod deps;
pub mod dispatch;
pub mod domain;
pub mod embedded;
pub mod http;
pub mod metering;
pub mod notes;
pub mod ports;
pub mod router;
pub mod spec;
pub mod telemetry;
pub mod trace;
pub mod websocket;

pub use deps::Deps;
pub use dispatch::HandlerName;
