use std::time::{Duration, SystemTime};

/// The longest wait [`parse_retry_after`] returns: a longer hint, however it is written
/// (`864000`, `1e20`, a date next year), reads as this. It is far above any sensible
/// [`RetryPolicy::max_retry_after`](crate::retry::RetryPolicy::max_retry_after), so such a hint
/// ends the retries instead of being ignored or overflowing.
pub const RETRY_AFTER_CAP: Duration = Duration::from_secs(24 * 60 * 60);

/// Parses a `Retry-After` value (RFC 9110 §10.2.3): delay-seconds or an HTTP date
/// (IMF-fixdate, and the obsolete RFC 850 and asctime forms), relative to `now`.
///
/// - Delay-seconds is a non-negative integer; a decimal (`0.5`, `1e3`) is accepted too,
///   as some servers send one. A date in the past is a wait of zero.
/// - Every wait is capped at [`RETRY_AFTER_CAP`], so a huge hint is a long wait (which
///   stops the retries) and never an overflow.
/// - Nonsense (`soon`, `-1`, `NaN`, an empty value) is no hint: `None`.
///
/// The generic [`HttpClassifier`](super::HttpClassifier) and `invoke-stack`'s Lambda
/// classifier both use it.
///
/// ```
/// use std::time::{Duration, SystemTime};
/// use invoke_layers::retry::{parse_retry_after, RETRY_AFTER_CAP};
/// let now = SystemTime::UNIX_EPOCH + Duration::from_secs(1_700_000_000);
/// assert_eq!(parse_retry_after("2", now), Some(Duration::from_secs(2)));
/// assert_eq!(parse_retry_after("0.5", now), Some(Duration::from_millis(500)));
/// assert_eq!(parse_retry_after("1e20", now), Some(RETRY_AFTER_CAP));
/// assert_eq!(parse_retry_after("Tue, 14 Nov 2023 22:13:25 GMT", now), Some(Duration::from_secs(5)));
/// assert_eq!(parse_retry_after("-1", now), None);
/// ```
pub fn parse_retry_after(value: &str, now: SystemTime) -> Option<Duration> {
    let value = value.trim();
    if value.is_empty() {
        return None;
    }
    if value.bytes().all(|b| b.is_ascii_digit()) {
        // Digits only: an integer too long for u64 is still a (capped) wait.
        let secs = value.parse::<u64>().unwrap_or(u64::MAX);
        return Some(Duration::from_secs(secs).min(RETRY_AFTER_CAP));
    }
    if value.starts_with(|c: char| c.is_ascii_digit() || c == '.') {
        let secs = value.parse::<f64>().ok()?;
        if secs.is_nan() || secs < 0.0 {
            return None;
        }
        // A number too large for f64 parses as infinity: the longest wait, too.
        return Some(if secs >= RETRY_AFTER_CAP.as_secs_f64() {
            RETRY_AFTER_CAP
        } else {
            Duration::from_secs_f64(secs)
        });
    }
    let at = httpdate::parse_http_date(value).ok()?;
    Some(
        at.duration_since(now)
            .unwrap_or(Duration::ZERO)
            .min(RETRY_AFTER_CAP),
    )
}

/// The `Retry-After` of a response, if it has a usable one.
pub(crate) fn retry_after_header(headers: &http::HeaderMap) -> Option<Duration> {
    let value = headers.get(http::header::RETRY_AFTER)?.to_str().ok()?;
    parse_retry_after(value, SystemTime::now())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_form_parses_or_is_ignored_and_nothing_overflows() {
        let now = SystemTime::UNIX_EPOCH + Duration::from_secs(1_700_000_000);
        let cases: &[(&str, Option<Duration>)] = &[
            ("0", Some(Duration::ZERO)),
            (" 3 ", Some(Duration::from_secs(3))),
            ("0.25", Some(Duration::from_millis(250))),
            ("864000", Some(RETRY_AFTER_CAP)),
            ("99999999999999999999999999", Some(RETRY_AFTER_CAP)),
            ("1e20", Some(RETRY_AFTER_CAP)),
            ("1.8e308", Some(RETRY_AFTER_CAP)),
            (
                "Tue, 14 Nov 2023 22:13:30 GMT",
                Some(Duration::from_secs(10)),
            ),
            (
                "Tuesday, 14-Nov-23 22:13:30 GMT",
                Some(Duration::from_secs(10)),
            ),
            ("Tue Nov 14 22:13:30 2023", Some(Duration::from_secs(10))),
            ("Mon, 13 Nov 2023 00:00:00 GMT", Some(Duration::ZERO)),
            ("Fri, 31 Dec 9999 23:59:59 GMT", Some(RETRY_AFTER_CAP)),
            ("-1", None),
            ("-0.5", None),
            ("NaN", None),
            ("inf", None),
            ("1e999", Some(RETRY_AFTER_CAP)),
            ("", None),
            ("soon", None),
            ("3 seconds", None),
        ];
        for (value, want) in cases {
            assert_eq!(parse_retry_after(value, now), *want, "{value:?}");
        }
    }
}
