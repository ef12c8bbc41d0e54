//! A [`SharedStore`] on Redis (or a server that speaks its protocol and runs its Lua
//! scripts: Valkey, KeyDB, Dragonfly), through the `redis` crate's tokio connection
//! manager, which reconnects by itself.
//!
//! - **One round trip per operation**: a call's admission (its rate cells and its lease
//!   together), a renewal, a release. Each is one Lua script (`EVALSHA`, with `EVAL`
//!   when the server does not have it yet), atomic on the server. Times are the server's
//!   (`TIME`), so the processes' clocks do not matter.
//! - **Rates**: GCRA. A cell is one string key holding its theoretical arrival time in
//!   microseconds, expiring when the cell is full again (so idle keys cost no memory).
//! - **Concurrency**: a sorted set per key, a member per lease scored by its expiry in
//!   milliseconds; acquiring removes the expired leases, counts the others and adds one
//!   if there is room. The set expires with its last lease.
//! - **Keys** are `{namespace}:rate:KEY`, `{namespace}:rate-global` and
//!   `{namespace}:conc:KEY`: the braces are a Redis Cluster hash tag, so all keys of one
//!   namespace live on one node and a script may touch several.
//!
//! ```no_run
//! use invoke_layers::rate_limit::{redis::RedisStore, store::SharedLimits, Rate, RateLimitLayer};
//! let store = RedisStore::open("redis://127.0.0.1:6379/", "orders-workers")?;
//! let layer = RateLimitLayer::builder()
//!     .per_key(Rate::per_second(50))
//!     .concurrency_per_key(8)
//!     .shared(SharedLimits::new(store))
//!     .build()?;
//! # Ok::<(), Box<dyn std::error::Error>>(())
//! ```

use std::fmt;
use std::sync::Arc;
use std::time::Duration;

use ::redis::aio::{ConnectionManager, ConnectionManagerConfig};
use ::redis::{Client, Script};
use tokio::sync::OnceCell;

use super::store::{Admission, CellSpec, LeaseSpec, SharedStore, StoreError, StoreFuture};

/// A call's admission: ARGV[1] rate cells (KEYS[1..n]; per cell in ARGV, the interval
/// and the tolerance `interval × (burst − 1)` in microseconds), and, if KEYS[n + 1] is
/// given, a lease ARGV[2n + 4] on one of ARGV[2n + 2] slots of that sorted set for
/// ARGV[2n + 3] milliseconds. All or nothing: returns 0 when taken, -1 when every slot
/// is leased, else the microseconds until every cell has one.
const ADMIT: &str = r"
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000000 + tonumber(t[2])
local now_ms = math.floor(now / 1000)
local n = tonumber(ARGV[1])
local slots = KEYS[n + 1]
if slots then
  redis.call('ZREMRANGEBYSCORE', slots, '-inf', now_ms)
  if redis.call('ZSCORE', slots, ARGV[2 * n + 4]) == false
     and redis.call('ZCARD', slots) >= tonumber(ARGV[2 * n + 2]) then
    return -1
  end
end
local tats = {}
local wait = 0
for i = 1, n do
  local tolerance = tonumber(ARGV[2 * i + 1])
  local tat = tonumber(redis.call('GET', KEYS[i]) or '0') or 0
  if tat < now then tat = now end
  tats[i] = tat
  local w = tat - tolerance - now
  if w > wait then wait = w end
end
if wait > 0 then return math.ceil(wait) end
for i = 1, n do
  local tat = tats[i] + tonumber(ARGV[2 * i])
  local ttl = math.ceil((tat - now) / 1000) + 1
  redis.call('SET', KEYS[i], string.format('%.3f', tat), 'PX', string.format('%d', ttl))
end
if slots then
  local ttl = tonumber(ARGV[2 * n + 3])
  redis.call('ZADD', slots, string.format('%d', now_ms + ttl), ARGV[2 * n + 4])
  -- Only ever extended: a shorter TTL of another caller must not expire longer leases.
  if redis.call('PTTL', slots) < ttl then
    redis.call('PEXPIRE', slots, string.format('%d', ttl))
  end
end
return 0
";

/// Extends lease ARGV[2] of KEYS[1] to ARGV[1] milliseconds from now, if it has not
/// expired.
const RENEW: &str = r"
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
local ttl = tonumber(ARGV[1])
local expiry = redis.call('ZSCORE', KEYS[1], ARGV[2])
if expiry == false or tonumber(expiry) <= now then
  redis.call('ZREM', KEYS[1], ARGV[2])
  return 0
end
redis.call('ZADD', KEYS[1], 'XX', string.format('%d', now + ttl), ARGV[2])
if redis.call('PTTL', KEYS[1]) < ttl then
  redis.call('PEXPIRE', KEYS[1], string.format('%d', ttl))
end
return 1
";

/// The limits' state in Redis; see the [module docs](self). Cloning shares the
/// connection.
#[derive(Clone)]
pub struct RedisStore {
    inner: Arc<Inner>,
}

struct Inner {
    client: Client,
    /// Made on the first call (it needs a tokio runtime), then shared.
    conn: OnceCell<ConnectionManager>,
    prefix: String,
    admit: Script,
    renew: Script,
}

impl fmt::Debug for RedisStore {
    // The URL may hold a password: only the namespace is shown.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("RedisStore")
            .field("prefix", &self.inner.prefix)
            .finish_non_exhaustive()
    }
}

/// A Redis URL that cannot be used.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct InvalidRedisUrl {
    problem: String,
}

impl fmt::Display for InvalidRedisUrl {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "invalid Redis URL: {}", self.problem)
    }
}

impl std::error::Error for InvalidRedisUrl {}

impl RedisStore {
    /// A store at `url` (`redis://[[user]:password@]host[:port][/db]`, `rediss://` is not
    /// built in), with every key under `namespace` (processes that share limits use the
    /// same one). Nothing is connected yet: the first call connects, and a server that
    /// is down then counts as a store failure like any other.
    pub fn open(url: &str, namespace: &str) -> Result<Self, InvalidRedisUrl> {
        // The crate's message does not repeat the URL (which may hold a password).
        let client = Client::open(url).map_err(|e| InvalidRedisUrl {
            problem: format!("{:?}", e.kind()),
        })?;
        Ok(Self {
            inner: Arc::new(Inner {
                client,
                conn: OnceCell::new(),
                prefix: format!("{{{namespace}}}"),
                admit: Script::new(ADMIT),
                renew: Script::new(RENEW),
            }),
        })
    }

    /// The namespace's key prefix, `{namespace}`.
    pub fn prefix(&self) -> &str {
        &self.inner.prefix
    }
}

impl Inner {
    async fn conn(&self) -> Result<ConnectionManager, StoreError> {
        let conn = self
            .conn
            .get_or_try_init(|| async {
                // Our own timeout bounds each call; the manager's keep a call from
                // hanging on a dead socket after that, and its reconnection is quick.
                let config = ConnectionManagerConfig::new()
                    .set_connection_timeout(Some(Duration::from_secs(1)))
                    .set_response_timeout(Some(Duration::from_secs(1)))
                    .set_number_of_retries(2)
                    .set_max_delay(Duration::from_millis(500));
                ConnectionManager::new_lazy_with_config(self.client.clone(), config)
                    .map_err(|e| error(&e))
            })
            .await?;
        Ok(conn.clone())
    }

    fn key(&self, kind: &str, name: &str) -> String {
        format!("{}:{kind}:{name}", self.prefix)
    }
}

/// The store's error: the kind of failure and the server's error code, never the URL.
fn error(e: &::redis::RedisError) -> StoreError {
    let what = if e.is_timeout() {
        "timed out".to_owned()
    } else if e.is_connection_refusal() {
        "connection refused".to_owned()
    } else if e.is_connection_dropped() || e.is_io_error() {
        "connection lost".to_owned()
    } else {
        match e.code() {
            Some(code) => format!("server error {code}"),
            None => format!("{:?}", e.kind()),
        }
    };
    StoreError::new(format!("redis: {what}"))
}

fn micros(d: Duration) -> String {
    format!("{:.3}", d.as_secs_f64() * 1e6)
}

fn millis(d: Duration) -> u64 {
    u64::try_from(d.as_millis()).unwrap_or(u64::MAX).max(1)
}

impl SharedStore for RedisStore {
    fn admit(&self, cells: Vec<CellSpec>, lease: Option<LeaseSpec>) -> StoreFuture<Admission> {
        let inner = Arc::clone(&self.inner);
        Box::pin(async move {
            let mut conn = inner.conn().await?;
            let mut call = inner.admit.prepare_invoke();
            call.arg(cells.len());
            for c in &cells {
                let tolerance = c.interval.saturating_mul(c.burst.saturating_sub(1));
                call.key(format!("{}:{}", inner.prefix, c.name))
                    .arg(micros(c.interval))
                    .arg(micros(tolerance));
            }
            if let Some(l) = &lease {
                call.key(inner.key("conc", &l.key))
                    .arg(l.cap)
                    .arg(millis(l.ttl))
                    .arg(&l.id);
            }
            let answer: i64 = call.invoke_async(&mut conn).await.map_err(|e| error(&e))?;
            Ok(match u64::try_from(answer) {
                Ok(0) => Admission::Admitted,
                Ok(us) => Admission::RateWait(Duration::from_micros(us)),
                Err(_) => Admission::Full,
            })
        })
    }

    fn renew(&self, key: &str, ttl: Duration, lease: &str) -> StoreFuture<bool> {
        let inner = Arc::clone(&self.inner);
        let key = inner.key("conc", key);
        let lease = lease.to_owned();
        Box::pin(async move {
            let mut conn = inner.conn().await?;
            let kept: u8 = inner
                .renew
                .key(key)
                .arg(millis(ttl))
                .arg(lease)
                .invoke_async(&mut conn)
                .await
                .map_err(|e| error(&e))?;
            Ok(kept == 1)
        })
    }

    fn release(&self, key: &str, lease: &str) -> StoreFuture<()> {
        let inner = Arc::clone(&self.inner);
        let key = inner.key("conc", key);
        let lease = lease.to_owned();
        Box::pin(async move {
            let mut conn = inner.conn().await?;
            let _: i64 = ::redis::cmd("ZREM")
                .arg(key)
                .arg(lease)
                .query_async(&mut conn)
                .await
                .map_err(|e| error(&e))?;
            Ok(())
        })
    }
}
