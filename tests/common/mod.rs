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
