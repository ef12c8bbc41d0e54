//! Where requests go: the Lambda endpoint of a region (spec §5), or an explicit URL.

use std::fmt;
use std::net::IpAddr;

use http::uri::{Authority, Scheme};
use http::HeaderValue;

/// An endpoint could not be determined.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum EndpointError {
    /// No region was configured (and no endpoint URL).
    #[error("Missing Region: set a region (e.g. us-east-1) or an endpoint URL")]
    MissingRegion,
    /// The region is not a valid host label.
    #[error("invalid region {0:?}: expected lowercase letters, digits and '-' (e.g. us-east-1)")]
    InvalidRegion(String),
    /// The endpoint URL cannot be used.
    #[error("invalid endpoint URL {url:?}: {reason}")]
    InvalidUrl {
        /// The URL as given (any user info replaced by `***`).
        url: String,
        /// What is wrong with it.
        reason: &'static str,
    },
    /// A custom endpoint URL was combined with FIPS or dual-stack.
    #[error("a custom endpoint URL cannot be combined with FIPS or dual-stack endpoints")]
    CustomWithVariant,
    /// The partition has no dual-stack endpoints.
    #[error("dual-stack endpoints are not available in region {0}")]
    DualStackUnavailable(String),
}

/// Endpoint variants of spec §5.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct EndpointVariant {
    /// Use the FIPS endpoint (`lambda-fips.`).
    pub fips: bool,
    /// Use the dual-stack (IPv4 + IPv6) endpoint.
    pub dual_stack: bool,
}

struct Partition {
    dns_suffix: &'static str,
    dual_stack_dns_suffix: Option<&'static str>,
}

/// AWS's partitions (botocore's `partitions.json`): the pseudo-regions each lists, the
/// prefixes of its region pattern (`{prefix}-{word}-{digits}`), and its DNS suffixes.
/// Checked in this order, as botocore does; a region that matches none is in `aws`.
/// `tests/endpoint_vectors.rs` compares the result with botocore's resolver.
const PARTITIONS: &[(&[&str], &[&str], Partition)] = &[
    (
        &["aws-global"],
        &["us", "eu", "ap", "sa", "ca", "me", "af", "il", "mx"],
        Partition {
            dns_suffix: "amazonaws.com",
            dual_stack_dns_suffix: Some("api.aws"),
        },
    ),
    (
        &["aws-cn-global"],
        &["cn"],
        Partition {
            dns_suffix: "amazonaws.com.cn",
            dual_stack_dns_suffix: Some("api.amazonwebservices.com.cn"),
        },
    ),
    (
        &[],
        &["eusc-de"],
        Partition {
            dns_suffix: "amazonaws.eu",
            dual_stack_dns_suffix: Some("api.amazonwebservices.eu"),
        },
    ),
    (
        &["aws-iso-global"],
        &["us-iso"],
        Partition {
            dns_suffix: "c2s.ic.gov",
            dual_stack_dns_suffix: Some("api.aws.ic.gov"),
        },
    ),
    (
        &["aws-iso-b-global"],
        &["us-isob"],
        Partition {
            dns_suffix: "sc2s.sgov.gov",
            dual_stack_dns_suffix: Some("api.aws.scloud"),
        },
    ),
    (
        &["aws-iso-e-global"],
        &["eu-isoe"],
        Partition {
            dns_suffix: "cloud.adc-e.uk",
            dual_stack_dns_suffix: Some("api.cloud-aws.adc-e.uk"),
        },
    ),
    (
        &["aws-iso-f-global"],
        &["us-isof"],
        Partition {
            dns_suffix: "csp.hci.ic.gov",
            dual_stack_dns_suffix: Some("api.aws.hci.ic.gov"),
        },
    ),
    (
        &["aws-us-gov-global"],
        &["us-gov"],
        Partition {
            dns_suffix: "amazonaws.com",
            dual_stack_dns_suffix: Some("api.aws"),
        },
    ),
];

/// `{prefix}-{word}-{digits}`, the shape of partitions.json's region patterns
/// (`^us\-gov\-\w+\-\d+$`).
fn matches_pattern(region: &str, prefix: &str) -> bool {
    let Some(rest) = region
        .strip_prefix(prefix)
        .and_then(|r| r.strip_prefix('-'))
    else {
        return false;
    };
    match rest.split_once('-') {
        Some((word, digits)) => {
            !word.is_empty()
                && word.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'_')
                && !digits.is_empty()
                && digits.bytes().all(|b| b.is_ascii_digit())
        }
        None => false,
    }
}

fn partition_of(region: &str) -> &'static Partition {
    PARTITIONS
        .iter()
        .find(|(listed, _, _)| listed.contains(&region))
        .or_else(|| {
            PARTITIONS
                .iter()
                .find(|(_, prefixes, _)| prefixes.iter().any(|p| matches_pattern(region, p)))
        })
        .map_or(&PARTITIONS[0].2, |(_, _, p)| p)
}

/// A resolved endpoint: scheme, authority and an optional base path.
///
/// ```
/// use invoke_stack::transport::{Endpoint, EndpointVariant};
/// let e = Endpoint::for_region("cn-north-1")?;
/// assert_eq!(e.url(), "https://lambda.cn-north-1.amazonaws.com.cn");
/// let e = Endpoint::resolve(Some("us-east-1"), None, EndpointVariant { fips: true, dual_stack: true })?;
/// assert_eq!(e.url(), "https://lambda-fips.us-east-1.api.aws");
/// let e = Endpoint::from_url("http://127.0.0.1:9001")?;
/// assert!(e.is_loopback());
/// # Ok::<(), invoke_stack::transport::EndpointError>(())
/// ```
#[derive(Clone, PartialEq, Eq)]
pub struct Endpoint {
    scheme: Scheme,
    authority: Authority,
    base_path: String,
    host_header: HeaderValue,
}

impl fmt::Debug for Endpoint {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_tuple("Endpoint").field(&self.url()).finish()
    }
}

impl Endpoint {
    /// The regional endpoint, `https://lambda.{region}.{dnsSuffix}`.
    pub fn for_region(region: &str) -> Result<Self, EndpointError> {
        Self::resolve(Some(region), None, EndpointVariant::default())
    }

    /// Resolves like the endpoint rule set: a custom URL is used verbatim (and cannot be
    /// combined with a variant); otherwise the region (required) picks the partition.
    pub fn resolve(
        region: Option<&str>,
        url: Option<&str>,
        variant: EndpointVariant,
    ) -> Result<Self, EndpointError> {
        if let Some(url) = url {
            if variant.fips || variant.dual_stack {
                return Err(EndpointError::CustomWithVariant);
            }
            return Self::from_url(url);
        }
        let region = region.ok_or(EndpointError::MissingRegion)?;
        if region.is_empty() {
            return Err(EndpointError::MissingRegion);
        }
        let valid = region
            .bytes()
            .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == b'-')
            && !region.starts_with('-')
            && !region.ends_with('-');
        if !valid {
            return Err(EndpointError::InvalidRegion(region.to_owned()));
        }
        let partition = partition_of(region);
        let suffix = if variant.dual_stack {
            partition
                .dual_stack_dns_suffix
                .ok_or_else(|| EndpointError::DualStackUnavailable(region.to_owned()))?
        } else {
            partition.dns_suffix
        };
        let service = if variant.fips {
            "lambda-fips"
        } else {
            "lambda"
        };
        Self::from_url(&format!("https://{service}.{region}.{suffix}"))
    }

    /// An explicit endpoint URL: `http` or `https`, a host, an optional port (1 to
    /// 65535) and an optional base path. A URL that could not be used as written is
    /// refused with the reason: a port out of range (which would otherwise fall back to
    /// the scheme's default port), user info, a query, a fragment, another scheme.
    ///
    /// ```
    /// use invoke_stack::transport::{Endpoint, EndpointError};
    /// let err = Endpoint::from_url("http://127.0.0.1:99999").unwrap_err();
    /// assert!(matches!(err, EndpointError::InvalidUrl { .. }));
    /// assert!(err.to_string().contains("port"));
    /// ```
    pub fn from_url(url: &str) -> Result<Self, EndpointError> {
        let invalid = |reason| EndpointError::InvalidUrl {
            url: without_user_info(url),
            reason,
        };
        // `http::Uri` drops a fragment without a word; a URL with one was meant for
        // something else.
        if url.contains('#') {
            return Err(invalid("a fragment is not allowed"));
        }
        let uri: http::Uri = url.parse().map_err(|_| invalid("not a valid URI"))?;
        let scheme = uri
            .scheme()
            .cloned()
            .ok_or_else(|| invalid("no scheme: expected http:// or https://"))?;
        if scheme != Scheme::HTTP && scheme != Scheme::HTTPS {
            return Err(invalid("the scheme must be http or https"));
        }
        let authority = uri.authority().cloned().ok_or_else(|| invalid("no host"))?;
        if authority.as_str().contains('@') {
            return Err(invalid(
                "user info is not allowed (credentials come from the credential provider)",
            ));
        }
        if authority.host().is_empty() {
            return Err(invalid("no host"));
        }
        if !has_valid_port(&authority) {
            return Err(invalid("the port must be a number from 1 to 65535"));
        }
        if uri.query().is_some() {
            return Err(invalid("a query is not allowed"));
        }
        let base_path = uri.path().trim_end_matches('/').to_owned();
        let host_header =
            HeaderValue::from_str(authority.as_str()).map_err(|_| invalid("invalid host"))?;
        Ok(Self {
            scheme,
            authority,
            base_path,
            host_header,
        })
    }

    /// `http` or `https`.
    pub fn scheme(&self) -> &Scheme {
        &self.scheme
    }
    /// Host and optional port.
    pub fn authority(&self) -> &Authority {
        &self.authority
    }
    /// Path prefix before `/2015-03-31/...` (empty for AWS endpoints).
    pub fn base_path(&self) -> &str {
        &self.base_path
    }
    /// The value of the `Host` header.
    pub fn host_header(&self) -> &HeaderValue {
        &self.host_header
    }
    /// The endpoint as a URL.
    pub fn url(&self) -> String {
        format!("{}://{}{}", self.scheme, self.authority, self.base_path)
    }
    /// True when the host is `localhost` or a loopback address.
    pub fn is_loopback(&self) -> bool {
        is_loopback_host(self.authority.host())
    }
}

/// False when the authority has a port that is not a number from 1 to 65535 (or an
/// empty one). `Authority::port_u16` is `None` for such a port, and a connector then
/// uses the scheme's default port: `http://127.0.0.1:99999` would reach port 80.
pub(crate) fn has_valid_port(authority: &Authority) -> bool {
    // What follows the host is `:port` or nothing (`user@` is refused before this).
    let rest = authority
        .as_str()
        .get(authority.host().len()..)
        .unwrap_or("");
    match rest.strip_prefix(':') {
        None => rest.is_empty(),
        Some(port) => {
            !port.is_empty()
                && port.bytes().all(|b| b.is_ascii_digit())
                && port.parse::<u16>().is_ok_and(|p| p != 0)
        }
    }
}

/// The URL with any user info replaced by `***`, so that an error never shows a password.
///
/// Everything before the last `@` (after the scheme) is masked: a password may itself hold
/// `/`, `?`, `#` or `@`, so the authority cannot be trusted to end where a URL parser
/// would end it.
fn without_user_info(url: &str) -> String {
    let start = url.find("://").map_or(0, |i| i + 3);
    match url.get(start..).and_then(|rest| rest.rfind('@')) {
        Some(at) => format!("{}***{}", &url[..start], &url[start + at..]),
        None => url.to_owned(),
    }
}

/// True for `localhost` and loopback IP addresses (IPv6 with or without brackets).
pub fn is_loopback_host(host: &str) -> bool {
    let host = host.trim_start_matches('[').trim_end_matches(']');
    host.eq_ignore_ascii_case("localhost")
        || host.parse::<IpAddr>().is_ok_and(|ip| ip.is_loopback())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn url(region: &str, fips: bool, dual_stack: bool) -> Result<String, EndpointError> {
        Endpoint::resolve(Some(region), None, EndpointVariant { fips, dual_stack }).map(|e| e.url())
    }

    #[test]
    fn partitions_and_variants() {
        assert_eq!(
            url("us-east-1", false, false).unwrap(),
            "https://lambda.us-east-1.amazonaws.com"
        );
        assert_eq!(
            url("us-east-1", true, false).unwrap(),
            "https://lambda-fips.us-east-1.amazonaws.com"
        );
        assert_eq!(
            url("eu-west-1", false, true).unwrap(),
            "https://lambda.eu-west-1.api.aws"
        );
        assert_eq!(
            url("cn-northwest-1", false, true).unwrap(),
            "https://lambda.cn-northwest-1.api.amazonwebservices.com.cn"
        );
        assert_eq!(
            url("cn-north-1", false, false).unwrap(),
            "https://lambda.cn-north-1.amazonaws.com.cn"
        );
        assert_eq!(
            url("us-gov-west-1", true, true).unwrap(),
            "https://lambda-fips.us-gov-west-1.api.aws"
        );
        assert_eq!(
            url("us-iso-east-1", false, false).unwrap(),
            "https://lambda.us-iso-east-1.c2s.ic.gov"
        );
        assert_eq!(
            url("us-isob-east-1", false, false).unwrap(),
            "https://lambda.us-isob-east-1.sc2s.sgov.gov"
        );
        // Issue 18: partitions the hand-written table had wrong (botocore's data).
        assert_eq!(
            url("eusc-de-east-1", false, false).unwrap(),
            "https://lambda.eusc-de-east-1.amazonaws.eu"
        );
        assert_eq!(
            url("us-isof-south-1", true, false).unwrap(),
            "https://lambda-fips.us-isof-south-1.csp.hci.ic.gov"
        );
        assert_eq!(
            url("eu-isoe-west-1", false, false).unwrap(),
            "https://lambda.eu-isoe-west-1.cloud.adc-e.uk"
        );
        assert_eq!(
            url("us-iso-east-1", false, true).unwrap(),
            "https://lambda.us-iso-east-1.api.aws.ic.gov"
        );
    }

    #[test]
    fn errors() {
        assert_eq!(
            Endpoint::resolve(None, None, EndpointVariant::default()),
            Err(EndpointError::MissingRegion)
        );
        assert!(matches!(
            url("US_EAST", false, false),
            Err(EndpointError::InvalidRegion(_))
        ));
        assert_eq!(
            Endpoint::resolve(
                Some("us-east-1"),
                Some("http://localhost:1"),
                EndpointVariant {
                    fips: true,
                    dual_stack: false
                }
            ),
            Err(EndpointError::CustomWithVariant)
        );
        assert!(Endpoint::from_url("ftp://x").is_err());
        assert!(Endpoint::from_url("http://u:p@x").is_err());
        assert!(Endpoint::from_url("localhost:80").is_err());
    }

    #[test]
    fn custom_url_with_base_path() {
        let e = Endpoint::from_url("http://[::1]:4566/proxy/").unwrap();
        assert_eq!(e.base_path(), "/proxy");
        assert_eq!(e.host_header(), "[::1]:4566");
        assert!(e.is_loopback());
        assert!(!Endpoint::from_url("http://203.0.113.5")
            .unwrap()
            .is_loopback());
    }
}
