//! `/health/status` and the readiness probe's cache and database checks.

use std::time::Duration;

use reqwest::StatusCode;
use serde_json::Value;
use tasker_api::HealthSettings;
use tasker_persistence::testing::on_each_database;

use crate::support::{open_access, serve, serve_api};

fn state_count(body: &Value, table: &str, state: &str) -> u64 {
    body["counts"][table][state].as_u64().unwrap_or(0)
}

/// Every task or step the report counted.
fn total(body: &Value, table: &str) -> u64 {
    body["counts"][table]
        .as_object()
        .unwrap_or_else(|| panic!("no counts in {body}"))
        .values()
        .map(|n| n.as_u64().unwrap())
        .sum()
}

#[tokio::test]
async fn the_status_report_counts_by_state_and_reuses_its_counts_for_the_ttl() {
    on_each_database(|db| async move {
        let server = serve(db, open_access()).await;
        // Both run to the end, so nothing moves while the counts are compared.
        for order in [1, 2] {
            let task = server.create_order(order).await;
            server.drive(task).await;
        }

        let first = server.get("/health/status").await;
        assert_eq!(first.status, StatusCode::OK, "{}", first.body);
        assert_eq!(first.body["status"], "healthy");
        assert_eq!(first.body["reasons"], serde_json::json!([]));
        assert_eq!(first.body["cached"], false);
        assert_eq!(state_count(&first.body, "tasks", "complete"), 2);
        assert_eq!(total(&first.body, "tasks"), 2);
        assert_eq!(state_count(&first.body, "steps", "complete"), 8);
        assert_eq!(total(&first.body, "steps"), 8);
        let backlog = &first.body["counts"]["backlog"];
        for field in ["ready", "waiting", "claimed", "expired_claims"] {
            assert!(backlog[field].is_u64(), "{field} in {backlog}");
        }
        let checks: Vec<&str> = first.body["checks"]
            .as_array()
            .unwrap()
            .iter()
            .map(|c| c["name"].as_str().unwrap())
            .collect();
        assert_eq!(checks, ["database", "schema"]);
        assert_eq!(first.body["cache"]["kind"], "memory");
        assert!(first.body["pool"]["max"].as_u64().unwrap() >= 1);

        // Within the TTL the counts are reused, even though a task was added (the running
        // engine may take it on; only totals are compared from here).
        server.create_order(3).await;
        let second = server.get("/health/status").await;
        assert_eq!(second.body["cached"], true);
        assert_eq!(second.body["counts"], first.body["counts"]);
        assert_eq!(second.body["cache"]["hits"], 1);

        // Past it they are counted again.
        server.clock.advance(Duration::from_secs(15));
        let third = server.get("/health/status").await;
        assert_eq!(third.body["cached"], false);
        assert_eq!(total(&third.body, "tasks"), 3);

        // The same report at the root, where the server chose no authentication.
        let root = server.base.trim_end_matches("/v1").to_owned() + "/health/status";
        let reply = server.client.get(root).send().await.unwrap();
        assert_eq!(reply.status(), StatusCode::OK);
    })
    .await;
}

#[tokio::test]
async fn claims_past_their_lease_beyond_the_threshold_make_the_report_unhealthy() {
    on_each_database(|db| async move {
        let store = db.store.clone();
        let server = serve_api(db, open_access(), |api| {
            api.health(HealthSettings {
                max_expired_claims: 0,
                ..HealthSettings::default()
            })
        })
        .await;
        server.create_order(1).await;
        let now = server.engine.now();
        let claimed = store
            .claim_ready_steps("gone", 1, Duration::from_secs(30), now)
            .await
            .unwrap();
        assert_eq!(claimed.len(), 1);
        assert_eq!(server.get("/health/status").await.body["status"], "healthy");

        // The claimant stopped renewing: 31 s later its lease has lapsed.
        server.clock.advance(Duration::from_secs(31));
        let reply = server.get("/health/status").await;
        assert_eq!(
            reply.status,
            StatusCode::SERVICE_UNAVAILABLE,
            "{}",
            reply.body
        );
        assert_eq!(reply.body["status"], "unhealthy");
        assert_eq!(reply.body["counts"]["backlog"]["expired_claims"], 1);
        let reasons = reply.body["reasons"].as_array().unwrap();
        assert_eq!(reasons.len(), 1, "{reasons:?}");
        assert!(
            reasons[0]
                .as_str()
                .unwrap()
                .starts_with("claims: 1 past their lease"),
            "{reasons:?}"
        );
        assert_eq!(reply.body["thresholds"]["max_expired_claims"], 0);
    })
    .await;
}

/// Needs the `redis` feature (on in workspace builds, where the server enables it).
#[cfg(feature = "redis")]
#[tokio::test]
async fn an_unreachable_shared_cache_fails_readiness_but_never_a_report() {
    use tasker_api::CacheSettings;
    on_each_database(|db| async move {
        // Nothing listens on port 1.
        let cache = CacheSettings {
            redis_url: Some("redis://127.0.0.1:1/0".into()),
            ..CacheSettings::default()
        }
        .build()
        .unwrap();
        let server = serve_api(db, open_access(), |api| {
            api.cache(cache, Duration::from_secs(15))
        })
        .await;
        server.create_order(1).await;
        let ready = server.get("/health/ready").await;
        assert_eq!(
            ready.status,
            StatusCode::SERVICE_UNAVAILABLE,
            "{}",
            ready.body
        );
        let failing: Vec<&Value> = ready.body["checks"]
            .as_array()
            .unwrap()
            .iter()
            .filter(|c| c["ok"] == false)
            .collect();
        assert_eq!(failing.len(), 1, "{}", ready.body);
        assert_eq!(failing[0]["name"], "cache");
        assert!(
            failing[0]["detail"]
                .as_str()
                .unwrap()
                .starts_with("redis unreachable"),
            "{}",
            failing[0]
        );

        // The report is still computed from the database, and says why it is unhealthy.
        let status = server.get("/health/status").await;
        assert_eq!(status.status, StatusCode::SERVICE_UNAVAILABLE);
        assert_eq!(status.body["cached"], false);
        assert_eq!(total(&status.body, "tasks"), 1);
        assert!(status.body["cache"]["errors"].as_u64().unwrap() >= 1);
        assert!(
            status.body["reasons"][0]
                .as_str()
                .unwrap()
                .starts_with("cache: redis unreachable")
        );
        // And every other route works as before.
        assert_eq!(server.get("/tasks").await.status, StatusCode::OK);
    })
    .await;
}

#[cfg(feature = "redis")]
mod redis {
    use tasker_api::CacheSettings;

    use super::*;

    fn redis_url() -> Option<String> {
        std::env::var("TASKER_TEST_REDIS_URL").ok()
    }

    /// Settings with a prefix of this test's own, so runs never see each other's keys.
    fn shared(url: &str) -> CacheSettings {
        CacheSettings {
            redis_url: Some(url.to_owned()),
            key_prefix: format!("tasker-test:{}:", uuid::Uuid::new_v4()),
            ..CacheSettings::default()
        }
    }

    #[tokio::test]
    async fn replicas_share_the_report_through_redis() {
        let Some(url) = redis_url() else { return };
        on_each_database(move |db| {
            let settings = shared(&url);
            async move {
                let one = serve_api(db, open_access(), |api| {
                    api.cache(settings.build().unwrap(), Duration::from_secs(60))
                })
                .await;
                let two = one
                    .replica(open_access(), |api| {
                        api.cache(settings.build().unwrap(), Duration::from_secs(60))
                    })
                    .await;
                one.create_order(1).await;
                let ready = one.get("/health/ready").await;
                assert_eq!(ready.status, StatusCode::OK, "{}", ready.body);
                assert_eq!(ready.body["checks"][2]["name"], "cache");
                assert_eq!(ready.body["checks"][2]["detail"], "redis reachable");

                let first = one.get("/health/status").await;
                assert_eq!(first.body["cached"], false);
                assert_eq!(first.body["cache"]["shared"], true);
                let other = two.get("/health/status").await;
                assert_eq!(other.body["cached"], true, "computed by the other replica");
                assert_eq!(other.body["counts"], first.body["counts"]);
            }
        })
        .await;
    }
}

/// A TCP relay in front of the database that a test can cut and restore: an outage without
/// stopping the database server.
struct Outage {
    address: std::net::SocketAddr,
    up: std::sync::Arc<std::sync::atomic::AtomicBool>,
    links: std::sync::Arc<std::sync::Mutex<Vec<tokio::task::JoinHandle<()>>>>,
}

impl Outage {
    async fn in_front_of(upstream: String) -> Self {
        use std::sync::atomic::Ordering;
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let address = listener.local_addr().unwrap();
        let up = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(true));
        let links = std::sync::Arc::new(std::sync::Mutex::new(Vec::new()));
        let (accept_up, accept_links) = (up.clone(), links.clone());
        tokio::spawn(async move {
            while let Ok((mut client, _)) = listener.accept().await {
                if !accept_up.load(Ordering::SeqCst) {
                    drop(client);
                    continue;
                }
                let upstream = upstream.clone();
                let link = tokio::spawn(async move {
                    if let Ok(mut server) = tokio::net::TcpStream::connect(&upstream).await {
                        tokio::io::copy_bidirectional(&mut client, &mut server)
                            .await
                            .ok();
                    }
                });
                accept_links.lock().unwrap().push(link);
            }
        });
        Self { address, up, links }
    }

    /// Drops every open connection and refuses new ones.
    fn cut(&self) {
        self.up.store(false, std::sync::atomic::Ordering::SeqCst);
        for link in self.links.lock().unwrap().drain(..) {
            link.abort();
        }
    }

    fn restore(&self) {
        self.up.store(true, std::sync::atomic::Ordering::SeqCst);
    }
}

/// `postgres://user@host:port/db` with `host:port` replaced by `address`.
fn through(url: &str, address: std::net::SocketAddr) -> (String, String) {
    let (scheme, rest) = url.split_once("://").unwrap();
    let (userinfo, rest) = rest.rsplit_once('@').map_or(("", rest), |(u, r)| (u, r));
    let (authority, path) = rest.split_once('/').unwrap();
    let at = if userinfo.is_empty() { "" } else { "@" };
    (
        format!("{scheme}://{userinfo}{at}{address}/{path}"),
        authority.to_owned(),
    )
}

#[tokio::test]
async fn readiness_fails_while_the_database_is_unreachable_and_recovers_without_a_restart() {
    // A network outage needs a network: PostgreSQL only.
    let Some(db) = tasker_persistence::testing::TestDatabase::postgres().await else {
        return;
    };
    let (_, upstream) = through(&db.url, "127.0.0.1:1".parse().unwrap());
    let outage = Outage::in_front_of(upstream).await;
    let (url, _) = through(&db.url, outage.address);
    let store = tasker_persistence::Store::connect(
        &url,
        &tasker_persistence::ConnectOptions {
            max_connections: 2,
            acquire_timeout: Duration::from_secs(1),
            migrate: false,
            ..Default::default()
        },
    )
    .await
    .unwrap();
    let server = crate::support::serve_store(store, url, Some(db), open_access(), |api| api).await;
    assert_eq!(server.get("/health/ready").await.status, StatusCode::OK);

    outage.cut();
    let down = server.get("/health/ready").await;
    assert_eq!(
        down.status,
        StatusCode::SERVICE_UNAVAILABLE,
        "{}",
        down.body
    );
    assert_eq!(down.body["checks"][0]["name"], "database");
    assert_eq!(down.body["checks"][0]["ok"], false);
    assert!(
        down.body["checks"][0]["detail"]
            .as_str()
            .unwrap()
            .starts_with("unreachable"),
        "{}",
        down.body
    );
    let status = server.get("/health/status").await;
    assert_eq!(status.status, StatusCode::SERVICE_UNAVAILABLE);
    assert_eq!(
        status.body["counts"],
        Value::Null,
        "nothing to count without a database"
    );

    outage.restore();
    let back = server.get("/health/ready").await;
    assert_eq!(back.status, StatusCode::OK, "{}", back.body);
    assert_eq!(server.get("/health/status").await.body["status"], "healthy");
}

mod revocations {
    use std::sync::Arc;

    use tasker_api::{Cache, DatabaseRevocations, MemoryCache};
    use tasker_auth::RevocationList as _;
    use tasker_engine::{Clock as _, ManualClock};

    use super::*;

    #[tokio::test]
    async fn a_revocation_is_seen_by_other_processes_within_the_ttl() {
        on_each_database(|db| async move {
            let clock = ManualClock::new(chrono::Utc::now());
            let cache = |clock: &ManualClock| {
                Cache::new(Arc::new(MemoryCache::with_clock(
                    100,
                    Arc::new(clock.clone()),
                )))
            };
            let ttl = Duration::from_secs(15);
            let here = DatabaseRevocations::new(db.store.clone(), cache(&clock), ttl);
            // Another process: its own in-process cache.
            let there = DatabaseRevocations::new(db.store.clone(), cache(&clock), ttl);
            assert!(!here.is_revoked("t-1").await.unwrap());
            assert!(
                !there.is_revoked("t-1").await.unwrap(),
                "cached as not revoked"
            );

            let expires = clock.now() + chrono::Duration::hours(1);
            let row = here
                .revoke("t-1", Some(expires), Some("leaked"), clock.now())
                .await
                .unwrap();
            assert_eq!(row.reason.as_deref(), Some("leaked"));
            assert!(
                here.is_revoked("t-1").await.unwrap(),
                "at once where it was revoked"
            );
            assert!(
                !there.is_revoked("t-1").await.unwrap(),
                "stale until the TTL passes"
            );
            clock.advance(ttl);
            assert!(there.is_revoked("t-1").await.unwrap(), "seen after the TTL");
            assert!(!there.is_revoked("t-2").await.unwrap());

            // Revoking twice keeps the first record; expired rows are pruned.
            let again = here
                .revoke("t-1", None, Some("again"), clock.now())
                .await
                .unwrap();
            assert_eq!(again.reason.as_deref(), Some("leaked"));
            clock.advance(Duration::from_secs(2 * 3600));
            here.revoke("t-3", None, None, clock.now()).await.unwrap();
            assert_eq!(db.store.revoked_token("t-1").await.unwrap(), None, "pruned");
        })
        .await;
    }

    #[cfg(feature = "redis")]
    #[tokio::test]
    async fn with_redis_every_replica_refuses_a_revoked_token_at_once() {
        use tasker_api::CacheSettings;
        let Ok(url) = std::env::var("TASKER_TEST_REDIS_URL") else {
            return;
        };
        on_each_database(move |db| {
            let settings = CacheSettings {
                redis_url: Some(url.clone()),
                key_prefix: format!("tasker-test:{}:", uuid::Uuid::new_v4()),
                ..CacheSettings::default()
            };
            async move {
                let ttl = Duration::from_secs(60);
                let here =
                    DatabaseRevocations::new(db.store.clone(), settings.build().unwrap(), ttl);
                let there =
                    DatabaseRevocations::new(db.store.clone(), settings.build().unwrap(), ttl);
                assert!(
                    !there.is_revoked("r-1").await.unwrap(),
                    "cached as not revoked"
                );
                here.revoke("r-1", None, None, chrono::Utc::now())
                    .await
                    .unwrap();
                assert!(
                    there.is_revoked("r-1").await.unwrap(),
                    "through the shared cache"
                );
            }
        })
        .await;
    }
}
