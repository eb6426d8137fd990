//! A cache for what the API computes from the database (the health status report, analytics)
//! and for what every replica must see at once (revocations). In-process by default; Redis
//! when `cache.redis_url` is set, so replicas of `tasker serve` share one.
//!
//! A cache is never a reason to fail a request: every backend error is logged, counted and
//! answered as a miss, so a Redis outage degrades to computing from the database. The
//! readiness probe reports the outage.

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;
use tasker_domain::ConfigError;

use chrono::{DateTime, Utc};
use dashmap::DashMap;
use serde::de::DeserializeOwned;
use serde::{Deserialize, Serialize};
use tasker_handler::{Clock, SystemClock};

/// The `[cache]` section of `tasker.toml`.
#[cfg_attr(feature = "schema", derive(schemars::JsonSchema))]
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct CacheSettings {
    /// `redis://host:6379/0` to share the cache between replicas; unset (the default) keeps
    /// it in this process.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub redis_url: Option<String>,
    /// How long a computed report (health status, analytics) is reused, e.g. `15s`.
    pub ttl: String,
    /// Entries the in-process cache holds at most.
    pub max_entries: usize,
    /// How long one Redis command may take before it counts as a miss, e.g. `250ms`.
    pub timeout: String,
    /// Prefix of every Redis key, so several deployments can share one Redis.
    pub key_prefix: String,
}

impl Default for CacheSettings {
    fn default() -> Self {
        Self {
            redis_url: None,
            ttl: "15s".into(),
            max_entries: 10_000,
            timeout: "250ms".into(),
            key_prefix: "tasker:".into(),
        }
    }
}

/// The longest `cache.ttl` and `cache.timeout`.
const MAX_DURATION: Duration = Duration::from_secs(24 * 60 * 60);

impl CacheSettings {
    /// The Redis URL, when one is set (an empty value, as a deployment template may leave it,
    /// counts as unset).
    pub fn redis(&self) -> Option<&str> {
        self.redis_url
            .as_deref()
            .filter(|url| !url.trim().is_empty())
    }

    /// `cache.ttl` as a duration; errors name the key.
    pub fn ttl(&self) -> Result<Duration, ConfigError> {
        duration("cache.ttl", &self.ttl)
    }

    /// `cache.timeout` as a duration; errors name the key.
    pub fn timeout(&self) -> Result<Duration, ConfigError> {
        duration("cache.timeout", &self.timeout).and_then(|d| {
            if d.is_zero() {
                Err(ConfigError::new(
                    "cache.timeout",
                    "cache.timeout must be more than 0",
                ))
            } else {
                Ok(d)
            }
        })
    }

    /// Checks every value; errors name the key.
    pub fn validate(&self) -> Result<(), ConfigError> {
        self.ttl()?;
        self.timeout()?;
        if self.max_entries == 0 {
            return Err(ConfigError::new(
                "cache.max_entries",
                "cache.max_entries must be at least 1",
            ));
        }
        if let Some(url) = self.redis() {
            let scheme_ok = url.starts_with("redis://") || url.starts_with("rediss://");
            if !scheme_ok {
                return Err(ConfigError::new(
                    "cache.redis_url",
                    format!(
                        "cache.redis_url must start with redis:// or rediss://, got `{}`",
                        redact(url)
                    ),
                ));
            }
        }
        Ok(())
    }

    /// The cache these settings describe. Redis is connected lazily: an unreachable Redis at
    /// startup is a degraded cache (and a failing readiness check), not a failed start.
    pub fn build(&self) -> Result<Cache, String> {
        self.validate().map_err(|e| e.to_string())?;
        let timeout = self.timeout().map_err(|e| e.to_string())?;
        let backend: Arc<dyn CacheBackend> = match self.redis() {
            None => Arc::new(MemoryCache::new(self.max_entries)),
            #[cfg(feature = "redis")]
            Some(url) => Arc::new(redis_backend::RedisCache::new(url)?),
            #[cfg(not(feature = "redis"))]
            Some(_) => {
                return Err(
                    "cache.redis_url is set but this build has no Redis support (feature `redis` of tasker-api)"
                        .into(),
                );
            }
        };
        Ok(Cache::new(backend)
            .prefix(self.key_prefix.clone())
            .timeout(timeout))
    }
}

fn duration(key: &str, text: &str) -> Result<Duration, ConfigError> {
    let parsed = tasker_auth::parse_duration(text)
        .map_err(|err| ConfigError::new(key, format!("{key}: {err}")))?;
    if parsed > MAX_DURATION {
        return Err(ConfigError::new(
            key,
            format!("{key} must be at most 24h, got `{text}`"),
        ));
    }
    Ok(parsed)
}

/// A URL with its password hidden, for messages.
fn redact(url: &str) -> String {
    match (url.find("://"), url.rfind('@')) {
        (Some(scheme), Some(at)) if at > scheme => {
            format!("{}://***@{}", &url[..scheme], &url[at + 1..])
        }
        _ => url.to_owned(),
    }
}

/// Why a backend could not answer.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{0}")]
pub struct CacheError(pub String);

/// Where cached values live. Values are opaque bytes with a time to live.
#[async_trait::async_trait]
pub trait CacheBackend: Send + Sync + 'static {
    /// `memory` or `redis`: what the readiness check and the status report name.
    fn kind(&self) -> &'static str;

    /// Whether other processes see what this one writes (so a revocation reaches them).
    fn is_shared(&self) -> bool;

    /// The value under `key`, unless it is missing or expired.
    async fn get(&self, key: &str) -> Result<Option<Vec<u8>>, CacheError>;

    /// Stores `value` under `key` for `ttl`.
    async fn set(&self, key: &str, value: &[u8], ttl: Duration) -> Result<(), CacheError>;

    /// Removes `key`.
    async fn delete(&self, key: &str) -> Result<(), CacheError>;

    /// Whether the backend answers.
    async fn ping(&self) -> Result<(), CacheError>;
}

/// How a cache has answered since it was built: for `/health/status`.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize)]
pub struct CacheCounters {
    /// Values found.
    pub hits: u64,
    /// Values missing or expired.
    pub misses: u64,
    /// Backend errors and timeouts, each answered as a miss (or a skipped write).
    pub errors: u64,
}

#[derive(Debug, Default)]
struct Counters {
    hits: AtomicU64,
    misses: AtomicU64,
    errors: AtomicU64,
}

/// A handle on a cache backend: namespaced keys, JSON values, a time limit per command, and
/// failures turned into misses. Cheap to clone.
#[derive(Clone)]
pub struct Cache {
    backend: Arc<dyn CacheBackend>,
    prefix: String,
    timeout: Duration,
    counters: Arc<Counters>,
}

impl std::fmt::Debug for Cache {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Cache")
            .field("kind", &self.backend.kind())
            .field("prefix", &self.prefix)
            .field("timeout", &self.timeout)
            .finish_non_exhaustive()
    }
}

impl Default for Cache {
    /// An in-process cache of 10,000 entries.
    fn default() -> Self {
        Self::new(Arc::new(MemoryCache::new(10_000)))
    }
}

impl Cache {
    /// A handle on `backend`, with no key prefix and a 250 ms time limit per command.
    pub fn new(backend: Arc<dyn CacheBackend>) -> Self {
        Self {
            backend,
            prefix: String::new(),
            timeout: Duration::from_millis(250),
            counters: Arc::default(),
        }
    }

    /// Prefixes every key (Redis shared by several deployments).
    pub fn prefix(mut self, prefix: impl Into<String>) -> Self {
        self.prefix = prefix.into();
        self
    }

    /// The time limit of one backend command; past it the command counts as a miss.
    pub fn timeout(mut self, timeout: Duration) -> Self {
        self.timeout = timeout;
        self
    }

    /// `memory` or `redis`.
    pub fn kind(&self) -> &'static str {
        self.backend.kind()
    }

    /// Whether other processes share this cache.
    pub fn is_shared(&self) -> bool {
        self.backend.is_shared()
    }

    /// Hits, misses and errors so far.
    pub fn counters(&self) -> CacheCounters {
        CacheCounters {
            hits: self.counters.hits.load(Ordering::Relaxed),
            misses: self.counters.misses.load(Ordering::Relaxed),
            errors: self.counters.errors.load(Ordering::Relaxed),
        }
    }

    fn key(&self, key: &str) -> String {
        format!("{}{key}", self.prefix)
    }

    async fn limited<T>(
        &self,
        what: &str,
        key: &str,
        op: impl Future<Output = Result<T, CacheError>>,
    ) -> Option<T> {
        let result = match tokio::time::timeout(self.timeout, op).await {
            Ok(result) => result,
            Err(_) => Err(CacheError(format!(
                "no answer within {} ms",
                self.timeout.as_millis()
            ))),
        };
        match result {
            Ok(value) => Some(value),
            Err(err) => {
                self.counters.errors.fetch_add(1, Ordering::Relaxed);
                tracing::warn!(
                    cache = self.backend.kind(),
                    key,
                    error = %err,
                    "cache {what} failed; carrying on without the cache"
                );
                None
            }
        }
    }

    /// The JSON value under `key`; `None` when it is missing, expired, unreadable or the
    /// backend failed.
    pub async fn get_json<T: DeserializeOwned>(&self, key: &str) -> Option<T> {
        let key = self.key(key);
        let bytes = self
            .limited("read", &key, self.backend.get(&key))
            .await
            .flatten();
        let Some(bytes) = bytes else {
            self.counters.misses.fetch_add(1, Ordering::Relaxed);
            return None;
        };
        match serde_json::from_slice(&bytes) {
            Ok(value) => {
                self.counters.hits.fetch_add(1, Ordering::Relaxed);
                Some(value)
            }
            Err(err) => {
                // Another version's shape, say: recompute rather than fail.
                self.counters.misses.fetch_add(1, Ordering::Relaxed);
                tracing::debug!(key, error = %err, "cached value unreadable; recomputing");
                None
            }
        }
    }

    /// Stores `value` as JSON under `key` for `ttl`; a failure is logged and ignored.
    pub async fn set_json<T: Serialize>(&self, key: &str, value: &T, ttl: Duration) {
        let key = self.key(key);
        let Ok(bytes) = serde_json::to_vec(value) else {
            return;
        };
        self.limited("write", &key, self.backend.set(&key, &bytes, ttl))
            .await;
    }

    /// Stores `value` as JSON under `key` for `ttl`, saying whether the backend took it (for
    /// entries that must not be lost silently, such as sessions).
    pub(crate) async fn put_json<T: Serialize>(&self, key: &str, value: &T, ttl: Duration) -> bool {
        let key = self.key(key);
        let Ok(bytes) = serde_json::to_vec(value) else {
            return false;
        };
        self.limited("write", &key, self.backend.set(&key, &bytes, ttl))
            .await
            .is_some()
    }

    /// Removes `key`, saying whether the backend confirmed it.
    pub(crate) async fn remove(&self, key: &str) -> bool {
        let key = self.key(key);
        self.limited("delete", &key, self.backend.delete(&key))
            .await
            .is_some()
    }

    /// Removes `key`; a failure is logged and ignored.
    pub async fn delete(&self, key: &str) {
        let key = self.key(key);
        self.limited("delete", &key, self.backend.delete(&key))
            .await;
    }

    /// The value under `key`, else what `compute` returns (stored for `ttl` when it
    /// succeeds). The flag says whether the value came from the cache.
    pub async fn get_or_compute<T, E, F, Fut>(
        &self,
        key: &str,
        ttl: Duration,
        compute: F,
    ) -> Result<(T, bool), E>
    where
        T: Serialize + DeserializeOwned,
        F: FnOnce() -> Fut,
        Fut: Future<Output = Result<T, E>>,
    {
        if let Some(value) = self.get_json(key).await {
            return Ok((value, true));
        }
        let value = compute().await?;
        self.set_json(key, &value, ttl).await;
        Ok((value, false))
    }

    /// Whether the backend answers within the time limit: the readiness check.
    pub async fn check(&self) -> Result<(), String> {
        match tokio::time::timeout(self.timeout, self.backend.ping()).await {
            Ok(Ok(())) => Ok(()),
            Ok(Err(err)) => Err(err.0),
            Err(_) => Err(format!("no answer within {} ms", self.timeout.as_millis())),
        }
    }
}

/// The in-process backend: a concurrent map with expiry times read from a [`Clock`], and at
/// most `max_entries` entries (expired ones are dropped first, then the soonest to expire).
pub struct MemoryCache {
    entries: DashMap<String, (DateTime<Utc>, Vec<u8>)>,
    max_entries: usize,
    clock: Arc<dyn Clock>,
}

impl std::fmt::Debug for MemoryCache {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("MemoryCache")
            .field("entries", &self.entries.len())
            .field("max_entries", &self.max_entries)
            .finish_non_exhaustive()
    }
}

impl MemoryCache {
    /// At most `max_entries` entries, on the wall clock.
    pub fn new(max_entries: usize) -> Self {
        Self::with_clock(max_entries, Arc::new(SystemClock))
    }

    /// At most `max_entries` entries, expiring by `clock`.
    pub fn with_clock(max_entries: usize, clock: Arc<dyn Clock>) -> Self {
        Self {
            entries: DashMap::new(),
            max_entries: max_entries.max(1),
            clock,
        }
    }

    /// Entries held, expired ones included until they are swept.
    pub fn len(&self) -> usize {
        self.entries.len()
    }

    /// Whether it holds nothing.
    pub fn is_empty(&self) -> bool {
        self.entries.is_empty()
    }

    /// Makes room for one more entry.
    fn make_room(&self, now: DateTime<Utc>) {
        if self.entries.len() < self.max_entries {
            return;
        }
        self.entries.retain(|_, (expires, _)| *expires > now);
        while self.entries.len() >= self.max_entries {
            let soonest = self
                .entries
                .iter()
                .min_by_key(|entry| entry.value().0)
                .map(|entry| entry.key().clone());
            match soonest {
                Some(key) => {
                    self.entries.remove(&key);
                }
                None => break,
            }
        }
    }
}

#[async_trait::async_trait]
impl CacheBackend for MemoryCache {
    fn kind(&self) -> &'static str {
        "memory"
    }

    fn is_shared(&self) -> bool {
        false
    }

    async fn get(&self, key: &str) -> Result<Option<Vec<u8>>, CacheError> {
        let now = self.clock.now();
        let found = self
            .entries
            .get(key)
            .map(|entry| (entry.value().0, entry.value().1.clone()));
        match found {
            Some((expires, value)) if expires > now => Ok(Some(value)),
            Some(_) => {
                self.entries
                    .remove_if(key, |_, (expires, _)| *expires <= now);
                Ok(None)
            }
            None => Ok(None),
        }
    }

    async fn set(&self, key: &str, value: &[u8], ttl: Duration) -> Result<(), CacheError> {
        let now = self.clock.now();
        let expires = tasker_domain::duration::saturating_add(now, ttl);
        if !self.entries.contains_key(key) {
            self.make_room(now);
        }
        self.entries
            .insert(key.to_owned(), (expires, value.to_vec()));
        Ok(())
    }

    async fn delete(&self, key: &str) -> Result<(), CacheError> {
        self.entries.remove(key);
        Ok(())
    }

    async fn ping(&self) -> Result<(), CacheError> {
        Ok(())
    }
}

#[cfg(feature = "redis")]
mod redis_backend {
    use std::time::{Duration, Instant};

    use redis::AsyncCommands as _;
    use redis::aio::{ConnectionManager, ConnectionManagerConfig};
    use tokio::sync::Mutex;

    use super::{CacheBackend, CacheError};

    /// Redis, shared by every replica. The connection is opened on first use and reopened
    /// after a failure, so a Redis that is down at startup or restarts later costs misses,
    /// not a restart of Tasker.
    pub(super) struct RedisCache {
        client: redis::Client,
        connection: Mutex<Option<ConnectionManager>>,
        /// When connecting was last tried: no new attempt for [`RECONNECT_PAUSE`] after it (it
        /// failed, or its caller gave up waiting), so an outage costs each request a quick
        /// miss, not a connection timeout.
        tried_at: std::sync::Mutex<Option<Instant>>,
    }

    /// How long after a failed connection attempt the next one waits.
    const RECONNECT_PAUSE: Duration = Duration::from_secs(1);

    impl RedisCache {
        pub(super) fn new(url: &str) -> Result<Self, String> {
            let client = redis::Client::open(url).map_err(|err| {
                format!(
                    "cache.redis_url `{}` is not a Redis URL: {err}",
                    super::redact(url)
                )
            })?;
            Ok(Self {
                client,
                connection: Mutex::new(None),
                tried_at: std::sync::Mutex::new(None),
            })
        }

        async fn connection(&self) -> Result<ConnectionManager, CacheError> {
            let mut held = self.connection.lock().await;
            if let Some(connection) = held.as_ref() {
                return Ok(connection.clone());
            }
            let paused = self
                .tried_at
                .lock()
                .map(|mut at| {
                    let paused = at.is_some_and(|at| at.elapsed() < RECONNECT_PAUSE);
                    if !paused {
                        *at = Some(Instant::now());
                    }
                    paused
                })
                .unwrap_or(false);
            if paused {
                return Err(CacheError(
                    "redis: unreachable at the last attempt; retrying within a second".into(),
                ));
            }
            let config = ConnectionManagerConfig::new()
                .set_number_of_retries(0)
                .set_connection_timeout(Some(Duration::from_secs(2)));
            match ConnectionManager::new_with_config(self.client.clone(), config).await {
                Ok(connection) => {
                    *held = Some(connection.clone());
                    Ok(connection)
                }
                Err(err) => Err(error(err)),
            }
        }

        /// Drops a connection that failed, so the next command opens a new one.
        async fn forget(&self) {
            self.connection.lock().await.take();
        }

        async fn run<T>(
            &self,
            command: impl AsyncFnOnce(&mut ConnectionManager) -> redis::RedisResult<T>,
        ) -> Result<T, CacheError> {
            let mut connection = self.connection().await?;
            match command(&mut connection).await {
                Ok(value) => Ok(value),
                Err(err) => {
                    if err.is_io_error() || err.is_connection_dropped() || err.is_timeout() {
                        self.forget().await;
                    }
                    Err(error(err))
                }
            }
        }
    }

    fn error(err: redis::RedisError) -> CacheError {
        CacheError(format!("redis: {err}"))
    }

    #[async_trait::async_trait]
    impl CacheBackend for RedisCache {
        fn kind(&self) -> &'static str {
            "redis"
        }

        fn is_shared(&self) -> bool {
            true
        }

        async fn get(&self, key: &str) -> Result<Option<Vec<u8>>, CacheError> {
            self.run(async |c| c.get::<_, Option<Vec<u8>>>(key).await)
                .await
        }

        async fn set(&self, key: &str, value: &[u8], ttl: Duration) -> Result<(), CacheError> {
            let millis = u64::try_from(ttl.as_millis()).unwrap_or(u64::MAX).max(1);
            self.run(async |c| c.pset_ex::<_, _, ()>(key, value, millis).await)
                .await
        }

        async fn delete(&self, key: &str) -> Result<(), CacheError> {
            self.run(async |c| c.del::<_, ()>(key).await).await
        }

        async fn ping(&self) -> Result<(), CacheError> {
            self.run(async |c| redis::cmd("PING").query_async::<String>(c).await)
                .await
                .map(|_| ())
        }
    }
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use chrono::TimeZone as _;
    use tasker_handler::ManualClock;

    use super::*;

    fn clock() -> ManualClock {
        ManualClock::new(Utc.with_ymd_and_hms(2026, 1, 1, 0, 0, 0).unwrap())
    }

    #[tokio::test]
    async fn entries_expire_on_the_clock_given() {
        let clock = clock();
        let cache = Cache::new(Arc::new(MemoryCache::with_clock(
            10,
            Arc::new(clock.clone()),
        )));
        cache.set_json("a", &1, Duration::from_secs(10)).await;
        assert_eq!(cache.get_json::<i32>("a").await, Some(1));
        clock.advance(Duration::from_secs(9));
        assert_eq!(cache.get_json::<i32>("a").await, Some(1));
        clock.advance(Duration::from_secs(1));
        assert_eq!(cache.get_json::<i32>("a").await, None, "expired at 10 s");
        assert_eq!(
            cache.counters(),
            CacheCounters {
                hits: 2,
                misses: 1,
                errors: 0
            }
        );
    }

    #[tokio::test]
    async fn the_memory_cache_never_holds_more_than_its_bound() {
        let clock = clock();
        let memory = Arc::new(MemoryCache::with_clock(3, Arc::new(clock.clone())));
        let cache = Cache::new(memory.clone());
        for (i, ttl) in [30u64, 10, 20, 40, 50].into_iter().enumerate() {
            cache
                .set_json(&format!("k{i}"), &i, Duration::from_secs(ttl))
                .await;
            assert!(memory.len() <= 3, "{} entries", memory.len());
        }
        // The soonest to expire went first: k1 (10 s), then k2 (20 s).
        assert_eq!(cache.get_json::<usize>("k1").await, None);
        assert_eq!(cache.get_json::<usize>("k2").await, None);
        for (key, value) in [("k0", 0), ("k3", 3), ("k4", 4)] {
            assert_eq!(cache.get_json::<usize>(key).await, Some(value), "{key}");
        }
        // Expired entries make room before live ones are evicted.
        clock.advance(Duration::from_secs(35));
        cache.set_json("k5", &5, Duration::from_secs(5)).await;
        assert_eq!(cache.get_json::<usize>("k3").await, Some(3));
        assert_eq!(cache.get_json::<usize>("k4").await, Some(4));
        assert_eq!(cache.get_json::<usize>("k5").await, Some(5));
    }

    #[tokio::test]
    async fn get_or_compute_computes_once_per_ttl_and_never_stores_an_error() {
        let clock = clock();
        let cache = Cache::new(Arc::new(MemoryCache::with_clock(
            10,
            Arc::new(clock.clone()),
        )));
        let calls = AtomicU64::new(0);
        let compute = || async { Ok::<_, String>(calls.fetch_add(1, Ordering::SeqCst) + 1) };
        let ttl = Duration::from_secs(15);
        assert_eq!(
            cache.get_or_compute("r", ttl, compute).await,
            Ok((1, false))
        );
        assert_eq!(cache.get_or_compute("r", ttl, compute).await, Ok((1, true)));
        clock.advance(ttl);
        assert_eq!(
            cache.get_or_compute("r", ttl, compute).await,
            Ok((2, false))
        );
        let failed = cache
            .get_or_compute("e", ttl, || async { Err::<u64, _>("no".to_owned()) })
            .await;
        assert_eq!(failed, Err("no".to_owned()));
        assert_eq!(
            cache.get_json::<u64>("e").await,
            None,
            "errors are not cached"
        );
    }

    /// A backend that fails every command, or never answers.
    struct Broken {
        hang: bool,
    }

    #[async_trait::async_trait]
    impl CacheBackend for Broken {
        fn kind(&self) -> &'static str {
            "broken"
        }
        fn is_shared(&self) -> bool {
            true
        }
        async fn get(&self, _: &str) -> Result<Option<Vec<u8>>, CacheError> {
            self.answer().await.map(|()| None)
        }
        async fn set(&self, _: &str, _: &[u8], _: Duration) -> Result<(), CacheError> {
            self.answer().await
        }
        async fn delete(&self, _: &str) -> Result<(), CacheError> {
            self.answer().await
        }
        async fn ping(&self) -> Result<(), CacheError> {
            self.answer().await
        }
    }

    impl Broken {
        async fn answer(&self) -> Result<(), CacheError> {
            if self.hang {
                std::future::pending::<()>().await;
            }
            Err(CacheError("connection refused".into()))
        }
    }

    #[tokio::test]
    async fn a_failing_or_hanging_backend_is_a_miss_never_an_error() {
        for hang in [false, true] {
            let cache = Cache::new(Arc::new(Broken { hang })).timeout(Duration::from_millis(5));
            let computed = cache
                .get_or_compute("r", Duration::from_secs(1), || async { Ok::<_, ()>(7) })
                .await;
            assert_eq!(computed, Ok((7, false)), "hang: {hang}");
            cache.delete("r").await;
            assert_eq!(
                cache.counters().errors,
                3,
                "read, write and delete failed (hang: {hang})"
            );
            let check = cache.check().await.unwrap_err();
            let expected = if hang {
                "no answer within 5 ms"
            } else {
                "connection refused"
            };
            assert_eq!(check, expected);
        }
    }

    #[test]
    fn settings_errors_name_the_key() {
        let bad = |edit: fn(&mut CacheSettings)| {
            let mut settings = CacheSettings::default();
            edit(&mut settings);
            settings.build().unwrap_err()
        };
        assert!(bad(|s| s.ttl = "soon".into()).starts_with("cache.ttl"));
        assert!(bad(|s| s.ttl = "2d".into()).contains("at most 24h"));
        assert!(bad(|s| s.timeout = "0s".into()).starts_with("cache.timeout"));
        assert!(bad(|s| s.max_entries = 0).starts_with("cache.max_entries"));
        let url = bad(|s| s.redis_url = Some("http://user:pw@host".into()));
        assert!(url.starts_with("cache.redis_url"), "{url}");
        assert!(!url.contains("pw"), "the password is hidden: {url}");
        let built = CacheSettings::default().build().unwrap();
        assert_eq!((built.kind(), built.is_shared()), ("memory", false));
        let empty = CacheSettings {
            redis_url: Some(" ".into()),
            ..CacheSettings::default()
        };
        assert_eq!(empty.build().unwrap().kind(), "memory", "empty means unset");
    }
}
