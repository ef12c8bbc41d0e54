//! [`TraceLayer`].

use tower_layer::Layer;

use super::service::Trace;

/// The tracing layer; see the [module docs](super).
#[derive(Debug, Clone)]
pub struct TraceLayer<D> {
    describe: D,
}

impl<D> TraceLayer<D> {
    /// Traces calls with `describe`.
    pub fn new(describe: D) -> Self {
        Self { describe }
    }
}

impl<S, D: Clone> Layer<S> for TraceLayer<D> {
    type Service = Trace<S, D>;
    fn layer(&self, inner: S) -> Self::Service {
        Trace::new(inner, self.describe.clone())
    }
}
