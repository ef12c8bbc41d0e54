//! # invoke-stack
//!
//! Invoke AWS Lambda functions through a resilient stack of tower layers: typed requests
//! validated before the network, SigV4 signing, a tuned hyper transport, retries that
//! know whether the function may have run, and errors that say whose fault they are.
//!
//! ## Quick start
//!
//! ```no_run
//! use std::time::Duration;
//! use invoke_stack::{CallOptions, InvokeClient, InvokeRequest};
//! use invoke_stack::error::RunStatus;
//!
//! # async fn run() -> Result<(), Box<dyn std::error::Error>> {
//! // Region and credentials from the environment and the shared profile files.
//! let client = InvokeClient::builder().region("eu-west-1").build()?;
//!
//! // Validated here, before any network I/O.
//! let req = InvokeRequest::builder("my-function")
//!     .payload_json(&serde_json::json!({"order": 42}))?
//!     // This call's own deadline, retries included (optional).
//!     .options(CallOptions::new().timeout(Duration::from_secs(30)))
//!     .build()?;
//!
//! match client.invoke(req).await {
//!     Ok(resp) if resp.function_error().is_some() => {
//!         // The call worked; the function failed (its error is in the payload).
//!         eprintln!("function error: {:?}", resp.function_error());
//!     }
//!     Ok(resp) => println!("{}", String::from_utf8_lossy(resp.payload())),
//!     Err(e) => {
//!         // Whose fault, how many attempts, and whether it may have run anyway.
//!         eprintln!("{e} ({} fault)", e.fault());
//!         if e.may_have_run() != RunStatus::NotRun {
//!             eprintln!("the function may have run: do not blindly repeat it");
//!         }
//!     }
//! }
//! # Ok(()) }
//! ```
//!
//! The client is a `tower::Service<InvokeRequest>`, so tower's middleware can wrap it;
//! its own layers (signing, deadline, rate limit, circuit breaker, retry, attempt
//! timeout, tracing) can be reordered or extended with the named stack ([`stack`]).
//!
//! Modules: [`model`] (request/response and validation), [`codec`] (wire format),
//! [`error`] (typed errors), [`classify`] (what each outcome means for retrying),
//! [`transport`] (hyper client), [`client`] (the client), [`stack`] (the named stack),
//! [`telemetry`] (spans), [`dead_letter`] (failed `Event`s kept), and with the `testing`
//! feature, [`testing`] (a local Lambda endpoint). The generic layers live in the
//! `invoke-layers` crate, re-exported as [`layers`].
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
mod id;
mod json_fields;
#[cfg(feature = "metrics")]
#[cfg_attr(docsrs, doc(cfg(feature = "metrics")))]
pub mod metrics;
pub mod model;
pub mod stack;
#[cfg(feature = "stream")]
#[cfg_attr(docsrs, doc(cfg(feature = "stream")))]
pub mod stream;
pub mod telemetry;
#[cfg(feature = "testing")]
#[cfg_attr(docsrs, doc(cfg(feature = "testing")))]
pub mod testing;
pub mod transport;

pub use client::{CallOptions, InvokeClient, InvokeClientBuilder, InvokeFuture};
pub use error::{InvokeError, InvokeErrorKind};
pub use invoke_layers as layers;
pub use model::{InvokeRequest, InvokeResponse};

/// The README's examples compile (run as doctests).
#[doc = include_str!("../README.md")]
#[cfg(doctest)]
pub struct ReadmeDoctests;
