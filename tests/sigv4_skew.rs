//! Clock-skew correction over real loopback HTTP against the local endpoint: only
//! clock-skew errors move the signing clock, and never beyond the limit (15 min).

mod common;

use std::time::{Duration, SystemTime};

use bytes::Bytes;

use invoke_stack::testing::{Fault, Outcome};

fn raw_403(date: String, code: Option<&str>, body: &str) -> Fault {
    let mut headers = vec![("date".to_owned(), date)];
    if let Some(code) = code {
        headers.push(("x-amzn-ErrorType".to_owned(), code.to_owned()));
    }
    Fault::Raw {
        status: 403,
        headers,
        body: Bytes::from(body.to_owned()),
    }
}

/// The issue's reproductions: a 403 from something in the path (a proxy, a gateway)
/// with a `Date` far off. Before, the next request was signed for that date and the
/// endpoint rejected it; now the clock stays where it is.
#[tokio::test]
async fn rejections_that_are_not_clock_skew_errors_do_not_move_the_clock() {
    let _secrets = common::watch_secrets();
    let (lambda, _) = common::echo_endpoint().await;
    let client = common::builder_for(&lambda)
        .max_attempts(1)
        .build()
        .unwrap();
    let in_3_days = httpdate::fmt_http_date(SystemTime::now() + Duration::from_secs(3 * 86_400));
    let faults = [
        raw_403(in_3_days, None, ""),
        raw_403(
            "Fri, 31 Dec 9999 23:59:59 GMT".to_owned(),
            Some("AccessDeniedException"),
            r#"{"Message":"denied"}"#,
        ),
    ];
    for fault in faults {
        lambda.script("echo", [fault]);
        let err = client.invoke_json("echo", &1).await.unwrap_err();
        assert_eq!(err.as_api().unwrap().status(), 403);
        // Signed with the local time, the next request goes through.
        let resp = client.invoke_json("echo", &2).await.unwrap();
        assert_eq!(resp.payload().as_ref(), b"2");
    }
}

/// A real clock-skew error from an endpoint 12 minutes ahead: learned, and the retry
/// goes through.
#[tokio::test]
async fn skew_within_the_limit_is_corrected_after_one_rejection() {
    let _secrets = common::watch_secrets();
    let (lambda, client) = common::echo_endpoint().await;
    lambda.set_clock_skew(true, Duration::from_secs(12 * 60));
    let resp = client.invoke_json("echo", &2).await.unwrap();
    assert_eq!(resp.payload().as_ref(), b"2");
    let records = lambda.records();
    assert_eq!(records.len(), 2);
    assert_eq!(
        records[0].outcome,
        Outcome::Rejected {
            status: 403,
            code: "InvalidSignatureException".into()
        }
    );
}

/// An endpoint whose clock is a day ahead: the clock-skew errors are not believed, each
/// refusal is logged at WARN with numbers only, and the call fails with the clock-skew
/// error instead of being signed for tomorrow.
#[tokio::test]
async fn skew_beyond_the_limit_is_refused_and_logged() {
    let (capture, _guard) = common::capture::start();
    let (lambda, client) = common::echo_endpoint().await;
    lambda.set_clock_skew(true, Duration::from_secs(86_400));
    let err = client.invoke_json("echo", &1).await.unwrap_err();
    let api = err.as_api().unwrap();
    assert!(api.is_clock_skew(), "{api}");
    // Nothing was corrected, so signing again would fail the same way: not retried.
    let records = lambda.records();
    assert_eq!(records.len(), 1, "{records:?}");
    assert_eq!(err.attempts(), 1);
    assert!(!err.to_string().is_empty());
    assert!(records.iter().all(|r| matches!(
        &r.outcome,
        Outcome::Rejected { code, .. } if code == "InvalidSignatureException"
    )));
    let captured = capture.0.lock().unwrap();
    let warnings: Vec<_> = captured
        .events
        .iter()
        .filter(|e| e.level == "WARN" && e.message.contains("clock skew"))
        .collect();
    assert_eq!(warnings.len(), records.len(), "{warnings:?}");
    let field = |name: &str| {
        warnings[0]
            .fields
            .iter()
            .find(|(k, _)| k == name)
            .map(|(_, v)| v.clone())
    };
    assert_eq!(field("code").as_deref(), Some("InvalidSignatureException"));
    assert_eq!(field("limit_secs").as_deref(), Some("900"));
    let offset: i64 = field("offset_secs").unwrap().parse().unwrap();
    assert!((86_399..=86_401).contains(&offset), "{offset}");
}
