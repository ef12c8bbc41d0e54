//! # invoke-stack
//!
//! Invoke AWS Lambda functions through a resilient stack of tower layers: typed requests
//! validated before the network, SigV4 signing, a tuned hyper transport, and errors that
//! say whose fault they are and whether the function may have run.
//!
//! ```no_run
//! use invoke_stack::{InvokeClient, model::InvokeRequest};
//!
//! # async fn run() -> Result<(), Box<dyn std::error::Error>> {
//! let client = InvokeClient::builder().region("us-east-1").build()?;
//! let req = InvokeRequest::builder("my-function")
//!     .payload_json(&serde_json::json!({"hello": "world"}))?
//!     .build()?;
//! let resp = client.invoke(req).await?;
//! println!("{} {:?}", resp.status_code(), resp.payload());
//! # Ok(()) }
//! ```
//!
//! Modules: [`model`] (request/response and validation), [`codec`] (wire format),
//! [`error`] (typed errors), [`transport`] (hyper client), [`client`] (the client), and
//! with the `testing` feature, [`testing`] (a local Lambda endpoint). The generic layers
//! live in the `invoke-layers` crate, re-exported as [`layers`].
#![forbid(unsafe_code)]
#![deny(missing_docs)]
#![cfg_attr(docsrs, feature(doc_cfg))]

pub mod circuit_breaker;
pub mod classify;
pub mod client;
pub mod codec;
pub mod config;
pub mod dead_letter;
pub mod error;
pub mod model;
pub mod stack;
pub mod telemetry;
#[cfg(feature = "testing")]
#[cfg_attr(docsrs, doc(cfg(feature = "testing")))]
pub mod testing;
pub mod transport;

pub use client::{InvokeClient, InvokeClientBuilder, InvokeFuture};
pub use error::{InvokeError, InvokeErrorKind};
pub use invoke_layers as layers;
pub use model::{InvokeRequest, InvokeResponse};

/// The README's examples compile (run as doctests).
#[doc = include_str!("../README.md")]
#[cfg(doctest)]
pub struct ReadmeDoctests;
