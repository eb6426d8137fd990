//! `auth.jwt.jwks_url`: fetching a JWKS document over HTTP(S) into the [`FetchedKeySet`] the
//! JWT authenticator reads. The first fetch happens before the server starts (and a failure
//! stops it); then [`run`] refreshes on `auth.jwt.jwks_refresh`, and early (at most once per
//! [`UNKNOWN_KID_MIN_GAP`]) when a token named a key id the set does not hold. A failed
//! refresh keeps the previous keys; once the last good fetch is older than
//! `auth.jwt.jwks_max_staleness`, the key set refuses to answer and tokens are refused.
//!
//! [`JwksFetcher::refresh_once`] takes "now" as an argument and decides alone whether a fetch
//! is due, so tests drive it directly without sleeping.

use std::sync::{Arc, Mutex};
use std::time::Duration;

use chrono::{DateTime, Utc};
use tasker_auth::JwksUrlSettings;
use tasker_auth::jwt::{FetchedKeySet, KeySet};

/// The shortest gap between two fetches triggered by unknown key ids, so a client sending
/// tokens with made-up `kid`s cannot make the server hammer the identity provider.
pub(crate) const UNKNOWN_KID_MIN_GAP: Duration = Duration::from_secs(30);

/// The largest JWKS document read.
const MAX_DOCUMENT_BYTES: usize = 1024 * 1024;

/// How long one fetch may take.
const FETCH_TIMEOUT: Duration = Duration::from_secs(10);

/// Why a fetch failed; each names the URL.
#[derive(Debug, thiserror::Error)]
pub(crate) enum JwksError {
    /// The request failed (connection, timeout, body).
    #[error("fetching the JWKS document {url} failed: {reason}")]
    Request {
        /// The URL.
        url: String,
        /// Why.
        reason: String,
    },
    /// The server answered with an error status.
    #[error("fetching the JWKS document {url} failed: HTTP {status}")]
    Status {
        /// The URL.
        url: String,
        /// The status.
        status: u16,
    },
    /// The document is too large.
    #[error("the JWKS document {url} is larger than {MAX_DOCUMENT_BYTES} bytes")]
    TooLarge {
        /// The URL.
        url: String,
    },
    /// The document is not a usable JWKS.
    #[error("{0}")]
    Invalid(#[from] tasker_auth::jwt::KeyError),
}

/// What one call of [`JwksFetcher::refresh_once`] did.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Refresh {
    /// Nothing was due.
    NotDue,
    /// A fetch succeeded: how many keys the set holds now, and notes on skipped entries.
    Fetched {
        /// Usable keys.
        keys: usize,
        /// Entries skipped (encryption keys, unsupported types).
        skipped: Vec<String>,
    },
}

#[derive(Debug, Default)]
struct FetchTimes {
    /// The last fetch attempted, successful or not.
    attempted: Option<DateTime<Utc>>,
}

/// Fetches `auth.jwt.jwks_url` into a [`FetchedKeySet`].
#[derive(Debug)]
pub(crate) struct JwksFetcher {
    settings: JwksUrlSettings,
    client: reqwest::Client,
    keys: Arc<FetchedKeySet>,
    times: Mutex<FetchTimes>,
}

impl JwksFetcher {
    /// A fetcher for `settings`, with an empty key set.
    pub(crate) fn new(settings: JwksUrlSettings) -> anyhow::Result<Self> {
        reqwest::Url::parse(&settings.url)
            .map_err(|e| anyhow::anyhow!("auth.jwt.jwks_url `{}`: {e}", settings.url))?;
        let client = reqwest::Client::builder()
            .timeout(FETCH_TIMEOUT)
            .build()
            .map_err(|e| anyhow::anyhow!("auth.jwt.jwks_url: cannot build an HTTP client: {e}"))?;
        let keys = Arc::new(FetchedKeySet::new(
            settings.url.clone(),
            settings.max_staleness,
        ));
        Ok(Self {
            settings,
            client,
            keys,
            times: Mutex::new(FetchTimes::default()),
        })
    }

    /// The key set the JWT authenticator reads.
    pub(crate) fn keys(&self) -> Arc<FetchedKeySet> {
        Arc::clone(&self.keys)
    }

    /// The URL.
    pub(crate) fn url(&self) -> &str {
        &self.settings.url
    }

    /// Fetches now, whatever the schedule, and stores the keys on success (fetched at `now`).
    pub(crate) async fn fetch(&self, now: DateTime<Utc>) -> Result<Refresh, JwksError> {
        self.times
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
            .attempted = Some(now);
        let url = &self.settings.url;
        let request = |reason: reqwest::Error| JwksError::Request {
            url: url.clone(),
            reason: error_chain(&reason),
        };
        let mut response = self.client.get(url).send().await.map_err(request)?;
        if !response.status().is_success() {
            return Err(JwksError::Status {
                url: url.clone(),
                status: response.status().as_u16(),
            });
        }
        let mut body = Vec::new();
        while let Some(chunk) = response.chunk().await.map_err(request)? {
            if body.len() + chunk.len() > MAX_DOCUMENT_BYTES {
                return Err(JwksError::TooLarge { url: url.clone() });
            }
            body.extend_from_slice(&chunk);
        }
        let (set, skipped) = KeySet::from_jwks(&body, url)?;
        let keys = set.keys().len();
        self.keys.update(set, now);
        Ok(Refresh::Fetched { keys, skipped })
    }

    /// Fetches if one is due at `now`: the refresh interval has passed since the last
    /// attempt, or a token named an unknown key id and the last attempt is at least
    /// [`UNKNOWN_KID_MIN_GAP`] old (the request waits otherwise, it is not lost).
    pub(crate) async fn refresh_once(&self, now: DateTime<Utc>) -> Result<Refresh, JwksError> {
        let since_last = {
            let times = self
                .times
                .lock()
                .unwrap_or_else(|poisoned| poisoned.into_inner());
            times
                .attempted
                .map(|at| (now - at).to_std().unwrap_or_default())
        };
        let due = match since_last {
            None => true,
            Some(elapsed) if elapsed >= self.settings.refresh => true,
            Some(elapsed) => elapsed >= UNKNOWN_KID_MIN_GAP && self.keys.take_refresh_request(),
        };
        if !due {
            return Ok(Refresh::NotDue);
        }
        self.fetch(now).await
    }

    /// Whether the keys are past the allowed staleness at `now` (tokens are being refused).
    pub(crate) fn is_stale(&self, now: DateTime<Utc>) -> bool {
        use tasker_auth::jwt::KeySetProvider as _;
        self.keys.key_set(now).is_err()
    }

    /// A log line for a failed refresh: what is kept and until when.
    pub(crate) fn failure_message(&self, error: &JwksError, now: DateTime<Utc>) -> String {
        match self.keys.latest() {
            None => format!("{error}; no keys fetched yet: JWT requests are refused"),
            Some((_, fetched_at)) => {
                let limit = chrono::Duration::from_std(self.settings.max_staleness)
                    .ok()
                    .and_then(|d| fetched_at.checked_add_signed(d))
                    .unwrap_or(DateTime::<Utc>::MAX_UTC);
                if self.is_stale(now) {
                    format!(
                        "{error}; the keys fetched at {fetched_at} are older than auth.jwt.jwks_max_staleness ({} s) since {limit}: JWT requests are refused until a fetch succeeds",
                        self.settings.max_staleness.as_secs()
                    )
                } else {
                    format!(
                        "{error}; keeping the keys fetched at {fetched_at} (usable until {limit})"
                    )
                }
            }
        }
    }
}

/// Every cause of a reqwest error, joined: its `Display` alone omits the interesting part.
fn error_chain(error: &dyn std::error::Error) -> String {
    let mut text = error.to_string();
    let mut source = error.source();
    while let Some(cause) = source {
        text.push_str(": ");
        text.push_str(&cause.to_string());
        source = cause.source();
    }
    text
}

/// Refreshes until the process ends: checks every second whether a fetch is due (cheap: a
/// clock read and an atomic), logs failures and the change to and from staleness.
pub(crate) async fn run(fetcher: Arc<JwksFetcher>) {
    let tick = Duration::from_secs(1);
    let mut was_stale = false;
    loop {
        tokio::time::sleep(tick).await;
        let now = Utc::now();
        match fetcher.refresh_once(now).await {
            Ok(Refresh::NotDue) => {}
            Ok(Refresh::Fetched { keys, skipped }) => {
                tracing::debug!(target: "tasker::auth", url = fetcher.url(), keys, "JWKS refreshed");
                for note in skipped {
                    tracing::warn!(target: "tasker::auth", "JWKS: skipped {note}");
                }
            }
            Err(err) => {
                tracing::warn!(target: "tasker::auth", "{}", fetcher.failure_message(&err, now));
            }
        }
        let stale = fetcher.is_stale(now);
        if stale && !was_stale {
            tracing::error!(
                target: "tasker::auth",
                url = fetcher.url(),
                "JWKS keys are older than auth.jwt.jwks_max_staleness: every JWT is refused until a fetch succeeds"
            );
        } else if was_stale && !stale {
            tracing::warn!(target: "tasker::auth", url = fetcher.url(), "JWKS keys are fresh again");
        }
        was_stale = stale;
    }
}

#[cfg(test)]
mod tests {
    use std::path::PathBuf;

    use axum::http::StatusCode;
    use chrono::TimeZone as _;
    use serde_json::{Value, json};
    use tasker_auth::jwt::{SigningKey, TokenRequest};
    use tasker_auth::{AuthConfig, AuthError, JwtAuthenticator, Rejection, TokenRejection};

    use super::*;

    const OLD: &str = "rsa-2026-01";
    const NEW: &str = "rsa-2026-02";

    fn keys_dir() -> PathBuf {
        PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../tasker-auth/tests/keys")
    }

    /// The committed test JWKS narrowed to these key ids.
    fn jwks(kids: &[&str]) -> String {
        let all: Value =
            serde_json::from_slice(&std::fs::read(keys_dir().join("jwks.json")).unwrap()).unwrap();
        let keys: Vec<Value> = all["keys"]
            .as_array()
            .unwrap()
            .iter()
            .filter(|k| kids.contains(&k["kid"].as_str().unwrap_or_default()))
            .cloned()
            .collect();
        assert_eq!(keys.len(), kids.len(), "every kid is in the test JWKS");
        json!({ "keys": keys }).to_string()
    }

    fn t0() -> DateTime<Utc> {
        Utc.with_ymd_and_hms(2026, 3, 1, 12, 0, 0).unwrap()
    }

    fn at(seconds: i64) -> DateTime<Utc> {
        t0() + chrono::Duration::seconds(seconds)
    }

    /// A token signed at `t0()` for a day by the key with this `kid`.
    fn token(kid: &str) -> String {
        let file = if kid == OLD {
            "rsa-private.pem"
        } else {
            "rsa-other-private.pem"
        };
        let pem = std::fs::read(keys_dir().join(file)).unwrap();
        SigningKey::from_private_pem(&pem, None)
            .unwrap()
            .with_kid(kid)
            .mint(
                &TokenRequest::new("alice", Duration::from_secs(86_400)),
                t0(),
            )
            .unwrap()
    }

    /// A JWKS endpoint whose answer the test swaps.
    struct Server {
        url: String,
        answer: Arc<Mutex<(StatusCode, String)>>,
    }

    impl Server {
        async fn start(document: String) -> Self {
            let answer = Arc::new(Mutex::new((StatusCode::OK, document)));
            let shared = Arc::clone(&answer);
            let app = axum::Router::new().route(
                "/.well-known/jwks.json",
                axum::routing::get(move || {
                    let shared = Arc::clone(&shared);
                    async move { shared.lock().unwrap().clone() }
                }),
            );
            let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
            let address = listener.local_addr().unwrap();
            tokio::spawn(async move { axum::serve(listener, app).await.ok() });
            Self {
                url: format!("http://{address}/.well-known/jwks.json"),
                answer,
            }
        }

        fn serve(&self, status: StatusCode, document: String) {
            *self.answer.lock().unwrap() = (status, document);
        }
    }

    fn settings(url: &str) -> JwksUrlSettings {
        config(url).jwks_url_settings().unwrap().unwrap()
    }

    fn config(url: &str) -> AuthConfig {
        serde_json::from_value(json!({
            "authenticators": ["jwt"],
            "jwt": {
                "algorithms": ["RS256"],
                "jwks_url": url,
                "jwks_refresh": "5m",
                "jwks_max_staleness": 3600,
            },
        }))
        .unwrap()
    }

    /// A fetcher that has fetched once at `t0()`, and the authenticator reading its keys.
    async fn started(server: &Server) -> (JwksFetcher, JwtAuthenticator) {
        let fetcher = JwksFetcher::new(settings(&server.url)).unwrap();
        assert!(matches!(
            fetcher.refresh_once(t0()).await.unwrap(),
            Refresh::Fetched { keys: 1, .. }
        ));
        let verifier = config(&server.url)
            .jwt_authenticator_with(Some(fetcher.keys()))
            .unwrap();
        (fetcher, verifier)
    }

    fn rejection(verifier: &JwtAuthenticator, token: &str, now: DateTime<Utc>) -> TokenRejection {
        match verifier.verify(token, now) {
            Err(AuthError::Rejected(Rejection::Token(rejection))) => rejection,
            other => panic!("expected a token rejection, got {other:?}"),
        }
    }

    #[tokio::test]
    async fn a_rotated_key_is_accepted_and_a_removed_one_refused_after_the_refresh() {
        let server = Server::start(jwks(&[OLD])).await;
        let (fetcher, verifier) = started(&server).await;
        assert_eq!(
            verifier.verify(&token(OLD), at(1)).unwrap().kid.as_deref(),
            Some(OLD)
        );
        assert_eq!(
            rejection(&verifier, &token(NEW), at(1)),
            TokenRejection::UnknownKeyId { kid: NEW.into() }
        );

        // The provider rotates: the new key only. Nothing changes before the interval.
        server.serve(StatusCode::OK, jwks(&[NEW]));
        assert_eq!(fetcher.refresh_once(at(20)).await.unwrap(), Refresh::NotDue);
        assert!(verifier.verify(&token(OLD), at(20)).is_ok());
        assert!(matches!(
            fetcher.refresh_once(at(300)).await.unwrap(),
            Refresh::Fetched { keys: 1, .. }
        ));
        let verified = verifier.verify(&token(NEW), at(301)).unwrap();
        assert_eq!(verified.principal.subject, "alice");
        assert!(
            verified.key_origin.contains(&server.url),
            "{}",
            verified.key_origin
        );
        assert_eq!(
            rejection(&verifier, &token(OLD), at(301)),
            TokenRejection::UnknownKeyId { kid: OLD.into() }
        );
    }

    #[tokio::test]
    async fn an_unknown_kid_brings_the_refresh_forward_at_most_once_per_gap() {
        let server = Server::start(jwks(&[OLD])).await;
        let (fetcher, verifier) = started(&server).await;
        server.serve(StatusCode::OK, jwks(&[OLD, NEW]));
        // Without a hint, nothing is due before the interval.
        assert_eq!(fetcher.refresh_once(at(40)).await.unwrap(), Refresh::NotDue);
        // A token with the new kid is refused, and asks for a refresh...
        assert_eq!(
            rejection(&verifier, &token(NEW), at(40)),
            TokenRejection::UnknownKeyId { kid: NEW.into() }
        );
        // ...which happens at once, the last fetch being older than the gap.
        assert!(matches!(
            fetcher.refresh_once(at(40)).await.unwrap(),
            Refresh::Fetched { keys: 2, .. }
        ));
        assert!(verifier.verify(&token(NEW), at(41)).is_ok());

        // Another unknown kid right after: the request waits for the gap, and is not lost.
        server.serve(StatusCode::OK, jwks(&[NEW]));
        let header = base64_header(json!({"alg": "RS256", "typ": "JWT", "kid": "made-up"}));
        let forged = format!("{header}.{}", token(NEW).split_once('.').unwrap().1);
        assert_eq!(
            rejection(&verifier, &forged, at(45)),
            TokenRejection::UnknownKeyId {
                kid: "made-up".into()
            }
        );
        assert_eq!(fetcher.refresh_once(at(45)).await.unwrap(), Refresh::NotDue);
        assert_eq!(fetcher.refresh_once(at(69)).await.unwrap(), Refresh::NotDue);
        assert!(matches!(
            fetcher.refresh_once(at(70)).await.unwrap(),
            Refresh::Fetched { keys: 1, .. }
        ));
        // Served and consumed: no further early fetch.
        assert_eq!(
            fetcher.refresh_once(at(200)).await.unwrap(),
            Refresh::NotDue
        );
        assert!(matches!(
            fetcher.refresh_once(at(370)).await.unwrap(),
            Refresh::Fetched { .. }
        ));
    }

    fn base64_header(header: Value) -> String {
        use base64::Engine as _;
        base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(header.to_string())
    }

    #[tokio::test]
    async fn failed_refreshes_keep_the_keys_until_they_are_too_stale() {
        let server = Server::start(jwks(&[OLD])).await;
        let (fetcher, verifier) = started(&server).await;
        server.serve(StatusCode::INTERNAL_SERVER_ERROR, "down".into());
        let err = fetcher.refresh_once(at(300)).await.unwrap_err();
        assert_eq!(
            err.to_string(),
            format!("fetching the JWKS document {} failed: HTTP 500", server.url)
        );
        let message = fetcher.failure_message(&err, at(300));
        assert!(
            message.contains("keeping the keys fetched at 2026-03-01 12:00:00 UTC (usable until 2026-03-01 13:00:00 UTC)"),
            "{message}"
        );
        assert!(verifier.verify(&token(OLD), at(300)).is_ok());
        assert!(!fetcher.is_stale(at(3600)));

        // Past the staleness limit every token is refused, and the reason names the URL.
        fetcher.refresh_once(at(3601)).await.unwrap_err();
        assert!(fetcher.is_stale(at(3601)));
        let message = fetcher.failure_message(&err, at(3601));
        assert!(
            message.contains("older than auth.jwt.jwks_max_staleness (3600 s)")
                && message.contains("JWT requests are refused"),
            "{message}"
        );
        match verifier.verify(&token(OLD), at(3601)) {
            Err(err @ AuthError::Unavailable { .. }) => assert_eq!(
                err.to_string(),
                format!(
                    "credentials cannot be checked: keys from {} were last fetched at 2026-03-01 12:00:00 UTC, longer ago than the allowed 3600s",
                    server.url
                )
            ),
            other => panic!("expected the stale key set to refuse, got {other:?}"),
        }

        // The provider recovers: the next due refresh brings the keys back.
        server.serve(StatusCode::OK, jwks(&[OLD]));
        assert!(matches!(
            fetcher.refresh_once(at(3901)).await.unwrap(),
            Refresh::Fetched { .. }
        ));
        assert!(verifier.verify(&token(OLD), at(3902)).is_ok());
    }

    #[tokio::test]
    async fn a_bad_document_or_an_unreachable_url_is_an_error_naming_the_url() {
        let server = Server::start("not json".into()).await;
        let fetcher = JwksFetcher::new(settings(&server.url)).unwrap();
        let err = fetcher.refresh_once(t0()).await.unwrap_err().to_string();
        assert!(
            err.starts_with(&format!("{} is not JSON", server.url)),
            "{err}"
        );
        server.serve(StatusCode::OK, r#"{"keys": []}"#.into());
        let err = fetcher.fetch(t0()).await.unwrap_err().to_string();
        assert_eq!(err, format!("{} has no keys", server.url));
        server.serve(StatusCode::OK, r#"{"issuer": "x"}"#.into());
        let err = fetcher.fetch(t0()).await.unwrap_err().to_string();
        assert_eq!(err, format!("{} has no `keys` list", server.url));
        server.serve(
            StatusCode::OK,
            format!("{{\"keys\": [\"{}\"]}}", "x".repeat(MAX_DOCUMENT_BYTES)),
        );
        let err = fetcher.fetch(t0()).await.unwrap_err().to_string();
        assert_eq!(
            err,
            format!(
                "the JWKS document {} is larger than 1048576 bytes",
                server.url
            )
        );
        assert!(fetcher.keys().latest().is_none(), "nothing bad was stored");

        // Nobody listens on a port just released.
        let closed = {
            let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
            format!("http://{}/jwks.json", listener.local_addr().unwrap())
        };
        let fetcher = JwksFetcher::new(settings(&closed)).unwrap();
        let err = fetcher.fetch(t0()).await.unwrap_err().to_string();
        assert!(
            err.starts_with(&format!("fetching the JWKS document {closed} failed: ")),
            "{err}"
        );
    }
}
