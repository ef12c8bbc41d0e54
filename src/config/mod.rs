//! Settings from the environment and the shared config file, as the AWS SDKs and CLI read
//! them, without the `aws-config` crate.
//!
//! [`InvokeClientBuilder::build`](crate::InvokeClientBuilder::build) reads them (once,
//! when the client is built); a setting made on the builder wins over both.
//!
//! | setting | environment variable | profile key (`~/.aws/config`) |
//! |---|---|---|
//! | region | `AWS_REGION`, then `AWS_DEFAULT_REGION` | `region` |
//! | endpoint URL | `AWS_ENDPOINT_URL_LAMBDA`, then `AWS_ENDPOINT_URL` | `endpoint_url` |
//! | ignore configured endpoint URLs | `AWS_IGNORE_CONFIGURED_ENDPOINT_URLS` | `ignore_configured_endpoint_urls` |
//! | FIPS endpoint | `AWS_USE_FIPS_ENDPOINT` | `use_fips_endpoint` |
//! | dual-stack endpoint | `AWS_USE_DUALSTACK_ENDPOINT` | `use_dualstack_endpoint` |
//! | total attempts | `AWS_MAX_ATTEMPTS` | `max_attempts` |
//! | extra trusted CA certificates (PEM file) | `AWS_CA_BUNDLE` | `ca_bundle` |
//! | app id in the User-Agent | `AWS_SDK_UA_APP_ID` | `sdk_ua_app_id` |
//! | profile, files | `AWS_PROFILE`, `AWS_CONFIG_FILE`, `AWS_SHARED_CREDENTIALS_FILE` | |
//!
//! The environment wins over the profile, except that `AWS_ENDPOINT_URL` (for every
//! service) gives way to nothing but `AWS_ENDPOINT_URL_LAMBDA`, and a profile's
//! `endpoint_url` comes last. Booleans are `true` or `false` (any case).
//!
//! ```
//! use invoke_stack::config::{Env, EnvSettings};
//! let env = Env::from_pairs([
//!     ("AWS_DEFAULT_REGION", "eu-west-1"),
//!     ("AWS_USE_FIPS_ENDPOINT", "TRUE"),
//!     ("AWS_CONFIG_FILE", "/nonexistent"),
//! ]);
//! let settings = EnvSettings::load(&env)?;
//! assert_eq!(settings.region.as_deref(), Some("eu-west-1"));
//! assert_eq!(settings.use_fips, Some(true));
//! # Ok::<(), invoke_stack::config::ConfigError>(())
//! ```

pub(crate) mod sdk;

use std::collections::HashMap;
use std::path::PathBuf;

pub use invoke_layers::sigv4::Env;
use invoke_layers::sigv4::ProfileProvider;

/// A setting from the environment or the config file has a value that cannot be used.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum ConfigError {
    /// A value is not of the expected form.
    #[error("{source_name} = {value:?}: expected {expected}")]
    InvalidValue {
        /// The variable, or `profile {name}: {key}`.
        source_name: String,
        /// The value as found.
        value: String,
        /// What was expected.
        expected: &'static str,
    },
    /// The config file exists but cannot be read.
    #[error("cannot read the shared config file: {0}")]
    Unreadable(String),
}

/// The settings found in the environment and the profile (`None`: not set anywhere).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
#[non_exhaustive]
pub struct EnvSettings {
    /// The profile whose settings were read.
    pub profile: String,
    /// The region.
    pub region: Option<String>,
    /// The endpoint URL (unless configured endpoint URLs are ignored).
    pub endpoint_url: Option<String>,
    /// Whether to use the FIPS endpoint.
    pub use_fips: Option<bool>,
    /// Whether to use the dual-stack endpoint.
    pub use_dual_stack: Option<bool>,
    /// Total attempts per call.
    pub max_attempts: Option<u32>,
    /// A PEM file of CA certificates to trust in addition to the default roots.
    pub ca_bundle: Option<PathBuf>,
    /// The application's id, for the User-Agent.
    pub app_id: Option<String>,
}

fn parse_bool(source_name: &str, value: &str) -> Result<bool, ConfigError> {
    match value.trim().to_ascii_lowercase().as_str() {
        "true" => Ok(true),
        "false" => Ok(false),
        _ => Err(ConfigError::InvalidValue {
            source_name: source_name.to_owned(),
            value: value.to_owned(),
            expected: "true or false",
        }),
    }
}

fn parse_attempts(source_name: &str, value: &str) -> Result<u32, ConfigError> {
    value
        .trim()
        .parse::<u32>()
        .ok()
        .filter(|n| *n >= 1)
        .ok_or_else(|| ConfigError::InvalidValue {
            source_name: source_name.to_owned(),
            value: value.to_owned(),
            expected: "a whole number of attempts, 1 or more",
        })
}

/// Reads the file on a multi-threaded runtime's thread through `block_in_place` (the
/// runtime moves its other tasks elsewhere meanwhile); elsewhere, at once.
pub(crate) fn blocking<T>(f: impl FnOnce() -> T) -> T {
    match tokio::runtime::Handle::try_current() {
        Ok(h) if h.runtime_flavor() == tokio::runtime::RuntimeFlavor::MultiThread => {
            tokio::task::block_in_place(f)
        }
        _ => f(),
    }
}

impl EnvSettings {
    /// Reads the variables from `env`, and the profile's settings from the config file
    /// (`AWS_CONFIG_FILE`, default `~/.aws/config`; profile `AWS_PROFILE`, default
    /// `default`). A missing file or profile is no error; an unreadable file or an
    /// invalid value is.
    pub fn load(env: &Env) -> Result<Self, ConfigError> {
        let provider = ProfileProvider::new().env(env.clone());
        let profile_name = provider.profile_name();
        let profile = blocking(|| provider.config_values())
            .map_err(|e| ConfigError::Unreadable(e.to_string()))?;
        Self::from_sources(env, &profile_name, &profile)
    }

    fn from_sources(
        env: &Env,
        profile_name: &str,
        profile: &HashMap<String, String>,
    ) -> Result<Self, ConfigError> {
        let key_name = |k: &str| format!("profile {profile_name}: {k}");
        // (name, value) of the first variable set, else of the profile key.
        let find = |vars: &[&str], key: &str| -> Option<(String, String)> {
            vars.iter()
                .find_map(|v| env.non_empty(v).map(|val| ((*v).to_owned(), val)))
                .or_else(|| {
                    profile
                        .get(key)
                        .filter(|v| !v.trim().is_empty())
                        .map(|v| (key_name(key), v.clone()))
                })
        };
        let flag = |var: &str, key: &str| -> Result<Option<bool>, ConfigError> {
            find(&[var], key)
                .map(|(name, v)| parse_bool(&name, &v))
                .transpose()
        };
        let ignore_endpoints = flag(
            "AWS_IGNORE_CONFIGURED_ENDPOINT_URLS",
            "ignore_configured_endpoint_urls",
        )?
        .unwrap_or(false);
        let endpoint_url = if ignore_endpoints {
            None
        } else {
            find(
                &["AWS_ENDPOINT_URL_LAMBDA", "AWS_ENDPOINT_URL"],
                "endpoint_url",
            )
            .map(|(_, v)| v.trim().to_owned())
        };
        Ok(Self {
            profile: profile_name.to_owned(),
            region: find(&["AWS_REGION", "AWS_DEFAULT_REGION"], "region")
                .map(|(_, v)| v.trim().to_owned()),
            endpoint_url,
            use_fips: flag("AWS_USE_FIPS_ENDPOINT", "use_fips_endpoint")?,
            use_dual_stack: flag("AWS_USE_DUALSTACK_ENDPOINT", "use_dualstack_endpoint")?,
            max_attempts: find(&["AWS_MAX_ATTEMPTS"], "max_attempts")
                .map(|(name, v)| parse_attempts(&name, &v))
                .transpose()?,
            ca_bundle: find(&["AWS_CA_BUNDLE"], "ca_bundle").map(|(_, v)| PathBuf::from(v)),
            app_id: find(&["AWS_SDK_UA_APP_ID"], "sdk_ua_app_id").map(|(_, v)| v),
        })
    }
}

/// The credential chain used when none is configured and the `aws-config` feature is
/// off: the environment variables (`AWS_ACCESS_KEY_ID`, `AWS_SECRET_ACCESS_KEY`,
/// `AWS_SESSION_TOKEN`), then the static keys of the profile in the shared files, cached.
///
/// When neither has credentials, its error names both sources, what each said, and that
/// container (ECS), web identity (EKS), EC2 instance metadata and SSO / assume-role /
/// `credential_process` profiles come with the `aws-config` feature.
///
/// ```
/// use invoke_stack::config::{lean_credentials_chain, Env};
/// use invoke_stack::layers::sigv4::ProvideCredentials;
/// # #[tokio::main(flavor = "current_thread")] async fn main() {
/// let env = Env::from_pairs([("AWS_CONFIG_FILE", "/nonexistent/c"), ("AWS_SHARED_CREDENTIALS_FILE", "/nonexistent/k")]);
/// let err = lean_credentials_chain(&env).provide_credentials().await.unwrap_err();
/// assert!(err.to_string().contains("aws-config"));
/// # }
/// ```
pub fn lean_credentials_chain(env: &Env) -> invoke_layers::sigv4::CredentialsCache {
    use invoke_layers::sigv4::{CredentialsCache, EnvironmentProvider, ProviderChain};
    CredentialsCache::new(LeanChain(
        ProviderChain::first_try(EnvironmentProvider::with_env(env.clone()))
            .or_else(ProfileProvider::new().env(env.clone())),
    ))
}

/// The chain of [`lean_credentials_chain`], whose "nothing found" says what else exists.
#[derive(Debug)]
struct LeanChain(invoke_layers::sigv4::ProviderChain);

impl invoke_layers::sigv4::ProvideCredentials for LeanChain {
    fn provide_credentials(&self) -> invoke_layers::sigv4::CredentialsFuture {
        use invoke_layers::sigv4::{CredentialsError, CredentialsErrorKind, CredentialsFuture};
        let explain = |e: CredentialsError| {
            if e.kind() == CredentialsErrorKind::InvalidConfiguration
                && e.source_name() == ProfileProvider::SOURCE
                && e.to_string().contains("AwsSdkProvider")
            {
                // A profile with role_arn, SSO, credential_process or web identity.
                return CredentialsError::new(
                    ProfileProvider::SOURCE,
                    CredentialsErrorKind::InvalidConfiguration,
                    format!(
                        "{}; with invoke-stack: enable its `aws-config` feature and pass \
                         `aws_config::load_defaults(..)` to `InvokeClientBuilder::sdk_config`",
                        e.to_string()
                            .trim_start_matches("credentials from profile files: ")
                    ),
                );
            }
            if e.kind() != CredentialsErrorKind::NotLoaded {
                return e;
            }
            CredentialsError::new(
                "default credential chain",
                CredentialsErrorKind::NotLoaded,
                format!(
                    "no credentials found; tried the environment variables, then the shared \
                     profile files ({}). Container credentials (ECS), web identity (EKS), EC2 \
                     instance metadata and SSO, assume-role or credential_process profiles \
                     need the `aws-config` feature of invoke-stack",
                    e.to_string()
                        .trim_start_matches("credentials from credential chain: ")
                        .trim_start_matches("no provider had credentials: ")
                ),
            )
        };
        let mut fut = self.0.provide_credentials();
        match fut.take_ready() {
            Some(r) => CredentialsFuture::ready(r.map_err(explain)),
            None => CredentialsFuture::new(async move { fut.await.map_err(explain) }),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn load(vars: &[(&str, &str)], profile: &[(&str, &str)]) -> Result<EnvSettings, ConfigError> {
        let env = Env::from_pairs(vars.iter().copied());
        let profile = profile
            .iter()
            .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
            .collect();
        EnvSettings::from_sources(&env, "default", &profile)
    }

    #[test]
    fn environment_wins_over_the_profile() {
        let s = load(
            &[
                ("AWS_DEFAULT_REGION", "eu-west-1"),
                ("AWS_MAX_ATTEMPTS", "5"),
            ],
            &[
                ("region", "us-west-2"),
                ("max_attempts", "2"),
                ("use_fips_endpoint", "true"),
            ],
        )
        .unwrap();
        assert_eq!(s.region.as_deref(), Some("eu-west-1"));
        assert_eq!(s.max_attempts, Some(5));
        assert_eq!(s.use_fips, Some(true));
        let s = load(
            &[
                ("AWS_REGION", "ap-south-1"),
                ("AWS_DEFAULT_REGION", "eu-west-1"),
            ],
            &[],
        )
        .unwrap();
        assert_eq!(s.region.as_deref(), Some("ap-south-1"));
        let s = load(&[], &[("region", "eu-central-1")]).unwrap();
        assert_eq!(s.region.as_deref(), Some("eu-central-1"));
    }

    #[test]
    fn endpoint_urls_in_order_and_ignored_on_request() {
        let both = [
            ("AWS_ENDPOINT_URL", "http://all:1"),
            ("AWS_ENDPOINT_URL_LAMBDA", "http://lambda:2"),
        ];
        let s = load(&both, &[("endpoint_url", "http://profile:3")]).unwrap();
        assert_eq!(s.endpoint_url.as_deref(), Some("http://lambda:2"));
        let s = load(&both[..1], &[("endpoint_url", "http://profile:3")]).unwrap();
        assert_eq!(s.endpoint_url.as_deref(), Some("http://all:1"));
        let s = load(&[], &[("endpoint_url", "http://profile:3")]).unwrap();
        assert_eq!(s.endpoint_url.as_deref(), Some("http://profile:3"));
        let mut ignored = both.to_vec();
        ignored.push(("AWS_IGNORE_CONFIGURED_ENDPOINT_URLS", "true"));
        assert_eq!(load(&ignored, &[]).unwrap().endpoint_url, None);
        let s = load(&both, &[("ignore_configured_endpoint_urls", "true")]).unwrap();
        assert_eq!(s.endpoint_url, None);
    }

    #[test]
    fn invalid_values_name_their_source() {
        let e = load(&[("AWS_MAX_ATTEMPTS", "0")], &[]).unwrap_err();
        assert!(e.to_string().contains("AWS_MAX_ATTEMPTS"), "{e}");
        let e = load(&[], &[("use_dualstack_endpoint", "yes")]).unwrap_err();
        assert!(
            e.to_string()
                .contains("profile default: use_dualstack_endpoint"),
            "{e}"
        );
        // Empty variables count as unset.
        assert_eq!(load(&[("AWS_REGION", "")], &[]).unwrap().region, None);
    }

    #[test]
    fn ca_bundle_and_app_id() {
        let s = load(
            &[("AWS_CA_BUNDLE", "/etc/ca.pem")],
            &[("sdk_ua_app_id", "billing")],
        )
        .unwrap();
        assert_eq!(s.ca_bundle, Some(PathBuf::from("/etc/ca.pem")));
        assert_eq!(s.app_id.as_deref(), Some("billing"));
    }
}
