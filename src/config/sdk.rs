//! What [`InvokeClientBuilder::sdk_config`](crate::InvokeClientBuilder::sdk_config) takes
//! from aws-config's `SdkConfig`.

use std::sync::Arc;
use std::time::Duration;

use invoke_layers::sigv4::ProvideCredentials;

/// Settings taken from an `SdkConfig` (all `None` without one).
#[derive(Clone, Default)]
pub(crate) struct SdkSettings {
    pub(crate) region: Option<String>,
    pub(crate) credentials: Option<Arc<dyn ProvideCredentials>>,
    pub(crate) endpoint_url: Option<String>,
    pub(crate) use_fips: Option<bool>,
    pub(crate) use_dual_stack: Option<bool>,
    pub(crate) max_attempts: Option<u32>,
    pub(crate) max_backoff: Option<Duration>,
    pub(crate) adaptive: bool,
    pub(crate) connect_timeout: Option<Duration>,
    pub(crate) operation_timeout: Option<Duration>,
    pub(crate) attempt_timeout: Option<Duration>,
    pub(crate) app_id: Option<String>,
}

impl std::fmt::Debug for SdkSettings {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SdkSettings")
            .field("region", &self.region)
            .field("credentials", &self.credentials.is_some())
            .field("endpoint_url", &self.endpoint_url)
            .field("use_fips", &self.use_fips)
            .field("use_dual_stack", &self.use_dual_stack)
            .field("max_attempts", &self.max_attempts)
            .field("adaptive", &self.adaptive)
            .field("app_id", &self.app_id)
            .finish_non_exhaustive()
    }
}

#[cfg(feature = "aws-config")]
impl SdkSettings {
    pub(crate) fn from_sdk_config(cfg: &aws_types::SdkConfig) -> Self {
        use aws_types::service_config::ServiceConfigKey;
        use invoke_layers::sigv4::{AwsSdkProvider, CredentialsCache};

        // `AWS_ENDPOINT_URL_LAMBDA`, or the `lambda` part of the profile's `services`
        // section, as the generated SDK clients read them (with the key they use:
        // aws-config adds the service's suffix itself, and honours
        // `AWS_IGNORE_CONFIGURED_ENDPOINT_URLS` for this key only); then the global one.
        let service_endpoint = cfg.service_config().and_then(|sc| {
            let key = ServiceConfigKey::builder()
                .service_id("Lambda")
                .env("AWS_ENDPOINT_URL")
                .profile("endpoint_url")
                .build()
                .ok()?;
            sc.load_config(key)
        });
        let retry = cfg.retry_config();
        let timeouts = cfg.timeout_config();
        Self {
            region: cfg.region().map(|r| r.as_ref().to_owned()),
            credentials: cfg.credentials_provider().map(|p| {
                Arc::new(CredentialsCache::new(AwsSdkProvider::new(p)))
                    as Arc<dyn ProvideCredentials>
            }),
            endpoint_url: service_endpoint.or_else(|| cfg.endpoint_url().map(str::to_owned)),
            use_fips: cfg.use_fips(),
            use_dual_stack: cfg.use_dual_stack(),
            max_attempts: retry.map(|r| r.max_attempts().max(1)),
            max_backoff: retry.map(|r| r.max_backoff()),
            adaptive: retry.is_some_and(|r| r.mode() == aws_config::retry::RetryMode::Adaptive),
            connect_timeout: timeouts.and_then(|t| t.connect_timeout()),
            operation_timeout: timeouts.and_then(|t| t.operation_timeout()),
            attempt_timeout: timeouts.and_then(|t| t.operation_attempt_timeout()),
            app_id: cfg.app_name().map(|a| a.as_ref().to_owned()),
        }
    }
}
