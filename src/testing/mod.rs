//! A local Lambda endpoint: real HTTP on `127.0.0.1`, the real wire protocol, SigV4
//! checked on every request, and faults on demand (cargo feature `testing`).
//!
//! Use it to test code that calls Lambda without an AWS account: register functions as
//! async closures, point a client at [`LocalLambda::endpoint_url`], script faults, and
//! assert how many times a function really ran.
//!
//! ```
//! use invoke_stack::testing::{Fault, LocalFunction, LocalLambda};
//! use invoke_stack::InvokeClient;
//!
//! # #[tokio::main(flavor = "current_thread")]
//! # async fn main() -> Result<(), Box<dyn std::error::Error>> {
//! let lambda = LocalLambda::builder()
//!     .function("echo", LocalFunction::echo())
//!     .start()
//!     .await?;
//! let client = InvokeClient::builder()
//!     .endpoint_url(lambda.endpoint_url())
//!     .region(lambda.region())
//!     .credentials(lambda.credentials())
//!     .build()?;
//!
//! let resp = client.invoke_json("echo", &serde_json::json!({"hi": 1})).await?;
//! assert_eq!(resp.payload().as_ref(), br#"{"hi":1}"#);
//!
//! lambda.script("echo", [Fault::service_exception()]);
//! let err = client.invoke_json("echo", &1).await.unwrap_err();
//! assert_eq!(err.type_name(), "ServiceException");
//! assert_eq!(lambda.invocations("echo"), 1);
//! # Ok(()) }
//! ```
//!
//! What it implements: the three invocation types (200/202/204), versions and aliases
//! (`Qualifier`, `X-Amz-Executed-Version`), `LogType=Tail` (base64 of the last 4 KB of a
//! log with `START`/`END`/`REPORT` lines), `Handled`/`Unhandled` function errors, payload
//! limits (413), invalid requests (400), unknown functions (404), SigV4 verification
//! (403 on a wrong secret, an unknown key or a signature more than 5 minutes off the
//! endpoint's clock, which can be skewed for tests), and the [`Fault`]s.
//!
//! `InvokeWithResponseStream` too: [`StreamFunction`]s yield chunks over time (registered
//! with [`LocalLambdaBuilder::stream_function`]; a plain function answers in one chunk),
//! sent as event-stream frames in HTTP chunks as the client reads them, then
//! `InvokeComplete` with the function error and log tail; [`Fault::Stream`] fails a
//! stream on demand ([`StreamFault`]: stall, close without `InvokeComplete`, cut frame,
//! corrupted CRC, `error` or `exception` message, oversized prelude, reset), and the
//! other faults (throttles, 5xx, hangs) apply before the stream as for `Invoke`.

mod fault;
mod function;
mod server;
mod stream;
mod verify;

use std::collections::{HashMap, VecDeque};
use std::net::SocketAddr;
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Duration;

use invoke_layers::sigv4::Credentials;
use tokio::sync::watch;

pub use fault::Fault;
pub use function::{FunctionFailure, Invocation, LocalFunction};
pub use stream::{
    ChunkSender, ClientGone, StreamFault, StreamFunction, HTTP_INTEGRATION_CONTENT_TYPE,
};

use crate::model::InvocationType;
use verify::KeyPair;

/// Access key id the endpoint accepts by default.
pub const TEST_ACCESS_KEY_ID: &str = "AKIDLOCALLAMBDA00001";
/// Secret key the endpoint accepts by default.
pub const TEST_SECRET_ACCESS_KEY: &str = "local-lambda-secret-key-not-for-production";
/// Region of the endpoint by default.
pub const TEST_REGION: &str = "us-east-1";
/// Account id used in ARNs by default.
pub const TEST_ACCOUNT_ID: &str = "123456789012";

/// What happened to one request the endpoint received.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum Outcome {
    /// The function ran (synchronously); the status was sent (or the fault applied after).
    Ran,
    /// The event was queued (`Event`, 202); the function runs in the background.
    Queued,
    /// `DryRun` (204): checked, not run.
    DryRun,
    /// Rejected with this status and error code; the function did not run.
    Rejected {
        /// HTTP status.
        status: u16,
        /// Error code.
        code: String,
    },
    /// The connection was reset or left hanging before the function ran.
    Dropped,
}

/// One request the endpoint received.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RequestRecord {
    /// The function name (name part only), if the path named one.
    pub function: Option<String>,
    /// The qualifier that applied, if any.
    pub qualifier: Option<String>,
    /// The invocation type header (default `RequestResponse`).
    pub invocation_type: Option<InvocationType>,
    /// `amz-sdk-invocation-id`, which is the same on every attempt of one operation.
    pub invocation_id: Option<String>,
    /// `amz-sdk-request`, e.g. `attempt=2; max=3`.
    pub attempt: Option<String>,
    /// The fault applied, if any.
    pub fault: Option<Fault>,
    /// What happened.
    pub outcome: Outcome,
}

#[derive(Default)]
struct FaultPlan {
    script: VecDeque<Fault>,
    always: Option<Fault>,
    /// The first N attempts of every operation get this fault.
    each_operation: Option<(u32, Fault)>,
    /// Attempts seen per operation (`amz-sdk-invocation-id`).
    seen: HashMap<String, u32>,
}

pub(crate) struct State {
    region: String,
    account_id: String,
    keys: Vec<KeyPair>,
    verify_signatures: bool,
    clock_skew: Mutex<(bool, Duration)>,
    functions: Mutex<HashMap<String, LocalFunction>>,
    faults: Mutex<HashMap<String, FaultPlan>>,
    records: Mutex<Vec<RequestRecord>>,
    runs: Mutex<HashMap<String, u64>>,
    /// Reserved concurrency per function, and the running count and peak.
    concurrency: Mutex<HashMap<String, Concurrency>>,
}

#[derive(Default)]
pub(crate) struct Concurrency {
    pub limit: Option<usize>,
    pub running: usize,
    pub peak: usize,
    pub throttled: u64,
}

fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    // A panicking handler must not make the endpoint unusable for the rest of a test.
    m.lock().unwrap_or_else(std::sync::PoisonError::into_inner)
}

/// Builder of [`LocalLambda`].
#[derive(Debug)]
pub struct LocalLambdaBuilder {
    region: String,
    account_id: String,
    keys: Vec<(String, String, Option<String>)>,
    verify_signatures: bool,
    functions: Vec<(String, LocalFunction)>,
    bind: SocketAddr,
    backlog: u32,
}

impl LocalLambdaBuilder {
    /// Listens on this address instead of `127.0.0.1:0` (e.g. an address inside a test
    /// network namespace). Port 0 lets the kernel choose.
    pub fn bind(mut self, addr: SocketAddr) -> Self {
        self.bind = addr;
        self
    }
    /// The listen backlog: connections the kernel completes and queues before the
    /// endpoint accepts them (default 1,024, as `tokio::net::TcpListener::bind`; the
    /// kernel caps it at `net.core.somaxconn`). A burst of new connections larger than the
    /// backlog has its SYNs dropped and retried by the clients' kernels 1 s later, then 3 s:
    /// raise it for tests that open thousands of connections at once.
    ///
    /// ```
    /// # use invoke_stack::testing::{LocalFunction, LocalLambda};
    /// # #[tokio::main(flavor = "current_thread")]
    /// # async fn main() -> std::io::Result<()> {
    /// let lambda = LocalLambda::builder()
    ///     .listen_backlog(4096)
    ///     .function("echo", LocalFunction::echo())
    ///     .start()
    ///     .await?;
    /// # let _ = lambda; Ok(()) }
    /// ```
    pub fn listen_backlog(mut self, backlog: u32) -> Self {
        self.backlog = backlog;
        self
    }
    /// The region in ARNs and in the signature scope (default `us-east-1`).
    pub fn region(mut self, region: impl Into<String>) -> Self {
        self.region = region.into();
        self
    }
    /// The account id in ARNs (default `123456789012`).
    pub fn account_id(mut self, account: impl Into<String>) -> Self {
        self.account_id = account.into();
        self
    }
    /// Accept these keys (in addition to or instead of the default test keys; the first
    /// call replaces the defaults). With a session token, requests must carry it.
    pub fn accept_key(
        mut self,
        access_key_id: impl Into<String>,
        secret_access_key: impl Into<String>,
        session_token: Option<String>,
    ) -> Self {
        if self.keys.first().is_some_and(|k| k.0 == TEST_ACCESS_KEY_ID) {
            self.keys.clear();
        }
        self.keys.push((
            access_key_id.into(),
            secret_access_key.into(),
            session_token,
        ));
        self
    }
    /// Check SigV4 on every request (default on).
    pub fn verify_signatures(mut self, yes: bool) -> Self {
        self.verify_signatures = yes;
        self
    }
    /// Registers a streaming function (served by `InvokeWithResponseStream` as chunks,
    /// and by `Invoke` as one response).
    pub fn stream_function(self, name: impl Into<String>, f: StreamFunction) -> Self {
        self.function(name, f.into_local())
    }

    /// Registers a function.
    pub fn function(mut self, name: impl Into<String>, f: LocalFunction) -> Self {
        self.functions.push((name.into(), f));
        self
    }

    /// Binds (by default `127.0.0.1:0`) and starts serving in the background (needs a
    /// tokio runtime).
    pub async fn start(self) -> std::io::Result<LocalLambda> {
        let socket = if self.bind.is_ipv4() {
            tokio::net::TcpSocket::new_v4()?
        } else {
            tokio::net::TcpSocket::new_v6()?
        };
        // As std's and tokio's `TcpListener::bind` on Unix.
        #[cfg(unix)]
        socket.set_reuseaddr(true)?;
        socket.bind(self.bind)?;
        let listener = socket.listen(self.backlog)?;
        let addr = listener.local_addr()?;
        let state = Arc::new(State {
            region: self.region,
            account_id: self.account_id,
            keys: self
                .keys
                .into_iter()
                .map(|(a, s, t)| KeyPair {
                    access_key_id: a,
                    secret_access_key: s,
                    session_token: t,
                })
                .collect(),
            verify_signatures: self.verify_signatures,
            clock_skew: Mutex::new((true, Duration::ZERO)),
            functions: Mutex::new(self.functions.into_iter().collect()),
            faults: Mutex::new(HashMap::new()),
            records: Mutex::new(Vec::new()),
            runs: Mutex::new(HashMap::new()),
            concurrency: Mutex::new(HashMap::new()),
        });
        let (shutdown, shutdown_rx) = watch::channel(false);
        tokio::spawn(server::serve(listener, Arc::clone(&state), shutdown_rx));
        Ok(LocalLambda {
            addr,
            state,
            shutdown,
        })
    }
}

/// A running local Lambda endpoint. Dropping it stops the server and closes its
/// connections.
pub struct LocalLambda {
    addr: SocketAddr,
    state: Arc<State>,
    shutdown: watch::Sender<bool>,
}

impl std::fmt::Debug for LocalLambda {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("LocalLambda")
            .field("addr", &self.addr)
            .field("region", &self.state.region)
            .finish_non_exhaustive()
    }
}

impl Drop for LocalLambda {
    fn drop(&mut self) {
        let _ = self.shutdown.send(true);
    }
}

impl LocalLambda {
    /// Starts a builder with the default test keys and no functions.
    pub fn builder() -> LocalLambdaBuilder {
        LocalLambdaBuilder {
            region: TEST_REGION.to_owned(),
            account_id: TEST_ACCOUNT_ID.to_owned(),
            keys: vec![(
                TEST_ACCESS_KEY_ID.to_owned(),
                TEST_SECRET_ACCESS_KEY.to_owned(),
                None,
            )],
            verify_signatures: true,
            functions: Vec::new(),
            bind: SocketAddr::from(([127, 0, 0, 1], 0)),
            backlog: 1024,
        }
    }

    /// The socket address it listens on.
    pub fn addr(&self) -> SocketAddr {
        self.addr
    }
    /// `http://127.0.0.1:PORT`.
    pub fn endpoint_url(&self) -> String {
        format!("http://{}", self.addr)
    }
    /// The region requests must be signed for.
    pub fn region(&self) -> &str {
        &self.state.region
    }
    /// The account id used in ARNs.
    pub fn account_id(&self) -> &str {
        &self.state.account_id
    }
    /// The first accepted key pair as credentials.
    pub fn credentials(&self) -> Credentials {
        let (key, secret, token) = self
            .state
            .keys
            .first()
            .map(|k| {
                (
                    k.access_key_id.clone(),
                    k.secret_access_key.clone(),
                    k.session_token.clone(),
                )
            })
            .unwrap_or_default();
        Credentials::new(key, secret, token, None, "local-lambda")
    }
    /// The full ARN of a function of this endpoint.
    pub fn function_arn(&self, name: &str) -> String {
        format!(
            "arn:aws:lambda:{}:{}:function:{name}",
            self.state.region, self.state.account_id
        )
    }

    /// Registers (or replaces) a function.
    pub fn register(&self, name: impl Into<String>, f: LocalFunction) {
        lock(&self.state.functions).insert(name.into(), f);
    }

    /// Appends faults to a function's script: each request takes the next one.
    pub fn script(&self, function: &str, faults: impl IntoIterator<Item = Fault>) {
        lock(&self.state.faults)
            .entry(function.to_owned())
            .or_default()
            .script
            .extend(faults);
    }

    /// Applies a fault to every request of a function once its script is empty
    /// (`None` to stop).
    pub fn always(&self, function: &str, fault: Option<Fault>) {
        lock(&self.state.faults)
            .entry(function.to_owned())
            .or_default()
            .always = fault;
    }

    /// Applies `fault` to the first `attempts` requests of every operation of a function
    /// (operations are told apart by `amz-sdk-invocation-id`; a request without one is an
    /// operation of its own). Scripted faults come first.
    pub fn each_operation(&self, function: &str, attempts: u32, fault: Fault) {
        lock(&self.state.faults)
            .entry(function.to_owned())
            .or_default()
            .each_operation = Some((attempts, fault));
    }

    /// Gives a function a reserved concurrency: a synchronous call that arrives while
    /// `limit` calls of it are running is throttled (429 `TooManyRequestsException`,
    /// reason `ReservedFunctionConcurrentInvocationLimitExceeded`). `None` removes it.
    pub fn reserved_concurrency(&self, function: &str, limit: Option<usize>) {
        lock(&self.state.concurrency)
            .entry(function.to_owned())
            .or_default()
            .limit = limit;
    }

    /// The most synchronous calls of a function that ran at the same time.
    pub fn peak_concurrency(&self, function: &str) -> usize {
        lock(&self.state.concurrency)
            .get(function)
            .map_or(0, |c| c.peak)
    }

    /// How many calls the reserved concurrency throttled.
    pub fn concurrency_throttles(&self, function: &str) -> u64 {
        lock(&self.state.concurrency)
            .get(function)
            .map_or(0, |c| c.throttled)
    }

    /// Sets the endpoint's clock ahead of (`ahead = true`) or behind the real time, to
    /// test clock-skew handling. Its `Date` header follows this clock.
    pub fn set_clock_skew(&self, ahead: bool, by: Duration) {
        *lock(&self.state.clock_skew) = (ahead, by);
    }

    /// How many times a function ran, or was queued to run (`Event`).
    pub fn invocations(&self, function: &str) -> u64 {
        lock(&self.state.records)
            .iter()
            .filter(|r| {
                r.function.as_deref() == Some(function)
                    && matches!(r.outcome, Outcome::Ran | Outcome::Queued)
            })
            .count() as u64
    }

    /// How many times a function's handler has completed (for `Event`, in the background).
    pub fn completed_runs(&self, function: &str) -> u64 {
        lock(&self.state.runs).get(function).copied().unwrap_or(0)
    }

    /// How many requests for a function arrived (every attempt, whatever happened).
    pub fn requests(&self, function: &str) -> u64 {
        lock(&self.state.records)
            .iter()
            .filter(|r| r.function.as_deref() == Some(function))
            .count() as u64
    }

    /// How many times the operation with this `amz-sdk-invocation-id` ran or was queued.
    pub fn invocations_of_operation(&self, invocation_id: &str) -> u64 {
        lock(&self.state.records)
            .iter()
            .filter(|r| {
                r.invocation_id.as_deref() == Some(invocation_id)
                    && matches!(r.outcome, Outcome::Ran | Outcome::Queued)
            })
            .count() as u64
    }

    /// Every request received so far, in order.
    pub fn records(&self) -> Vec<RequestRecord> {
        lock(&self.state.records).clone()
    }
}
