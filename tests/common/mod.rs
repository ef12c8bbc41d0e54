//! Shared set-up of the integration tests.
#![allow(dead_code)]

use std::time::Duration;

use invoke_stack::layers::retry::RetryPolicy;
use invoke_stack::testing::{LocalFunction, LocalLambda};
use invoke_stack::{InvokeClient, InvokeClientBuilder};

/// A local endpoint with an `echo` function (versions 1 and 2, alias `live` → 2), and a
/// client for it.
pub async fn echo_endpoint() -> (LocalLambda, InvokeClient) {
    let lambda = LocalLambda::builder()
        .function(
            "echo",
            LocalFunction::echo()
                .version("1")
                .version("2")
                .alias("live", "2"),
        )
        .start()
        .await
        .expect("start the local endpoint");
    let client = client_for(&lambda);
    (lambda, client)
}

/// A client builder signed with the endpoint's test credentials, with the default
/// retry policy but millisecond backoff bases, so tests of retries stay fast.
pub fn builder_for(lambda: &LocalLambda) -> InvokeClientBuilder {
    InvokeClient::builder()
        .endpoint_url(lambda.endpoint_url())
        .region(lambda.region())
        .credentials(lambda.credentials())
        .retry_policy(RetryPolicy {
            transient_base: Duration::from_millis(5),
            throttle_base: Duration::from_millis(5),
            ..RetryPolicy::default()
        })
}

/// A client signed with the endpoint's test credentials (see [`builder_for`]).
pub fn client_for(lambda: &LocalLambda) -> InvokeClient {
    builder_for(lambda).build().expect("build the client")
}

/// What tests capture of tracing: spans (with fields and parent) and events.
pub mod capture {
    use std::fmt::Write as _;
    use std::sync::{Arc, Mutex};

    use tracing::field::{Field, Visit};
    use tracing::span::{Attributes, Id, Record};
    use tracing::{Event, Subscriber};
    use tracing_subscriber::layer::{Context, SubscriberExt};
    use tracing_subscriber::registry::LookupSpan;

    /// One captured span.
    #[derive(Debug, Clone, Default)]
    pub struct SpanData {
        pub name: String,
        pub parent: Option<String>,
        pub fields: Vec<(String, String)>,
    }

    impl SpanData {
        pub fn field(&self, name: &str) -> Option<&str> {
            self.fields
                .iter()
                .rev()
                .find(|(k, _)| k == name)
                .map(|(_, v)| v.as_str())
        }
    }

    /// One captured event.
    #[derive(Debug, Clone, Default)]
    pub struct EventData {
        pub message: String,
        pub span: Option<String>,
        pub level: String,
        pub fields: Vec<(String, String)>,
    }

    #[derive(Default)]
    pub struct Captured {
        pub spans: Vec<SpanData>,
        pub events: Vec<EventData>,
        /// Every field of every span and event, as text: what a log would contain.
        pub text: String,
    }

    #[derive(Clone, Default)]
    pub struct Capture(pub Arc<Mutex<Captured>>);

    struct Fields<'a>(&'a mut Vec<(String, String)>, &'a mut String);
    impl Visit for Fields<'_> {
        fn record_debug(&mut self, field: &Field, value: &dyn std::fmt::Debug) {
            let v = format!("{value:?}");
            let _ = writeln!(self.1, "{}={v}", field.name());
            self.0
                .push((field.name().to_owned(), v.trim_matches('"').to_owned()));
        }
        fn record_str(&mut self, field: &Field, value: &str) {
            let _ = writeln!(self.1, "{}={value}", field.name());
            self.0.push((field.name().to_owned(), value.to_owned()));
        }
    }

    struct SpanIndex(usize);

    impl<S> tracing_subscriber::Layer<S> for Capture
    where
        S: Subscriber + for<'a> LookupSpan<'a>,
    {
        fn on_new_span(&self, attrs: &Attributes<'_>, id: &Id, ctx: Context<'_, S>) {
            let mut c = self.0.lock().unwrap();
            let mut data = SpanData {
                name: attrs.metadata().name().to_owned(),
                parent: ctx
                    .span(id)
                    .and_then(|s| s.parent())
                    .map(|p| p.name().to_owned()),
                fields: Vec::new(),
            };
            let mut text = String::new();
            attrs.record(&mut Fields(&mut data.fields, &mut text));
            c.text.push_str(&text);
            c.spans.push(data);
            let index = c.spans.len() - 1;
            if let Some(span) = ctx.span(id) {
                span.extensions_mut().insert(SpanIndex(index));
            }
        }

        fn on_record(&self, id: &Id, values: &Record<'_>, ctx: Context<'_, S>) {
            let Some(span) = ctx.span(id) else { return };
            let Some(index) = span.extensions().get::<SpanIndex>().map(|i| i.0) else {
                return;
            };
            let mut c = self.0.lock().unwrap();
            let mut fields = Vec::new();
            let mut text = String::new();
            values.record(&mut Fields(&mut fields, &mut text));
            c.text.push_str(&text);
            c.spans[index].fields.extend(fields);
        }

        fn on_event(&self, event: &Event<'_>, ctx: Context<'_, S>) {
            let mut data = EventData {
                span: ctx.event_span(event).map(|s| s.name().to_owned()),
                level: event.metadata().level().to_string(),
                ..EventData::default()
            };
            let mut text = String::new();
            event.record(&mut Fields(&mut data.fields, &mut text));
            data.message = data
                .fields
                .iter()
                .find(|(k, _)| k == "message")
                .map(|(_, v)| v.clone())
                .unwrap_or_default();
            let mut c = self.0.lock().unwrap();
            c.text.push_str(&text);
            c.events.push(data);
        }
    }

    /// Captures everything, at TRACE, on this thread (the tests' current-thread runtime).
    pub fn start() -> (Capture, tracing::subscriber::DefaultGuard) {
        let capture = Capture::default();
        let subscriber = tracing_subscriber::registry().with(capture.clone());
        let guard = tracing::subscriber::set_default(subscriber);
        (capture, guard)
    }
}

/// Secrets the tests use: none may appear in anything traced, at any level.
pub const SECRETS: &[&str] = &[
    invoke_stack::testing::TEST_SECRET_ACCESS_KEY,
    "temp-secret",
    "the-token",
    "moto-secret",
    "admin-secret",
    "Signature=",
    "AWS4-HMAC-SHA256",
];

/// Runs the rest of a test under a TRACE capture and checks, when dropped, that no
/// secret was traced.
pub struct SecretsWatch {
    capture: capture::Capture,
    _guard: tracing::subscriber::DefaultGuard,
}

pub fn watch_secrets() -> SecretsWatch {
    let (capture, _guard) = capture::start();
    SecretsWatch { capture, _guard }
}

impl Drop for SecretsWatch {
    fn drop(&mut self) {
        if std::thread::panicking() {
            return;
        }
        let c = self.capture.0.lock().unwrap();
        for secret in SECRETS {
            assert!(!c.text.contains(secret), "a secret ({secret}) was traced");
        }
    }
}
