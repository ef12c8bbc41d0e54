//! Which certificates the transport trusts. Verification is always on: there is no
//! setting that turns it off.

use std::fmt;
use std::path::PathBuf;
#[cfg(feature = "rustls")]
use std::sync::Arc;

#[cfg(feature = "rustls")]
use super::TransportBuildError;

/// The set of root certificates to start from.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
#[non_exhaustive]
pub enum TlsRoots {
    /// The platform's trusted roots (the system store, read once when the transport is
    /// built), as the AWS SDKs and CLI. A corporate CA installed on the machine is
    /// trusted. If the platform has none (a `scratch` container), the bundled webpki
    /// roots are used instead, with a warning. The default.
    #[default]
    Platform,
    /// The Mozilla roots bundled in the binary (`webpki-roots`): the same on every
    /// machine, whatever is installed.
    Webpki,
}

/// TLS trust settings of the transport ([`TransportConfig::tls`](super::TransportConfig::tls)).
///
/// ```
/// use invoke_stack::transport::{TlsConfig, TlsRoots, TransportConfig};
/// let tls = TlsConfig::default()
///     .roots(TlsRoots::Webpki)
///     .ca_bundle("/etc/corp/ca.pem");     // a private CA, in addition to the roots
/// let config = TransportConfig::default().tls(tls);
/// # let _ = config;
/// ```
#[derive(Clone, Default)]
#[non_exhaustive]
pub struct TlsConfig {
    /// The roots to start from (default: the platform's).
    pub roots: TlsRoots,
    /// A PEM file of CA certificates trusted in addition to the roots (`AWS_CA_BUNDLE`).
    pub ca_bundle: Option<PathBuf>,
    /// PEM-encoded CA certificates trusted in addition to the roots.
    pub extra_roots_pem: Vec<Vec<u8>>,
    /// A whole rustls client configuration, used as given (roots, protocol versions,
    /// client certificates...); the settings above are then ignored.
    #[cfg(feature = "rustls")]
    pub client_config: Option<Arc<rustls::ClientConfig>>,
}

impl fmt::Debug for TlsConfig {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let mut d = f.debug_struct("TlsConfig");
        d.field("roots", &self.roots)
            .field("ca_bundle", &self.ca_bundle)
            .field("extra_roots_pem", &self.extra_roots_pem.len());
        #[cfg(feature = "rustls")]
        d.field("client_config", &self.client_config.is_some());
        d.finish()
    }
}

impl TlsConfig {
    /// Sets the roots to start from.
    pub fn roots(mut self, roots: TlsRoots) -> Self {
        self.roots = roots;
        self
    }
    /// Trusts the CA certificates of this PEM file too.
    pub fn ca_bundle(mut self, path: impl Into<PathBuf>) -> Self {
        self.ca_bundle = Some(path.into());
        self
    }
    /// Trusts these PEM-encoded CA certificates too.
    pub fn add_root_pem(mut self, pem: impl Into<Vec<u8>>) -> Self {
        self.extra_roots_pem.push(pem.into());
        self
    }
    /// Uses this rustls configuration as it is.
    #[cfg(feature = "rustls")]
    pub fn client_config(mut self, config: Arc<rustls::ClientConfig>) -> Self {
        self.client_config = Some(config);
        self
    }

    /// The rustls client configuration these settings make.
    #[cfg(feature = "rustls")]
    pub(crate) fn build(&self) -> Result<rustls::ClientConfig, TransportBuildError> {
        use rustls::pki_types::pem::PemObject;
        use rustls::pki_types::CertificateDer;

        if let Some(config) = &self.client_config {
            return Ok((**config).clone());
        }
        let mut roots = match self.roots {
            TlsRoots::Platform => platform_roots(),
            TlsRoots::Webpki => webpki_store(),
        };
        let mut add_pem = |pem: &[u8], what: &dyn fmt::Display| {
            let mut n = 0;
            for cert in CertificateDer::pem_slice_iter(pem) {
                let cert = cert.map_err(|e| {
                    TransportBuildError(format!("{what}: not a valid PEM certificate: {e}"))
                })?;
                roots.add(cert).map_err(|e| {
                    TransportBuildError(format!("{what}: a certificate cannot be used: {e}"))
                })?;
                n += 1;
            }
            if n == 0 {
                return Err(TransportBuildError(format!(
                    "{what}: no PEM certificate (-----BEGIN CERTIFICATE-----) found"
                )));
            }
            Ok(())
        };
        for (i, pem) in self.extra_roots_pem.iter().enumerate() {
            add_pem(pem, &format_args!("extra root certificate #{}", i + 1))?;
        }
        if let Some(path) = &self.ca_bundle {
            let pem = crate::config::blocking(|| std::fs::read(path)).map_err(|e| {
                TransportBuildError(format!(
                    "cannot read the CA bundle {} (AWS_CA_BUNDLE): {e}",
                    path.display()
                ))
            })?;
            add_pem(
                &pem,
                &format_args!("the CA bundle {} (AWS_CA_BUNDLE)", path.display()),
            )?;
        }
        let config = rustls::ClientConfig::builder_with_provider(Arc::new(
            rustls::crypto::ring::default_provider(),
        ))
        .with_safe_default_protocol_versions()
        .map_err(|e| TransportBuildError(e.to_string()))?
        .with_root_certificates(roots)
        .with_no_client_auth();
        Ok(config)
    }
}

#[cfg(feature = "rustls")]
fn webpki_store() -> rustls::RootCertStore {
    rustls::RootCertStore {
        roots: webpki_roots::TLS_SERVER_ROOTS.to_vec(),
    }
}

/// The platform's roots, read once per process (every transport built later shares
/// them); the bundled webpki roots when the platform has none.
#[cfg(feature = "rustls")]
fn platform_roots() -> rustls::RootCertStore {
    static ROOTS: std::sync::OnceLock<rustls::RootCertStore> = std::sync::OnceLock::new();
    ROOTS
        .get_or_init(|| {
            let found = crate::config::blocking(rustls_native_certs::load_native_certs);
            let mut roots = rustls::RootCertStore::empty();
            let (added, _) = roots.add_parsable_certificates(found.certs);
            if added == 0 {
                tracing::warn!(
                    errors = found.errors.len(),
                    "no trusted root certificates found on this machine; using the bundled webpki roots"
                );
                return webpki_store();
            }
            roots
        })
        .clone()
}
