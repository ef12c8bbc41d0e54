//! [`InvokeClient`]: validated request → encode → sign → hyper transport → decode.
//!
//! ```no_run
//! use invoke_stack::InvokeClient;
//! use invoke_stack::layers::sigv4::Credentials;
//!
//! # async fn run() -> Result<(), Box<dyn std::error::Error>> {
//! let client = InvokeClient::builder()
//!     .region("us-east-1")
//!     .credentials(Credentials::from_keys("AKID", "SECRET", None))
//!     .build()?;
//! let resp = client.invoke_json("my-function", &serde_json::json!({"n": 1})).await?;
//! if let Some(fe) = resp.function_error() {
//!     eprintln!("the function failed: {fe}");
//! }
//! # Ok(()) }
//! ```

use std::fmt;
use std::sync::Arc;
use std::time::Duration;

use tower::ServiceExt;

use invoke_layers::sigv4::{
    PayloadHash, ProvideCredentials, ProviderChain, SigV4, SigV4Error, SigV4Layer, SigningConfig,
};

use crate::codec;
use crate::error::{InvokeError, TimeoutError, Timer, TransportError, TransportErrorKind};
use crate::model::{InvocationType, InvokeRequest, InvokeResponse};
use crate::transport::{
    Endpoint, EndpointError, EndpointVariant, HyperTransport, TransportBuildError, TransportConfig,
};

/// The client could not be built.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum BuildError {
    /// No usable endpoint.
    #[error(transparent)]
    Endpoint(#[from] EndpointError),
    /// The transport could not be built.
    #[error(transparent)]
    Transport(#[from] TransportBuildError),
}

/// Builder of [`InvokeClient`].
pub struct InvokeClientBuilder {
    region: Option<String>,
    endpoint_url: Option<String>,
    variant: EndpointVariant,
    credentials: Option<Arc<dyn ProvideCredentials>>,
    transport: TransportConfig,
    operation_timeout: Option<Duration>,
}

impl fmt::Debug for InvokeClientBuilder {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("InvokeClientBuilder")
            .field("region", &self.region)
            .field("endpoint_url", &self.endpoint_url)
            .field("variant", &self.variant)
            .field("credentials", &self.credentials)
            .field("transport", &self.transport)
            .field("operation_timeout", &self.operation_timeout)
            .finish()
    }
}

impl InvokeClientBuilder {
    /// The region (for the endpoint and the signature). Defaults to `AWS_REGION`, then
    /// `AWS_DEFAULT_REGION`.
    pub fn region(mut self, region: impl Into<String>) -> Self {
        self.region = Some(region.into());
        self
    }
    /// An explicit endpoint URL (the local endpoint, a proxy, LocalStack, ...).
    pub fn endpoint_url(mut self, url: impl Into<String>) -> Self {
        self.endpoint_url = Some(url.into());
        self
    }
    /// Use the FIPS endpoint.
    pub fn use_fips(mut self, yes: bool) -> Self {
        self.variant.fips = yes;
        self
    }
    /// Use the dual-stack endpoint.
    pub fn use_dual_stack(mut self, yes: bool) -> Self {
        self.variant.dual_stack = yes;
        self
    }
    /// Where credentials come from (default: [`ProviderChain::default_chain`], i.e. the
    /// environment variables, then the shared profile files, cached).
    pub fn credentials(mut self, provider: impl ProvideCredentials) -> Self {
        self.credentials = Some(Arc::new(provider));
        self
    }
    /// Transport settings (timeouts, keep-alive, pool, response cap).
    pub fn transport(mut self, config: TransportConfig) -> Self {
        self.transport = config;
        self
    }
    /// A limit on the whole call (none by default: a synchronous function may run for
    /// 15 minutes).
    pub fn operation_timeout(mut self, timeout: Duration) -> Self {
        self.operation_timeout = Some(timeout);
        self
    }

    /// Builds the client.
    pub fn build(self) -> Result<InvokeClient, BuildError> {
        let env_region = || {
            std::env::var("AWS_REGION")
                .or_else(|_| std::env::var("AWS_DEFAULT_REGION"))
                .ok()
                .filter(|r| !r.is_empty())
        };
        let region = self.region.or_else(env_region);
        let endpoint = Endpoint::resolve(
            region.as_deref(),
            self.endpoint_url.as_deref(),
            self.variant,
        )?;
        // A custom endpoint needs no region to resolve, but the signature still does;
        // us-east-1 is what the AWS SDKs use for that case.
        let signing_region = region.unwrap_or_else(|| "us-east-1".to_owned());
        let credentials: Arc<dyn ProvideCredentials> = self
            .credentials
            .unwrap_or_else(|| Arc::new(ProviderChain::default_chain()));
        let transport = HyperTransport::new(self.transport)?;
        let service = tower::Layer::layer(
            &SigV4Layer::new(credentials, SigningConfig::new(signing_region)),
            transport,
        );
        Ok(InvokeClient {
            inner: Arc::new(Inner {
                endpoint,
                service,
                operation_timeout: self.operation_timeout,
            }),
        })
    }
}

struct Inner {
    endpoint: Endpoint,
    service: SigV4<HyperTransport>,
    operation_timeout: Option<Duration>,
}

/// A Lambda Invoke client. `Clone + Send + Sync`; clones share one connection pool.
#[derive(Clone)]
pub struct InvokeClient {
    inner: Arc<Inner>,
}

impl fmt::Debug for InvokeClient {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("InvokeClient")
            .field("endpoint", &self.inner.endpoint)
            .field("operation_timeout", &self.inner.operation_timeout)
            .finish_non_exhaustive()
    }
}

fn from_sigv4(e: SigV4Error<TransportError>) -> InvokeError {
    match e {
        SigV4Error::Credentials(e) => InvokeError::Credentials(e),
        SigV4Error::Signing(e) => InvokeError::Signing(e),
        SigV4Error::Inner(e) => InvokeError::Transport(e),
        // `SigV4Error` is non-exhaustive; a future kind is a signing failure here.
        other => InvokeError::Signing(invoke_layers::sigv4::SigningError::new(other.to_string())),
    }
}

impl InvokeClient {
    /// Starts a builder.
    pub fn builder() -> InvokeClientBuilder {
        InvokeClientBuilder {
            region: None,
            endpoint_url: None,
            variant: EndpointVariant::default(),
            credentials: None,
            transport: TransportConfig::default(),
            operation_timeout: None,
        }
    }

    /// The endpoint requests go to.
    pub fn endpoint(&self) -> &Endpoint {
        &self.inner.endpoint
    }

    /// Invokes a function. A function error is a successful response
    /// ([`InvokeResponse::function_error`]); every other failure is an [`InvokeError`].
    pub async fn invoke(&self, req: InvokeRequest) -> Result<InvokeResponse, InvokeError> {
        let mut http = codec::encode(&req, &self.inner.endpoint).map_err(|e| {
            TransportError::new(
                TransportErrorKind::InvalidRequest,
                false,
                e.to_string(),
                None,
            )
        })?;
        http.extensions_mut().insert(PayloadHash::new());
        let call = self.inner.service.clone().oneshot(http);
        let resp = match self.inner.operation_timeout {
            None => call.await,
            Some(limit) => match tokio::time::timeout(limit, call).await {
                Ok(r) => r,
                // The request may have been written before the timer fired.
                Err(_) => return Err(TimeoutError::new(Timer::Operation, limit, true).into()),
            },
        }
        .map_err(from_sigv4)?;
        Ok(codec::decode(resp)?)
    }

    /// Invokes synchronously with a JSON payload.
    pub async fn invoke_json<T: serde::Serialize + ?Sized>(
        &self,
        function_name: &str,
        payload: &T,
    ) -> Result<InvokeResponse, InvokeError> {
        let req = InvokeRequest::builder(function_name)
            .payload_json(payload)
            .map_err(|e| {
                crate::model::ValidationError::new(
                    crate::model::Field::Payload,
                    crate::model::Problem::NotJsonSerializable(e.to_string()),
                )
            })?
            .build()?;
        self.invoke(req).await
    }

    /// Queues an asynchronous invocation (`Event`, answered 202).
    pub async fn invoke_event(
        &self,
        function_name: &str,
        payload: impl Into<bytes::Bytes>,
    ) -> Result<InvokeResponse, InvokeError> {
        let req = InvokeRequest::builder(function_name)
            .invocation_type(InvocationType::Event)
            .payload(payload)
            .build()?;
        self.invoke(req).await
    }

    /// Checks parameters and permissions without running the function (`DryRun`, 204).
    pub async fn dry_run(&self, function_name: &str) -> Result<InvokeResponse, InvokeError> {
        let req = InvokeRequest::builder(function_name)
            .invocation_type(InvocationType::DryRun)
            .build()?;
        self.invoke(req).await
    }
}
