//! Dashboard sessions: a token or API key exchanged at sign-in for a random session id, held
//! in an `HttpOnly` cookie, whose principal is kept server-side in the cache backend (Redis
//! when configured, so every replica sees it) until it expires or the user signs out.
//!
//! A request authenticated by the cookie that changes something must also carry the
//! session's CSRF token in `X-CSRF-Token` (compared in constant time) and must not come from
//! another site (`Origin`, `Sec-Fetch-Site`); otherwise it is refused with 403. Requests with
//! a bearer token or an API key never look at the cookie.

use std::time::Duration;

use axum::http::{HeaderMap, HeaderValue, Method, header};
use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};
use sha2::{Digest as _, Sha256};
use subtle::ConstantTimeEq as _;
use tasker_auth::{AuthMethod, Grant, Permission, Principal};

use crate::error::ApiError;
use crate::state::Shared;

/// The session cookie's name.
pub const COOKIE: &str = "tasker_session";
/// The header carrying the session's CSRF token.
pub const CSRF_HEADER: &str = "x-csrf-token";

/// What the cache holds for one session (keyed by the SHA-256 of its id, so the cache never
/// holds a usable id).
#[derive(Debug, Clone, Serialize, Deserialize)]
pub(crate) struct SessionRecord {
    pub(crate) subject: String,
    /// `open`, `jwt`, `api_key` or `custom`.
    pub(crate) method: String,
    /// The API key's id, or a custom authenticator's name.
    #[serde(default)]
    pub(crate) method_detail: Option<String>,
    pub(crate) permissions: Vec<String>,
    pub(crate) roles: Vec<String>,
    #[serde(default)]
    pub(crate) claims: Map<String, Value>,
    pub(crate) csrf_token: String,
    pub(crate) created_at: DateTime<Utc>,
    pub(crate) expires_at: DateTime<Utc>,
}

impl SessionRecord {
    /// The principal the session stands for, as it was at sign-in.
    pub(crate) fn principal(&self) -> Principal {
        let detail = self.method_detail.clone().unwrap_or_default();
        let method = match self.method.as_str() {
            "open" => AuthMethod::Open,
            "jwt" => AuthMethod::Jwt,
            "api_key" => AuthMethod::ApiKey { key_id: detail },
            _ => AuthMethod::Custom(detail),
        };
        let grants = self
            .permissions
            .iter()
            .filter_map(|g| g.parse::<Grant>().ok());
        Principal::new(self.subject.clone(), method)
            .with_permissions(grants)
            .with_roles(self.roles.clone())
            .with_claims(self.claims.clone())
    }

    /// Whether `headers` carry this session's CSRF token (constant-time comparison).
    pub(crate) fn csrf_matches(&self, headers: &HeaderMap) -> bool {
        let Some(sent) = single(headers, CSRF_HEADER) else {
            return false;
        };
        let expected = self.csrf_token.as_bytes();
        sent.len() == expected.len() && bool::from(sent.ct_eq(expected))
    }
}

/// A new session's id (sent in the cookie, once) and record.
pub(crate) struct NewSession {
    pub(crate) id: String,
    pub(crate) record: SessionRecord,
}

fn random_hex() -> Result<String, ApiError> {
    let mut bytes = [0u8; 32];
    getrandom::fill(&mut bytes)
        .map_err(|_| ApiError::unavailable("no randomness available for a session id"))?;
    Ok(hex::encode(bytes))
}

fn cache_key(id: &str) -> String {
    format!("session:{}", hex::encode(Sha256::digest(id.as_bytes())))
}

/// When the credentials a principal came with stop being valid, if they say: a JWT's `exp`,
/// an API key's `expires_at`.
fn credential_expiry(principal: &Principal) -> Option<DateTime<Utc>> {
    let exp = principal
        .claims
        .get("exp")
        .and_then(Value::as_i64)
        .and_then(|s| DateTime::<Utc>::from_timestamp(s, 0));
    let key = principal
        .claims
        .get("expires_at")
        .and_then(Value::as_str)
        .and_then(|s| s.parse::<DateTime<Utc>>().ok());
    exp.into_iter().chain(key).min()
}

/// Starts a session for `principal` at `now`, lasting the configured time, or less when its
/// credentials expire sooner. 503 when the cache does not take it.
pub(crate) async fn create(
    shared: &Shared,
    principal: &Principal,
    now: DateTime<Utc>,
) -> Result<NewSession, ApiError> {
    let ttl = shared
        .settings
        .session_ttl()
        .unwrap_or(Duration::from_secs(8 * 3600));
    let mut expires_at = tasker_domain::duration::saturating_add(now, ttl);
    if let Some(expiry) = credential_expiry(principal) {
        expires_at = expires_at.min(expiry);
    }
    let lifetime = (expires_at - now)
        .to_std()
        .ok()
        .filter(|d| !d.is_zero())
        .ok_or_else(ApiError::unauthorized)?;
    let (method, method_detail) = match &principal.method {
        AuthMethod::Open => ("open", None),
        AuthMethod::Jwt => ("jwt", None),
        AuthMethod::ApiKey { key_id } => ("api_key", Some(key_id.clone())),
        AuthMethod::Custom(name) => ("custom", Some(name.clone())),
        other => ("custom", Some(other.to_string())),
    };
    let record = SessionRecord {
        subject: principal.subject.clone(),
        method: method.to_owned(),
        method_detail,
        permissions: principal.permissions.iter().map(Grant::to_string).collect(),
        roles: principal.roles.clone(),
        claims: principal.claims.clone(),
        csrf_token: random_hex()?,
        created_at: now,
        expires_at,
    };
    let id = random_hex()?;
    if !shared
        .cache
        .put_json(&cache_key(&id), &record, lifetime)
        .await
    {
        return Err(ApiError::unavailable(
            "the session store is unavailable; try again shortly",
        ));
    }
    tracing::info!(
        target: tasker_auth::AUDIT_TARGET,
        subject = %record.subject,
        expires_at = %record.expires_at,
        "dashboard session started"
    );
    Ok(NewSession { id, record })
}

/// The live session with this id at `now`, if any.
pub(crate) async fn find(shared: &Shared, id: &str, now: DateTime<Utc>) -> Option<SessionRecord> {
    if id.len() != 64 || !id.bytes().all(|b| b.is_ascii_hexdigit()) {
        return None;
    }
    let record: SessionRecord = shared.cache.get_json(&cache_key(id)).await?;
    (record.expires_at > now).then_some(record)
}

/// Ends the session with this id. 503 when the cache does not confirm it.
pub(crate) async fn revoke(shared: &Shared, id: &str) -> Result<(), ApiError> {
    if shared.cache.remove(&cache_key(id)).await {
        Ok(())
    } else {
        Err(ApiError::unavailable(
            "the session store is unavailable; the session was not ended",
        ))
    }
}

fn single<'a>(headers: &'a HeaderMap, name: &str) -> Option<&'a [u8]> {
    let mut values = headers.get_all(name).iter();
    let first = values.next()?;
    values.next().is_none().then(|| first.as_bytes())
}

/// Whether the request carries credentials of its own (a bearer token or an API key), in
/// which case the cookie is never read.
pub(crate) fn has_credentials(headers: &HeaderMap) -> bool {
    headers.contains_key(header::AUTHORIZATION) || headers.contains_key(tasker_auth::API_KEY_HEADER)
}

/// The session id in the request's cookies, if there is one.
pub(crate) fn cookie_id(headers: &HeaderMap) -> Option<String> {
    headers
        .get_all(header::COOKIE)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(';'))
        .filter_map(|pair| pair.trim().split_once('='))
        .find(|(name, _)| *name == COOKIE)
        .map(|(_, value)| value.trim().to_owned())
}

/// Whether a method changes something (and so needs the CSRF token under a session).
pub(crate) fn is_unsafe(method: &Method) -> bool {
    !matches!(*method, Method::GET | Method::HEAD | Method::OPTIONS)
}

/// Whether the browser says the request came from another site: `Sec-Fetch-Site` other than
/// `same-origin` or `none`, or an `Origin` whose host is not the request's `Host`.
pub(crate) fn is_cross_site(headers: &HeaderMap) -> bool {
    if let Some(site) = headers.get("sec-fetch-site")
        && !matches!(site.as_bytes(), b"same-origin" | b"none")
    {
        return true;
    }
    let Some(origin) = headers.get(header::ORIGIN) else {
        return false;
    };
    let origin_host = origin
        .to_str()
        .ok()
        .and_then(|o| o.split_once("://"))
        .map(|(_, host)| host.trim_end_matches('/'));
    let host = headers.get(header::HOST).and_then(|h| h.to_str().ok());
    match (origin_host, host) {
        (Some(origin_host), Some(host)) => !origin_host.eq_ignore_ascii_case(host),
        _ => true,
    }
}

/// Refuses a cookie-authenticated change without the CSRF token or from another site.
pub(crate) fn check_change(
    record: &SessionRecord,
    method: &Method,
    headers: &HeaderMap,
) -> Result<(), ApiError> {
    if !is_unsafe(method) {
        return Ok(());
    }
    if is_cross_site(headers) {
        return Err(ApiError::forbidden(
            "a cross-site request cannot use the dashboard session",
        ));
    }
    if !record.csrf_matches(headers) {
        return Err(ApiError::forbidden(
            "a request authenticated by the session cookie must carry the session's X-CSRF-Token header",
        ));
    }
    Ok(())
}

fn secure(shared: &Shared, headers: &HeaderMap) -> bool {
    shared.settings.secure_cookies
        || headers
            .get("x-forwarded-proto")
            .is_some_and(|v| v.as_bytes().eq_ignore_ascii_case(b"https"))
}

/// The `Set-Cookie` value that stores the session id.
pub(crate) fn set_cookie(
    shared: &Shared,
    headers: &HeaderMap,
    session: &NewSession,
    now: DateTime<Utc>,
) -> HeaderValue {
    let max_age = (session.record.expires_at - now).num_seconds().max(0);
    cookie_header(&session.id, max_age, secure(shared, headers))
}

/// The `Set-Cookie` value that clears the session cookie.
pub(crate) fn clear_cookie(shared: &Shared, headers: &HeaderMap) -> HeaderValue {
    cookie_header("", 0, secure(shared, headers))
}

fn cookie_header(value: &str, max_age: i64, secure: bool) -> HeaderValue {
    let secure = if secure { "; Secure" } else { "" };
    let text =
        format!("{COOKIE}={value}; Path=/; Max-Age={max_age}; HttpOnly; SameSite=Strict{secure}");
    // Hex, digits and fixed ASCII: always a valid header value.
    HeaderValue::from_str(&text).unwrap_or_else(|_| HeaderValue::from_static("tasker_session="))
}

/// Every registered permission the principal holds (through its grants and roles), for the
/// dashboard to show only the actions it may take; the server checks each request again.
pub(crate) fn held_permissions(shared: &Shared, principal: &Principal) -> Vec<String> {
    let policy = shared.access.authorizer().policy();
    Permission::all()
        .filter(|p| policy.decide(principal, *p).is_allowed())
        .map(|p| p.to_string())
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn record() -> SessionRecord {
        SessionRecord {
            subject: "alice".into(),
            method: "api_key".into(),
            method_detail: Some("k1".into()),
            permissions: vec!["tasker.task:*".into(), "bogus".into()],
            roles: vec!["operator".into()],
            claims: Map::new(),
            csrf_token: "a".repeat(64),
            created_at: Utc::now(),
            expires_at: Utc::now(),
        }
    }

    fn headers(pairs: &[(&'static str, &str)]) -> HeaderMap {
        let mut map = HeaderMap::new();
        for (name, value) in pairs {
            map.append(*name, HeaderValue::from_str(value).unwrap());
        }
        map
    }

    #[test]
    fn the_principal_comes_back_with_its_grants_roles_and_method() {
        let principal = record().principal();
        assert_eq!(principal.subject, "alice");
        assert_eq!(
            principal.method,
            AuthMethod::ApiKey {
                key_id: "k1".into()
            }
        );
        assert_eq!(
            principal.permissions.len(),
            1,
            "the unparsable grant is dropped"
        );
        assert_eq!(principal.roles, ["operator"]);
    }

    #[test]
    fn the_csrf_token_must_match_exactly_and_once() {
        let record = record();
        let good = "a".repeat(64);
        assert!(record.csrf_matches(&headers(&[(CSRF_HEADER, &good)])));
        assert!(!record.csrf_matches(&headers(&[])));
        assert!(!record.csrf_matches(&headers(&[(CSRF_HEADER, &"a".repeat(63))])));
        assert!(!record.csrf_matches(&headers(&[(CSRF_HEADER, &"b".repeat(64))])));
        assert!(!record.csrf_matches(&headers(&[(CSRF_HEADER, &good), (CSRF_HEADER, &good)])));
    }

    #[test]
    fn changes_need_the_token_and_the_same_site_reads_do_not() {
        let record = record();
        let token = "a".repeat(64);
        assert!(check_change(&record, &Method::GET, &headers(&[])).is_ok());
        let refused = check_change(&record, &Method::POST, &headers(&[])).unwrap_err();
        assert_eq!(refused.status(), axum::http::StatusCode::FORBIDDEN);
        let same = headers(&[
            (CSRF_HEADER, &token),
            ("origin", "http://localhost:8080"),
            ("host", "localhost:8080"),
            ("sec-fetch-site", "same-origin"),
        ]);
        assert!(check_change(&record, &Method::POST, &same).is_ok());
        let other_origin = headers(&[
            (CSRF_HEADER, &token),
            ("origin", "http://evil.example"),
            ("host", "localhost:8080"),
        ]);
        assert!(check_change(&record, &Method::DELETE, &other_origin).is_err());
        let cross = headers(&[(CSRF_HEADER, &token), ("sec-fetch-site", "cross-site")]);
        assert!(check_change(&record, &Method::POST, &cross).is_err());
        let null_origin = headers(&[(CSRF_HEADER, &token), ("origin", "null")]);
        assert!(check_change(&record, &Method::POST, &null_origin).is_err());
    }

    #[test]
    fn the_cookie_is_read_among_others_and_written_strictly() {
        let id = "f".repeat(64);
        let map = headers(&[("cookie", &format!("a=1; {COOKIE}={id}; b=2"))]);
        assert_eq!(cookie_id(&map).as_deref(), Some(id.as_str()));
        assert_eq!(cookie_id(&headers(&[("cookie", "a=1")])), None);
        let cookie = cookie_header(&id, 60, true);
        let text = cookie.to_str().unwrap();
        for part in [
            "HttpOnly",
            "SameSite=Strict",
            "Secure",
            "Max-Age=60",
            "Path=/",
        ] {
            assert!(text.contains(part), "{text}");
        }
        assert!(
            !cookie_header("", 0, false)
                .to_str()
                .unwrap()
                .contains("Secure")
        );
    }

    #[test]
    fn a_token_expiry_shortens_the_session() {
        let mut principal = Principal::new("bob", AuthMethod::Jwt);
        principal
            .claims
            .insert("exp".into(), Value::from(2_000_000_000_i64));
        assert_eq!(
            credential_expiry(&principal),
            DateTime::<Utc>::from_timestamp(2_000_000_000, 0)
        );
        assert_eq!(
            credential_expiry(&Principal::new("x", AuthMethod::Jwt)),
            None
        );
    }
}
