//! Shared set-up of the integration tests.
#![allow(dead_code)]

use invoke_stack::testing::{LocalFunction, LocalLambda};
use invoke_stack::InvokeClient;

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

/// A client signed with the endpoint's test credentials.
pub fn client_for(lambda: &LocalLambda) -> InvokeClient {
    InvokeClient::builder()
        .endpoint_url(lambda.endpoint_url())
        .region(lambda.region())
        .credentials(lambda.credentials())
        .build()
        .expect("build the client")
}
