//! JSON Web Tokens: the [`JwtAuthenticator`], what it checks, and minting for `tasker token`.
//!
//! Verification order: the size limit (before any parsing); the header's `alg`, which must be
//! one of the configured algorithms (so `none` never is); candidate keys whose type fits that
//! algorithm (an HMAC secret is never a public key, so a token "signed" with a public key's
//! bytes as an HMAC secret finds no key to verify against), narrowed by `kid`; the signature;
//! then `exp` (required), `nbf` and `iat` against the caller's "now" with the configured
//! leeway; `iss` and `aud` when configured; `sub` (required).

mod keys;
mod mint;

use std::fmt;
use std::str::FromStr;
use std::sync::Arc;
use std::time::Duration;

use base64::Engine as _;
use chrono::{DateTime, Utc};
use http::HeaderMap;
use serde_json::{Map, Value};

pub use keys::{
    FetchedKeySet, JwksFile, KeyError, KeySet, KeySetError, KeySetProvider, MIN_RSA_BITS,
    MIN_SECRET_BYTES, StaticKeySet, VerificationKey,
};
pub use mint::{MintError, SigningKey, TokenRequest, UnverifiedToken, decode_unverified};

use crate::authenticate::{AuthError, Authenticator, Rejection, single_header};
use crate::permission::Grant;
use crate::principal::{AuthMethod, Principal};

/// A signature algorithm. `none` is not one.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
#[allow(clippy::upper_case_acronyms)] // the algorithms' registered names
#[allow(missing_docs)] // the names are the JOSE registry's
pub enum JwtAlgorithm {
    HS256,
    HS384,
    HS512,
    RS256,
    RS384,
    RS512,
    PS256,
    PS384,
    PS512,
    ES256,
    ES384,
    EdDSA,
}

/// What kind of key a key is; each algorithm accepts exactly one kind.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum KeyKind {
    /// A shared secret.
    Hmac,
    /// An RSA key.
    Rsa,
    /// An EC key on P-256.
    EcP256,
    /// An EC key on P-384.
    EcP384,
    /// An Ed25519 key.
    Ed25519,
}

impl fmt::Display for KeyKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            KeyKind::Hmac => "an HMAC secret",
            KeyKind::Rsa => "an RSA key",
            KeyKind::EcP256 => "an EC P-256 key",
            KeyKind::EcP384 => "an EC P-384 key",
            KeyKind::Ed25519 => "an Ed25519 key",
        })
    }
}

impl JwtAlgorithm {
    /// Every supported algorithm.
    pub const ALL: &'static [JwtAlgorithm] = &[
        JwtAlgorithm::HS256,
        JwtAlgorithm::HS384,
        JwtAlgorithm::HS512,
        JwtAlgorithm::RS256,
        JwtAlgorithm::RS384,
        JwtAlgorithm::RS512,
        JwtAlgorithm::PS256,
        JwtAlgorithm::PS384,
        JwtAlgorithm::PS512,
        JwtAlgorithm::ES256,
        JwtAlgorithm::ES384,
        JwtAlgorithm::EdDSA,
    ];

    /// The registered name, e.g. `RS256`.
    pub const fn as_str(self) -> &'static str {
        match self {
            JwtAlgorithm::HS256 => "HS256",
            JwtAlgorithm::HS384 => "HS384",
            JwtAlgorithm::HS512 => "HS512",
            JwtAlgorithm::RS256 => "RS256",
            JwtAlgorithm::RS384 => "RS384",
            JwtAlgorithm::RS512 => "RS512",
            JwtAlgorithm::PS256 => "PS256",
            JwtAlgorithm::PS384 => "PS384",
            JwtAlgorithm::PS512 => "PS512",
            JwtAlgorithm::ES256 => "ES256",
            JwtAlgorithm::ES384 => "ES384",
            JwtAlgorithm::EdDSA => "EdDSA",
        }
    }

    /// The one kind of key that verifies this algorithm.
    pub const fn key_kind(self) -> KeyKind {
        match self {
            JwtAlgorithm::HS256 | JwtAlgorithm::HS384 | JwtAlgorithm::HS512 => KeyKind::Hmac,
            JwtAlgorithm::RS256
            | JwtAlgorithm::RS384
            | JwtAlgorithm::RS512
            | JwtAlgorithm::PS256
            | JwtAlgorithm::PS384
            | JwtAlgorithm::PS512 => KeyKind::Rsa,
            JwtAlgorithm::ES256 => KeyKind::EcP256,
            JwtAlgorithm::ES384 => KeyKind::EcP384,
            JwtAlgorithm::EdDSA => KeyKind::Ed25519,
        }
    }

    /// Whether a key of `kind` verifies this algorithm.
    pub fn accepts(self, kind: KeyKind) -> bool {
        self.key_kind() == kind
    }

    pub(crate) fn to_jsonwebtoken(self) -> jsonwebtoken::Algorithm {
        use jsonwebtoken::Algorithm as A;
        match self {
            JwtAlgorithm::HS256 => A::HS256,
            JwtAlgorithm::HS384 => A::HS384,
            JwtAlgorithm::HS512 => A::HS512,
            JwtAlgorithm::RS256 => A::RS256,
            JwtAlgorithm::RS384 => A::RS384,
            JwtAlgorithm::RS512 => A::RS512,
            JwtAlgorithm::PS256 => A::PS256,
            JwtAlgorithm::PS384 => A::PS384,
            JwtAlgorithm::PS512 => A::PS512,
            JwtAlgorithm::ES256 => A::ES256,
            JwtAlgorithm::ES384 => A::ES384,
            JwtAlgorithm::EdDSA => A::EdDSA,
        }
    }
}

impl fmt::Display for JwtAlgorithm {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// An algorithm name that is not a supported algorithm.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error(
    "unknown algorithm `{name}` (supported: HS256, HS384, HS512, RS256, RS384, RS512, PS256, PS384, PS512, ES256, ES384, EdDSA)"
)]
pub struct UnknownAlgorithm {
    /// The name given.
    pub name: String,
}

impl FromStr for JwtAlgorithm {
    type Err = UnknownAlgorithm;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        JwtAlgorithm::ALL
            .iter()
            .copied()
            .find(|alg| alg.as_str() == s)
            .ok_or_else(|| UnknownAlgorithm { name: s.to_owned() })
    }
}

/// What a token must satisfy, beyond a good signature.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub struct JwtPolicy {
    /// The algorithms accepted; a token whose `alg` is not listed is refused.
    pub algorithms: Vec<JwtAlgorithm>,
    /// The required `iss`, if any.
    pub issuer: Option<String>,
    /// The audience that must be in `aud`, if any.
    pub audience: Option<String>,
    /// Clock skew tolerated on `exp`, `nbf` and `iat`.
    pub leeway: Duration,
    /// Longer tokens are refused before any parsing.
    pub max_token_bytes: usize,
    /// The claim holding direct permissions: a list of `resource:action` strings, or one
    /// space-separated string.
    pub permissions_claim: String,
    /// The claim holding role names, in the same forms.
    pub roles_claim: String,
}

impl JwtPolicy {
    /// Defaults for everything but the algorithms: no issuer or audience check, 30 s leeway,
    /// 8 KiB tokens, claims `permissions` and `roles`.
    pub fn new(algorithms: Vec<JwtAlgorithm>) -> Self {
        Self {
            algorithms,
            issuer: None,
            audience: None,
            leeway: Duration::from_secs(30),
            max_token_bytes: 8 * 1024,
            permissions_claim: "permissions".to_owned(),
            roles_claim: "roles".to_owned(),
        }
    }
}

/// Why a bearer token was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum TokenRejection {
    /// Longer than the configured limit; not parsed.
    #[error("token is {size} bytes, above the {limit}-byte limit")]
    TooLarge {
        /// Its size.
        size: usize,
        /// The limit.
        limit: usize,
    },
    /// Not a well-formed JWT.
    #[error("token is malformed: {problem}")]
    Malformed {
        /// What is wrong.
        problem: &'static str,
    },
    /// The header's `alg` is not one of the configured algorithms (`none` never is).
    #[error("token algorithm `{alg}` is not accepted")]
    AlgorithmNotAllowed {
        /// The `alg` given.
        alg: String,
    },
    /// No configured key can verify this algorithm.
    #[error("no key verifies {alg} tokens")]
    NoKeyForAlgorithm {
        /// The algorithm.
        alg: JwtAlgorithm,
    },
    /// Its `jti` is on the revocation list.
    #[error("token `{jti}` was revoked")]
    Revoked {
        /// The token's id.
        jti: String,
    },
    /// The header's `kid` names no current key.
    #[error("token key id `{kid}` names no known key")]
    UnknownKeyId {
        /// The `kid` given.
        kid: String,
    },
    /// No candidate key verifies the signature.
    #[error("token signature does not verify")]
    BadSignature,
    /// Past `exp` (plus leeway).
    #[error("token expired at {expired_at} (now {now})")]
    Expired {
        /// The token's `exp`.
        expired_at: DateTime<Utc>,
        /// The time of the check.
        now: DateTime<Utc>,
    },
    /// Before `nbf` (minus leeway).
    #[error("token is not valid before {not_before} (now {now})")]
    NotYetValid {
        /// The token's `nbf`.
        not_before: DateTime<Utc>,
        /// The time of the check.
        now: DateTime<Utc>,
    },
    /// `iat` lies in the future (beyond the leeway).
    #[error("token claims to be issued at {issued_at}, in the future (now {now})")]
    IssuedInTheFuture {
        /// The token's `iat`.
        issued_at: DateTime<Utc>,
        /// The time of the check.
        now: DateTime<Utc>,
    },
    /// A required claim is absent.
    #[error("token has no `{claim}` claim")]
    MissingClaim {
        /// The claim.
        claim: String,
    },
    /// A claim has the wrong type or value.
    #[error("token claim `{claim}` {problem}")]
    InvalidClaim {
        /// The claim.
        claim: String,
        /// What is wrong.
        problem: &'static str,
    },
    /// `iss` is not the configured issuer.
    #[error("token issuer is not the configured issuer")]
    WrongIssuer,
    /// `aud` does not include the configured audience.
    #[error("token audience does not include the configured audience")]
    WrongAudience,
}

/// A token that passed every check.
#[derive(Debug, Clone, PartialEq)]
#[non_exhaustive]
pub struct VerifiedToken {
    /// Its algorithm.
    pub algorithm: JwtAlgorithm,
    /// Its key id, if any.
    pub kid: Option<String>,
    /// Where the key that verified it came from.
    pub key_origin: String,
    /// Who it authenticates.
    pub principal: Principal,
    /// Its `jti` claim, when it has one (what a revocation names).
    pub jti: Option<String>,
}

/// Authenticates `Authorization: Bearer <JWT>` requests.
#[derive(Clone)]
pub struct JwtAuthenticator {
    policy: JwtPolicy,
    keys: Vec<Arc<dyn KeySetProvider>>,
    revocations: Option<Arc<dyn crate::RevocationList>>,
}

impl fmt::Debug for JwtAuthenticator {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("JwtAuthenticator")
            .field("policy", &self.policy)
            .field("key_providers", &self.keys.len())
            .field("revocations", &self.revocations.is_some())
            .finish()
    }
}

/// The header fields read before any key is chosen.
struct TokenHeader {
    alg: JwtAlgorithm,
    kid: Option<String>,
}

impl JwtAuthenticator {
    /// Verifies tokens under `policy` with the keys `keys` provide (all consulted).
    pub fn new(policy: JwtPolicy, keys: Vec<Arc<dyn KeySetProvider>>) -> Self {
        Self {
            policy,
            keys,
            revocations: None,
        }
    }

    /// Refuses tokens whose `jti` is on `list` (checked after the signature and times, so
    /// only genuine tokens cost a look-up).
    pub fn with_revocations(mut self, list: Arc<dyn crate::RevocationList>) -> Self {
        self.revocations = Some(list);
        self
    }

    /// The policy.
    pub fn policy(&self) -> &JwtPolicy {
        &self.policy
    }

    /// Verifies `token` as of `now`. An unavailable key set is [`AuthError::Unavailable`];
    /// everything else wrong with the token is a [`TokenRejection`].
    pub fn verify(&self, token: &str, now: DateTime<Utc>) -> Result<VerifiedToken, AuthError> {
        if token.len() > self.policy.max_token_bytes {
            return Err(reject(TokenRejection::TooLarge {
                size: token.len(),
                limit: self.policy.max_token_bytes,
            }));
        }
        let header = self.read_header(token).map_err(reject)?;
        let mut sets = Vec::with_capacity(self.keys.len());
        for provider in &self.keys {
            sets.push(
                provider
                    .key_set(now)
                    .map_err(|source| AuthError::Unavailable {
                        source: Box::new(source),
                    })?,
            );
        }
        let candidates: Vec<&VerificationKey> = sets
            .iter()
            .flat_map(|set| set.keys())
            .filter(|key| key.verifies(header.alg))
            .filter(|key| match (&header.kid, key.kid()) {
                (Some(wanted), Some(kid)) => wanted == kid,
                _ => true,
            })
            .collect();
        if candidates.is_empty() {
            return Err(reject(match &header.kid {
                Some(kid) if !sets.iter().any(|set| set.has_kid(kid)) => {
                    for provider in &self.keys {
                        provider.unknown_key_id(kid);
                    }
                    TokenRejection::UnknownKeyId { kid: kid.clone() }
                }
                _ => TokenRejection::NoKeyForAlgorithm { alg: header.alg },
            }));
        }
        let (claims, key) = self.check_signature(token, &header, &candidates)?;
        self.check_times(&claims, now).map_err(reject)?;
        let jti = match claims.get("jti") {
            None => None,
            Some(Value::String(jti)) => Some(jti.clone()),
            Some(_) => {
                return Err(reject(TokenRejection::InvalidClaim {
                    claim: "jti".into(),
                    problem: "is not a string",
                }));
            }
        };
        let principal = self.principal(claims).map_err(reject)?;
        Ok(VerifiedToken {
            algorithm: header.alg,
            kid: header.kid,
            key_origin: key.origin().to_owned(),
            principal,
            jti,
        })
    }

    fn read_header(&self, token: &str) -> Result<TokenHeader, TokenRejection> {
        let malformed = |problem| TokenRejection::Malformed { problem };
        let mut parts = token.split('.');
        let (Some(header), Some(_), Some(_), None) =
            (parts.next(), parts.next(), parts.next(), parts.next())
        else {
            return Err(malformed("not three dot-separated parts"));
        };
        let bytes = base64::engine::general_purpose::URL_SAFE_NO_PAD
            .decode(header)
            .map_err(|_| malformed("header is not base64url"))?;
        let header: Map<String, Value> =
            serde_json::from_slice(&bytes).map_err(|_| malformed("header is not a JSON object"))?;
        if header.contains_key("crit") {
            return Err(malformed(
                "header has critical extensions this verifier does not know",
            ));
        }
        let alg = header
            .get("alg")
            .and_then(Value::as_str)
            .ok_or_else(|| malformed("header has no `alg`"))?;
        let alg = alg
            .parse::<JwtAlgorithm>()
            .ok()
            .filter(|alg| self.policy.algorithms.contains(alg))
            .ok_or_else(|| TokenRejection::AlgorithmNotAllowed {
                alg: alg.to_owned(),
            })?;
        let kid = match header.get("kid") {
            None => None,
            Some(Value::String(kid)) => Some(kid.clone()),
            Some(_) => return Err(malformed("header `kid` is not a string")),
        };
        Ok(TokenHeader { alg, kid })
    }

    fn validation(&self, alg: JwtAlgorithm) -> jsonwebtoken::Validation {
        let mut validation = jsonwebtoken::Validation::new(alg.to_jsonwebtoken());
        let mut required = vec!["exp", "sub"];
        // Time claims are checked against the caller's clock below, not the system's.
        validation.validate_exp = false;
        validation.validate_nbf = false;
        validation.validate_aud = self.policy.audience.is_some();
        if let Some(issuer) = &self.policy.issuer {
            validation.set_issuer(&[issuer]);
            required.push("iss");
        }
        if let Some(audience) = &self.policy.audience {
            validation.set_audience(&[audience]);
            required.push("aud");
        }
        validation.set_required_spec_claims(&required);
        validation
    }

    fn check_signature<'k>(
        &self,
        token: &str,
        header: &TokenHeader,
        candidates: &[&'k VerificationKey],
    ) -> Result<(Map<String, Value>, &'k VerificationKey), AuthError> {
        let validation = self.validation(header.alg);
        for key in candidates {
            use jsonwebtoken::errors::ErrorKind;
            match jsonwebtoken::decode::<Map<String, Value>>(token, key.decoding_key(), &validation)
            {
                Ok(data) => return Ok((data.claims, key)),
                Err(err) => match err.kind() {
                    // Another key of the same kind may have signed it (rotation).
                    ErrorKind::InvalidSignature
                    | ErrorKind::InvalidEcdsaKey
                    | ErrorKind::InvalidEddsaKey
                    | ErrorKind::InvalidRsaKey(_)
                    | ErrorKind::InvalidKeyFormat => continue,
                    kind => return Err(reject(claims_rejection(kind))),
                },
            }
        }
        Err(reject(TokenRejection::BadSignature))
    }

    fn check_times(
        &self,
        claims: &Map<String, Value>,
        now: DateTime<Utc>,
    ) -> Result<(), TokenRejection> {
        let leeway =
            chrono::Duration::from_std(self.policy.leeway).unwrap_or(chrono::Duration::MAX);
        let expired_at =
            numeric_date(claims, "exp")?.ok_or_else(|| TokenRejection::MissingClaim {
                claim: "exp".into(),
            })?;
        if now
            >= expired_at
                .checked_add_signed(leeway)
                .unwrap_or(DateTime::<Utc>::MAX_UTC)
        {
            return Err(TokenRejection::Expired { expired_at, now });
        }
        if let Some(not_before) = numeric_date(claims, "nbf")?
            && now
                .checked_add_signed(leeway)
                .unwrap_or(DateTime::<Utc>::MAX_UTC)
                < not_before
        {
            return Err(TokenRejection::NotYetValid { not_before, now });
        }
        if let Some(issued_at) = numeric_date(claims, "iat")?
            && now
                .checked_add_signed(leeway)
                .unwrap_or(DateTime::<Utc>::MAX_UTC)
                < issued_at
        {
            return Err(TokenRejection::IssuedInTheFuture { issued_at, now });
        }
        Ok(())
    }

    fn principal(&self, claims: Map<String, Value>) -> Result<Principal, TokenRejection> {
        let subject = match claims.get("sub") {
            Some(Value::String(sub)) if !sub.trim().is_empty() => sub.clone(),
            Some(Value::String(_)) => {
                return Err(TokenRejection::InvalidClaim {
                    claim: "sub".into(),
                    problem: "is empty",
                });
            }
            Some(_) => {
                return Err(TokenRejection::InvalidClaim {
                    claim: "sub".into(),
                    problem: "is not a string",
                });
            }
            None => {
                return Err(TokenRejection::MissingClaim {
                    claim: "sub".into(),
                });
            }
        };
        let permissions = string_list(&claims, &self.policy.permissions_claim)?
            .into_iter()
            .filter_map(|text| match text.parse::<Grant>() {
                Ok(grant) => Some(grant),
                Err(err) => {
                    tracing::warn!(target: "tasker::auth", subject, claim = %self.policy.permissions_claim, "ignoring permission `{text}`: {err}");
                    None
                }
            })
            .collect::<Vec<_>>();
        let roles = string_list(&claims, &self.policy.roles_claim)?;
        Ok(Principal::new(subject, AuthMethod::Jwt)
            .with_permissions(permissions)
            .with_roles(roles)
            .with_claims(claims))
    }
}

fn reject(rejection: TokenRejection) -> AuthError {
    AuthError::Rejected(Rejection::Token(rejection))
}

/// The rejection for a jsonwebtoken failure other than a key that does not verify.
fn claims_rejection(kind: &jsonwebtoken::errors::ErrorKind) -> TokenRejection {
    use jsonwebtoken::errors::ErrorKind;
    match kind {
        ErrorKind::MissingRequiredClaim(claim) => TokenRejection::MissingClaim {
            claim: claim.clone(),
        },
        ErrorKind::InvalidClaimFormat(claim) => TokenRejection::InvalidClaim {
            claim: claim.clone(),
            problem: "has the wrong type",
        },
        ErrorKind::InvalidIssuer => TokenRejection::WrongIssuer,
        ErrorKind::InvalidAudience => TokenRejection::WrongAudience,
        ErrorKind::InvalidAlgorithm | ErrorKind::MissingAlgorithm => TokenRejection::Malformed {
            problem: "algorithm does not match the key",
        },
        ErrorKind::Base64(_) => TokenRejection::Malformed {
            problem: "payload or signature is not base64url",
        },
        ErrorKind::Json(_) | ErrorKind::Utf8(_) => TokenRejection::Malformed {
            problem: "payload is not a JSON object",
        },
        _ => TokenRejection::Malformed {
            problem: "token does not decode",
        },
    }
}

/// A NumericDate claim (seconds since the epoch, fractions allowed), if present.
fn numeric_date(
    claims: &Map<String, Value>,
    claim: &'static str,
) -> Result<Option<DateTime<Utc>>, TokenRejection> {
    let Some(value) = claims.get(claim) else {
        return Ok(None);
    };
    let invalid = || TokenRejection::InvalidClaim {
        claim: claim.to_owned(),
        problem: "is not a date in seconds since the epoch",
    };
    let seconds = value
        .as_f64()
        .filter(|s| s.is_finite())
        .ok_or_else(invalid)?;
    // Saturate far-off dates rather than refusing them: a year-9999 `exp` is simply valid.
    let micros = (seconds * 1e6).clamp(i64::MIN as f64, i64::MAX as f64) as i64;
    Ok(Some(DateTime::from_timestamp_micros(micros).unwrap_or(
        if micros < 0 {
            DateTime::<Utc>::MIN_UTC
        } else {
            DateTime::<Utc>::MAX_UTC
        },
    )))
}

/// A claim holding strings: a list, or one space-separated string (OAuth's `scope` form).
fn string_list(claims: &Map<String, Value>, claim: &str) -> Result<Vec<String>, TokenRejection> {
    let invalid = || TokenRejection::InvalidClaim {
        claim: claim.to_owned(),
        problem: "is not a list of strings",
    };
    match claims.get(claim) {
        None | Some(Value::Null) => Ok(Vec::new()),
        Some(Value::String(text)) => Ok(text.split_whitespace().map(str::to_owned).collect()),
        Some(Value::Array(items)) => items
            .iter()
            .map(|item| item.as_str().map(str::to_owned).ok_or_else(invalid))
            .collect(),
        Some(_) => Err(invalid()),
    }
}

/// The bearer token of `Authorization: Bearer <token>`; `None` when there is no
/// `Authorization` header or it uses another scheme.
pub(crate) fn bearer_token(headers: &HeaderMap) -> Result<Option<&str>, Rejection> {
    let Some(value) = single_header(headers, "authorization")? else {
        return Ok(None);
    };
    let Some((scheme, token)) = value.split_once(' ') else {
        return Ok(None);
    };
    if !scheme.eq_ignore_ascii_case("bearer") {
        return Ok(None);
    }
    let token = token.trim();
    if token.is_empty() {
        return Err(Rejection::MalformedHeader {
            header: "authorization",
            problem: "has an empty bearer token",
        });
    }
    Ok(Some(token))
}

#[async_trait::async_trait]
impl Authenticator for JwtAuthenticator {
    async fn authenticate(
        &self,
        headers: &HeaderMap,
        now: DateTime<Utc>,
    ) -> Result<Principal, AuthError> {
        let Some(token) = bearer_token(headers)? else {
            return Err(AuthError::NoCredentials);
        };
        let verified = self.verify(token, now)?;
        if let (Some(list), Some(jti)) = (&self.revocations, &verified.jti) {
            let revoked = list
                .is_revoked(jti)
                .await
                .map_err(|source| AuthError::Unavailable {
                    source: Box::new(source),
                })?;
            if revoked {
                return Err(reject(TokenRejection::Revoked { jti: jti.clone() }));
            }
        }
        Ok(verified.principal)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn algorithm_names_round_trip_and_none_is_unknown() {
        for alg in JwtAlgorithm::ALL {
            assert_eq!(alg.as_str().parse::<JwtAlgorithm>(), Ok(*alg));
            assert_eq!(format!("{:?}", alg.to_jsonwebtoken()), alg.as_str());
        }
        assert_eq!(
            "none".parse::<JwtAlgorithm>().unwrap_err().to_string(),
            "unknown algorithm `none` (supported: HS256, HS384, HS512, RS256, RS384, RS512, PS256, PS384, PS512, ES256, ES384, EdDSA)"
        );
        assert!("hs256".parse::<JwtAlgorithm>().is_err());
    }

    #[test]
    fn each_algorithm_accepts_one_key_kind() {
        assert!(JwtAlgorithm::HS256.accepts(KeyKind::Hmac));
        assert!(!JwtAlgorithm::HS256.accepts(KeyKind::Rsa));
        assert!(JwtAlgorithm::PS384.accepts(KeyKind::Rsa));
        assert!(JwtAlgorithm::ES256.accepts(KeyKind::EcP256));
        assert!(!JwtAlgorithm::ES256.accepts(KeyKind::EcP384));
        assert!(JwtAlgorithm::EdDSA.accepts(KeyKind::Ed25519));
    }

    #[test]
    fn numeric_dates() {
        let claims: Map<String, Value> =
            serde_json::from_str(r#"{"a": 10, "b": 1.5, "c": "10", "d": 1e300, "e": -1e300}"#)
                .unwrap();
        assert_eq!(numeric_date(&claims, "a").unwrap().unwrap().timestamp(), 10);
        assert_eq!(
            numeric_date(&claims, "b")
                .unwrap()
                .unwrap()
                .timestamp_micros(),
            1_500_000
        );
        assert!(numeric_date(&claims, "c").is_err());
        assert_eq!(
            numeric_date(&claims, "d").unwrap(),
            Some(DateTime::<Utc>::MAX_UTC)
        );
        assert_eq!(
            numeric_date(&claims, "e").unwrap(),
            Some(DateTime::<Utc>::MIN_UTC)
        );
        assert_eq!(numeric_date(&claims, "z").unwrap(), None);
    }

    #[test]
    fn string_lists() {
        let claims: Map<String, Value> =
            serde_json::from_str(r#"{"list": ["a", "b"], "scope": "a  b", "bad": [1], "num": 3}"#)
                .unwrap();
        assert_eq!(string_list(&claims, "list").unwrap(), ["a", "b"]);
        assert_eq!(string_list(&claims, "scope").unwrap(), ["a", "b"]);
        assert_eq!(
            string_list(&claims, "missing").unwrap(),
            Vec::<String>::new()
        );
        assert!(string_list(&claims, "bad").is_err());
        assert!(string_list(&claims, "num").is_err());
    }

    #[test]
    fn bearer_tokens() {
        let mut headers = HeaderMap::new();
        assert_eq!(bearer_token(&headers), Ok(None));
        headers.insert("authorization", "Basic dXNlcg==".parse().unwrap());
        assert_eq!(bearer_token(&headers), Ok(None));
        headers.insert("authorization", "bearer abc".parse().unwrap());
        assert_eq!(bearer_token(&headers), Ok(Some("abc")));
        headers.insert("authorization", "Bearer  ".parse().unwrap());
        assert!(bearer_token(&headers).is_err());
        headers.insert("authorization", "Bearer a".parse().unwrap());
        headers.append("authorization", "Bearer b".parse().unwrap());
        assert_eq!(
            bearer_token(&headers).unwrap_err().to_string(),
            "`authorization` header is repeated"
        );
    }
}
