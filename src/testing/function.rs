//! Functions hosted by the local endpoint.

use std::collections::{BTreeSet, HashMap};
use std::fmt;
use std::future::Future;
use std::pin::Pin;
use std::sync::{Arc, Mutex};

use bytes::Bytes;

use crate::model::InvocationType;

type BoxFuture = Pin<Box<dyn Future<Output = Result<Bytes, FunctionFailure>> + Send>>;
pub(crate) type Handler = Arc<dyn Fn(Invocation) -> BoxFuture + Send + Sync>;

/// One run of a local function: what the handler receives.
#[derive(Clone)]
pub struct Invocation {
    pub(crate) function_name: String,
    pub(crate) executed_version: String,
    pub(crate) invocation_type: InvocationType,
    pub(crate) payload: Bytes,
    pub(crate) client_context: Option<String>,
    pub(crate) tenant_id: Option<String>,
    pub(crate) request_id: String,
    pub(crate) log: Arc<Mutex<String>>,
}

impl fmt::Debug for Invocation {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Invocation")
            .field("function_name", &self.function_name)
            .field("executed_version", &self.executed_version)
            .field("invocation_type", &self.invocation_type)
            .field("payload_len", &self.payload.len())
            .field("request_id", &self.request_id)
            .finish_non_exhaustive()
    }
}

impl Invocation {
    /// The function's name.
    pub fn function_name(&self) -> &str {
        &self.function_name
    }
    /// The version that runs (`$LATEST`, or the version an alias points to).
    pub fn executed_version(&self) -> &str {
        &self.executed_version
    }
    /// How it was invoked.
    pub fn invocation_type(&self) -> InvocationType {
        self.invocation_type
    }
    /// The request payload.
    pub fn payload(&self) -> &Bytes {
        &self.payload
    }
    /// The decoded client context (JSON text), if one was sent.
    pub fn client_context(&self) -> Option<&str> {
        self.client_context.as_deref()
    }
    /// The tenant id, if one was sent.
    pub fn tenant_id(&self) -> Option<&str> {
        self.tenant_id.as_deref()
    }
    /// The request id Lambda assigned.
    pub fn request_id(&self) -> &str {
        &self.request_id
    }
    /// Writes a line to the function's log (returned by `LogType=Tail`).
    pub fn log(&self, line: impl AsRef<str>) {
        if let Ok(mut log) = self.log.lock() {
            log.push_str(line.as_ref());
            log.push('\n');
        }
    }
}

/// A failed run: becomes `200` with `X-Amz-Function-Error` and an error object payload.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FunctionFailure {
    pub(crate) unhandled: bool,
    pub(crate) error_type: String,
    pub(crate) error_message: String,
}

impl FunctionFailure {
    /// An error the function reported itself (`X-Amz-Function-Error: Handled`).
    pub fn handled(error_type: impl Into<String>, error_message: impl Into<String>) -> Self {
        Self {
            unhandled: false,
            error_type: error_type.into(),
            error_message: error_message.into(),
        }
    }
    /// A failure Lambda detected: crash, timeout, out of memory (`Unhandled`).
    pub fn unhandled(error_type: impl Into<String>, error_message: impl Into<String>) -> Self {
        Self {
            unhandled: true,
            error_type: error_type.into(),
            error_message: error_message.into(),
        }
    }

    pub(crate) fn header(&self) -> &'static str {
        if self.unhandled {
            "Unhandled"
        } else {
            "Handled"
        }
    }

    pub(crate) fn body(&self) -> Bytes {
        Bytes::from(
            serde_json::json!({
                "errorType": self.error_type,
                "errorMessage": self.error_message,
            })
            .to_string(),
        )
    }
}

/// A function of the local endpoint: a handler, published versions and aliases.
///
/// ```
/// use invoke_stack::testing::{FunctionFailure, LocalFunction};
///
/// let f = LocalFunction::new(|inv| async move {
///     inv.log("processing");
///     if inv.payload().is_empty() {
///         return Err(FunctionFailure::handled("EmptyInput", "no payload"));
///     }
///     Ok(inv.payload().clone())
/// })
/// .version("1")
/// .alias("prod", "1");
/// # let _ = f;
/// ```
#[derive(Clone)]
pub struct LocalFunction {
    pub(crate) handler: Handler,
    /// The streaming handler, for a function registered as a [`super::StreamFunction`].
    pub(crate) stream: Option<super::StreamFunction>,
    pub(crate) versions: BTreeSet<String>,
    pub(crate) aliases: HashMap<String, String>,
}

impl fmt::Debug for LocalFunction {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("LocalFunction")
            .field("versions", &self.versions)
            .field("aliases", &self.aliases)
            .finish_non_exhaustive()
    }
}

impl LocalFunction {
    /// A function running `handler` for every invocation.
    pub fn new<F, Fut>(handler: F) -> Self
    where
        F: Fn(Invocation) -> Fut + Send + Sync + 'static,
        Fut: Future<Output = Result<Bytes, FunctionFailure>> + Send + 'static,
    {
        Self {
            handler: Arc::new(move |inv| Box::pin(handler(inv))),
            stream: None,
            versions: BTreeSet::new(),
            aliases: HashMap::new(),
        }
    }

    /// A function that returns its payload.
    pub fn echo() -> Self {
        Self::new(|inv| async move { Ok(inv.payload().clone()) })
    }

    /// Publishes a version (a number such as `"1"`).
    pub fn version(mut self, version: impl Into<String>) -> Self {
        self.versions.insert(version.into());
        self
    }

    /// Adds an alias pointing at a version (or `$LATEST`).
    pub fn alias(mut self, alias: impl Into<String>, version: impl Into<String>) -> Self {
        self.aliases.insert(alias.into(), version.into());
        self
    }

    /// The version a qualifier selects, or `None` when it names nothing.
    pub(crate) fn resolve(&self, qualifier: Option<&str>) -> Option<String> {
        match qualifier {
            None | Some("$LATEST") => Some("$LATEST".to_owned()),
            Some(q) if self.versions.contains(q) => Some(q.to_owned()),
            Some(q) => self.aliases.get(q).cloned(),
        }
    }
}
