//! What signing traces, seen by a subscriber installed for the whole process.
//!
//! Alone in its own test binary on purpose: tracing caches each callsite's interest
//! globally, and a scoped subscriber in a crate's unit tests races with the other tests'
//! threads over that cache (an event can go unseen). Here the one test owns the process.

#![cfg(feature = "sigv4")]

use std::fmt;
use std::sync::{Arc, Mutex};
use std::time::{Duration, SystemTime};

use invoke_layers::sigv4::{sign_request, Credentials, SigningConfig};
use tracing_subscriber::layer::SubscriberExt;

#[derive(Clone, Default)]
struct Text(Arc<Mutex<String>>);

impl<S: tracing::Subscriber> tracing_subscriber::Layer<S> for Text {
    fn on_event(&self, e: &tracing::Event<'_>, _: tracing_subscriber::layer::Context<'_, S>) {
        struct Fields<'a>(&'a mut String);
        impl tracing::field::Visit for Fields<'_> {
            fn record_debug(&mut self, f: &tracing::field::Field, v: &dyn fmt::Debug) {
                self.0.push_str(&format!("{}={v:?}\n", f.name()));
            }
        }
        if let Ok(mut text) = self.0.lock() {
            e.record(&mut Fields(&mut text));
        }
    }
}

/// The fast path traces nothing; aws-sigv4 (which signs other request shapes) traces the
/// canonical request at TRACE. Neither shows the secret key or the session token.
#[test]
fn signing_traces_no_secret() {
    let text = Text::default();
    tracing::subscriber::set_global_default(tracing_subscriber::registry().with(text.clone()))
        .expect("the only subscriber of this process");
    let creds = Credentials::from_keys("AKID", "SECRETKEY", Some("SESSIONTOKEN".into()));
    let cfg = SigningConfig::new("us-east-1");
    let at = SystemTime::UNIX_EPOCH + Duration::from_secs(1_700_000_000);
    let request = |extra: Option<&str>| {
        let mut b = http::Request::post("https://h/p").header("host", "h");
        if let Some(v) = extra {
            b = b.header("x-a", v);
        }
        b.body(bytes::Bytes::new()).expect("request")
    };

    let mut fast = request(None);
    sign_request(&mut fast, &creds, &cfg, at).expect("signed");
    assert!(fast.headers().contains_key("authorization"));
    assert_eq!(text.0.lock().expect("text").as_str(), "");

    // Two spaces in a value: outside the fast path, so aws-sigv4 signs it.
    let mut slow = request(Some("a  b"));
    sign_request(&mut slow, &creds, &cfg, at).expect("signed");
    assert!(slow.headers().contains_key("authorization"));
    let text = text.0.lock().expect("text");
    assert!(text.contains("x-amz-security-token"), "{text}");
    assert!(
        !text.contains("SECRETKEY") && !text.contains("SESSIONTOKEN"),
        "{text}"
    );
}
