//! Where settings read from "the environment" come from: the process environment by
//! default, or a function given by the caller (tests, custom environments), so nothing
//! has to change the process environment to be tested.

use std::fmt;
use std::sync::Arc;

type Lookup = dyn Fn(&str) -> Option<String> + Send + Sync;

/// A source of environment variables.
///
/// [`Env::process`] (the default) reads the process environment on every lookup;
/// [`Env::from_fn`] and [`Env::from_pairs`] read from anything else. Clones share one
/// source. Its `Debug` shows no values (they may hold secrets).
///
/// ```
/// use invoke_layers::sigv4::Env;
/// let env = Env::from_pairs([("AWS_REGION", "eu-west-1")]);
/// assert_eq!(env.get("AWS_REGION").as_deref(), Some("eu-west-1"));
/// assert_eq!(env.get("AWS_PROFILE"), None);
/// ```
#[derive(Clone)]
pub struct Env {
    lookup: Option<Arc<Lookup>>,
}

impl Default for Env {
    fn default() -> Self {
        Self::process()
    }
}

impl fmt::Debug for Env {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self.lookup {
            None => "Env::process",
            Some(_) => "Env::custom",
        })
    }
}

impl Env {
    /// The process environment (`std::env::var`).
    pub fn process() -> Self {
        Self { lookup: None }
    }

    /// Variables looked up through `lookup`.
    pub fn from_fn(lookup: impl Fn(&str) -> Option<String> + Send + Sync + 'static) -> Self {
        Self {
            lookup: Some(Arc::new(lookup)),
        }
    }

    /// Exactly these variables, and no others.
    pub fn from_pairs<K, V>(pairs: impl IntoIterator<Item = (K, V)>) -> Self
    where
        K: Into<String>,
        V: Into<String>,
    {
        let map: std::collections::HashMap<String, String> = pairs
            .into_iter()
            .map(|(k, v)| (k.into(), v.into()))
            .collect();
        Self::from_fn(move |k| map.get(k).cloned())
    }

    /// True for the process environment.
    pub fn is_process(&self) -> bool {
        self.lookup.is_none()
    }

    /// The variable's value, if it is set and valid Unicode.
    pub fn get(&self, name: &str) -> Option<String> {
        match &self.lookup {
            None => std::env::var(name).ok(),
            Some(f) => f(name),
        }
    }

    /// The variable's value, if it is set, not empty and not only whitespace.
    pub fn non_empty(&self, name: &str) -> Option<String> {
        self.get(name).filter(|v| !v.trim().is_empty())
    }
}
