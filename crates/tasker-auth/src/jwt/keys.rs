//! Verification keys and where they come from.
//!
//! A [`KeySet`] holds every key valid at once (rotation: old and new keys side by side). A
//! [`KeySetProvider`] hands the authenticator the current set: [`StaticKeySet`] for keys fixed
//! at startup (the HMAC secret, PEM files), [`JwksFile`] for a JWKS document on disk, and
//! [`FetchedKeySet`] for a document someone else fetches — the server refreshes a JWKS URL on
//! an interval, stores each fetch with [`FetchedKeySet::update`], and the provider refuses to
//! answer once the last fetch is older than the allowed staleness. Nothing here does network
//! I/O or needs an async runtime.

use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, RwLock};
use std::time::Duration;

use chrono::{DateTime, Utc};
use jsonwebtoken::DecodingKey;
use jsonwebtoken::jwk::{AlgorithmParameters, EllipticCurve, Jwk, KeyAlgorithm, PublicKeyUse};

use super::{JwtAlgorithm, KeyKind};

/// The shortest HMAC secret accepted, in bytes: as long as the HS256 digest, so the secret is
/// not the weak link.
pub const MIN_SECRET_BYTES: usize = 32;

/// The smallest RSA modulus accepted, in bits.
pub const MIN_RSA_BITS: usize = 2048;

/// One key that can verify signatures.
#[derive(Clone)]
pub struct VerificationKey {
    kid: Option<String>,
    kind: KeyKind,
    algorithm: Option<JwtAlgorithm>,
    origin: String,
    key: DecodingKey,
}

impl std::fmt::Debug for VerificationKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("VerificationKey")
            .field("kid", &self.kid)
            .field("kind", &self.kind)
            .field("algorithm", &self.algorithm)
            .field("origin", &self.origin)
            .finish_non_exhaustive()
    }
}

impl VerificationKey {
    /// An HMAC secret of at least [`MIN_SECRET_BYTES`] bytes. `origin` names where it came
    /// from in logs and errors (never the secret itself).
    pub fn hmac(secret: &[u8], origin: impl Into<String>) -> Result<Self, KeyError> {
        let origin = origin.into();
        if secret.len() < MIN_SECRET_BYTES {
            return Err(KeyError::SecretTooShort {
                origin,
                length: secret.len(),
                minimum: MIN_SECRET_BYTES,
            });
        }
        Ok(Self {
            kid: None,
            kind: KeyKind::Hmac,
            algorithm: None,
            origin,
            key: DecodingKey::from_secret(secret),
        })
    }

    /// A public key in PEM form: RSA (at least 2048 bits), EC P-256 or P-384, or Ed25519.
    /// Private keys and certificates are refused.
    pub fn from_public_pem(pem: &[u8], origin: impl Into<String>) -> Result<Self, KeyError> {
        let origin = origin.into();
        let problem = |problem: &'static str| KeyError::InvalidKey {
            origin: origin.clone(),
            problem,
        };
        let text = std::str::from_utf8(pem).map_err(|_| problem("is not PEM text"))?;
        if text.contains("PRIVATE KEY-----") {
            return Err(problem(
                "is a private key; configure the public key (`openssl pkey -in KEY -pubout`)",
            ));
        }
        if text.contains("-----BEGIN CERTIFICATE") {
            return Err(problem(
                "is a certificate; configure its public key (`openssl x509 -in CERT -pubkey -noout`)",
            ));
        }
        if !text.contains("-----BEGIN ") {
            return Err(problem("is not PEM (no -----BEGIN line)"));
        }
        let (kind, key) = if let Ok(key) = DecodingKey::from_rsa_pem(pem) {
            check_rsa(&key).map_err(problem)?;
            (KeyKind::Rsa, key)
        } else if let Ok(key) = DecodingKey::from_ec_pem(pem) {
            (ec_kind(&key).map_err(problem)?, key)
        } else if let Ok(key) = DecodingKey::from_ed_pem(pem) {
            if key.try_get_as_bytes().map(<[u8]>::len) != Ok(32) {
                return Err(problem("is not an Ed25519 public key"));
            }
            (KeyKind::Ed25519, key)
        } else {
            return Err(problem(
                "is not an RSA, EC (P-256, P-384) or Ed25519 public key",
            ));
        };
        Ok(Self {
            kid: None,
            kind,
            algorithm: None,
            origin,
            key,
        })
    }

    /// One JWK. Keys marked for encryption (`"use": "enc"`) and unsupported key types are
    /// refused; a JWK's `alg`, when present, restricts the key to that algorithm.
    pub fn from_jwk(jwk: &Jwk, origin: impl Into<String>) -> Result<Self, KeyError> {
        let origin = origin.into();
        let problem = |problem: &'static str| KeyError::InvalidKey {
            origin: origin.clone(),
            problem,
        };
        if matches!(jwk.common.public_key_use, Some(PublicKeyUse::Encryption)) {
            return Err(problem("is an encryption key (`use: enc`)"));
        }
        let algorithm = match jwk.common.key_algorithm {
            None => None,
            Some(alg) => {
                Some(jwk_algorithm(alg).ok_or_else(|| problem("has an unsupported `alg`"))?)
            }
        };
        let key = DecodingKey::from_jwk(jwk).map_err(|_| problem("has unusable key parameters"))?;
        let kind = match &jwk.algorithm {
            AlgorithmParameters::RSA(_) => {
                check_rsa(&key).map_err(problem)?;
                KeyKind::Rsa
            }
            AlgorithmParameters::EllipticCurve(params) => match params.curve {
                EllipticCurve::P256 => KeyKind::EcP256,
                EllipticCurve::P384 => KeyKind::EcP384,
                _ => return Err(problem("uses an unsupported curve")),
            },
            AlgorithmParameters::OctetKeyPair(params) => match params.curve {
                EllipticCurve::Ed25519 => KeyKind::Ed25519,
                _ => return Err(problem("uses an unsupported curve")),
            },
            AlgorithmParameters::OctetKey(_) => {
                let length = key.try_get_as_bytes().map_or(0, <[u8]>::len);
                if length < MIN_SECRET_BYTES {
                    return Err(KeyError::SecretTooShort {
                        origin,
                        length,
                        minimum: MIN_SECRET_BYTES,
                    });
                }
                KeyKind::Hmac
            }
            _ => return Err(problem("has an unsupported key type")),
        };
        if let Some(alg) = algorithm
            && !alg.accepts(kind)
        {
            return Err(problem("has an `alg` that does not fit its key type"));
        }
        Ok(Self {
            kid: jwk.common.key_id.clone(),
            kind,
            algorithm,
            origin,
            key,
        })
    }

    /// With a key id (`kid`).
    pub fn with_kid(mut self, kid: impl Into<String>) -> Self {
        self.kid = Some(kid.into());
        self
    }

    /// The key id, if it has one.
    pub fn kid(&self) -> Option<&str> {
        self.kid.as_deref()
    }

    /// What kind of key it is.
    pub fn kind(&self) -> KeyKind {
        self.kind
    }

    /// The one algorithm it is restricted to, if any.
    pub fn algorithm(&self) -> Option<JwtAlgorithm> {
        self.algorithm
    }

    /// Where it came from (a setting, a file, a JWKS entry).
    pub fn origin(&self) -> &str {
        &self.origin
    }

    /// Whether this key may verify a token signed with `alg`: the key type must fit and a
    /// JWK's own `alg` must match.
    pub fn verifies(&self, alg: JwtAlgorithm) -> bool {
        alg.accepts(self.kind) && self.algorithm.is_none_or(|only| only == alg)
    }

    pub(crate) fn decoding_key(&self) -> &DecodingKey {
        &self.key
    }
}

fn check_rsa(key: &DecodingKey) -> Result<(), &'static str> {
    let jwk = Jwk::from_decoding_key(key, None).map_err(|_| "is not a valid RSA public key")?;
    let AlgorithmParameters::RSA(params) = jwk.algorithm else {
        return Err("is not a valid RSA public key");
    };
    use base64::Engine as _;
    let modulus = base64::engine::general_purpose::URL_SAFE_NO_PAD
        .decode(params.n.as_bytes())
        .map_err(|_| "is not a valid RSA public key")?;
    let leading_zeros = modulus.iter().take_while(|b| **b == 0).count();
    if (modulus.len() - leading_zeros) * 8 < MIN_RSA_BITS {
        return Err("is an RSA key shorter than 2048 bits");
    }
    Ok(())
}

fn ec_kind(key: &DecodingKey) -> Result<KeyKind, &'static str> {
    // An uncompressed point: 0x04, then x and y.
    match key.try_get_as_bytes().map(<[u8]>::len) {
        Ok(65) => Ok(KeyKind::EcP256),
        Ok(97) => Ok(KeyKind::EcP384),
        _ => Err("is an EC key on an unsupported curve (P-256 and P-384 are supported)"),
    }
}

fn jwk_algorithm(alg: KeyAlgorithm) -> Option<JwtAlgorithm> {
    alg.to_string().parse().ok()
}

/// Keys that are valid at the same time.
#[derive(Debug, Clone, Default)]
pub struct KeySet {
    keys: Vec<VerificationKey>,
}

impl KeySet {
    /// A set of these keys.
    pub fn new(keys: Vec<VerificationKey>) -> Self {
        Self { keys }
    }

    /// The keys of a JWKS document (`{"keys": [...]}`), and a note for each key skipped
    /// (encryption keys, unsupported types) so an identity provider's set can be used as is.
    /// A document that is not JSON, has no `keys` list, or has no usable key is an error.
    pub fn from_jwks(json: &[u8], origin: &str) -> Result<(Self, Vec<String>), KeyError> {
        let invalid = |problem: String| KeyError::InvalidJwks {
            origin: origin.to_owned(),
            problem,
        };
        let document: serde_json::Value =
            serde_json::from_slice(json).map_err(|e| invalid(format!("is not JSON: {e}")))?;
        let entries = document
            .get("keys")
            .and_then(serde_json::Value::as_array)
            .ok_or_else(|| invalid("has no `keys` list".to_owned()))?;
        let mut keys = Vec::new();
        let mut skipped = Vec::new();
        for (index, entry) in entries.iter().enumerate() {
            let name = match entry.get("kid").and_then(serde_json::Value::as_str) {
                Some(kid) => format!("{origin} key {index} (kid `{kid}`)"),
                None => format!("{origin} key {index}"),
            };
            let parsed = serde_json::from_value::<Jwk>(entry.clone())
                .map_err(|_| KeyError::InvalidKey {
                    origin: name.clone(),
                    problem: "is not a JWK this version understands",
                })
                .and_then(|jwk| VerificationKey::from_jwk(&jwk, name.clone()));
            match parsed {
                Ok(key) => keys.push(key),
                Err(err) => skipped.push(err.to_string()),
            }
        }
        if keys.is_empty() {
            return Err(invalid(if skipped.is_empty() {
                "has no keys".to_owned()
            } else {
                format!("has no usable key: {}", skipped.join("; "))
            }));
        }
        Ok((Self { keys }, skipped))
    }

    /// The keys.
    pub fn keys(&self) -> &[VerificationKey] {
        &self.keys
    }

    /// Whether any key has this id.
    pub fn has_kid(&self, kid: &str) -> bool {
        self.keys.iter().any(|key| key.kid() == Some(kid))
    }
}

/// Hands the JWT authenticator the keys valid now.
///
/// Called once per token, so it must be cheap (return a shared snapshot). `now` lets a
/// provider that caches a fetched document refuse to use it once it is too old.
pub trait KeySetProvider: Send + Sync {
    /// The current keys.
    fn key_set(&self, now: DateTime<Utc>) -> Result<Arc<KeySet>, KeySetError>;

    /// A token named a key id no current key has. A provider that fetches its set may take
    /// this as a hint to fetch again early (keys are often rotated before old tokens expire);
    /// the token at hand is refused either way.
    fn unknown_key_id(&self, _kid: &str) {}
}

/// Keys fixed at startup.
#[derive(Debug, Clone, Default)]
pub struct StaticKeySet {
    set: Arc<KeySet>,
}

impl StaticKeySet {
    /// These keys, for good.
    pub fn new(set: KeySet) -> Self {
        Self { set: Arc::new(set) }
    }
}

impl KeySetProvider for StaticKeySet {
    fn key_set(&self, _now: DateTime<Utc>) -> Result<Arc<KeySet>, KeySetError> {
        Ok(Arc::clone(&self.set))
    }
}

/// A JWKS document read from a file at startup; [`JwksFile::reload`] reads it again (for
/// example on SIGHUP) and keeps the previous keys if the new document is unusable.
#[derive(Debug)]
pub struct JwksFile {
    path: PathBuf,
    set: RwLock<Arc<KeySet>>,
}

impl JwksFile {
    /// Reads and parses `path`; also returns a note for each key skipped.
    pub fn load(path: impl Into<PathBuf>) -> Result<(Self, Vec<String>), KeyError> {
        let path = path.into();
        let (set, skipped) = read_jwks(&path)?;
        Ok((
            Self {
                path,
                set: RwLock::new(Arc::new(set)),
            },
            skipped,
        ))
    }

    /// Reads the file again; on error the previous keys stay in use.
    pub fn reload(&self) -> Result<Vec<String>, KeyError> {
        let (set, skipped) = read_jwks(&self.path)?;
        *self
            .set
            .write()
            .unwrap_or_else(|poisoned| poisoned.into_inner()) = Arc::new(set);
        Ok(skipped)
    }

    /// The keys read last.
    pub fn keys(&self) -> Arc<KeySet> {
        Arc::clone(
            &self
                .set
                .read()
                .unwrap_or_else(|poisoned| poisoned.into_inner()),
        )
    }

    /// The file.
    pub fn path(&self) -> &Path {
        &self.path
    }
}

fn read_jwks(path: &Path) -> Result<(KeySet, Vec<String>), KeyError> {
    let bytes = std::fs::read(path).map_err(|source| KeyError::Unreadable {
        path: path.to_owned(),
        source: Arc::new(source),
    })?;
    KeySet::from_jwks(&bytes, &path.display().to_string())
}

impl KeySetProvider for JwksFile {
    fn key_set(&self, _now: DateTime<Utc>) -> Result<Arc<KeySet>, KeySetError> {
        Ok(self.keys())
    }
}

/// A key set someone else fetches (a JWKS URL refreshed on an interval). Each fetch is stored
/// with [`FetchedKeySet::update`]; the provider answers with the latest set until it is older
/// than `max_staleness`, then refuses, so a verifier never trusts keys that may have been
/// revoked long ago. [`FetchedKeySet::take_refresh_request`] tells the fetcher that a token
/// named an unknown key id since it last asked.
#[derive(Debug)]
pub struct FetchedKeySet {
    origin: String,
    max_staleness: Duration,
    latest: RwLock<Option<(Arc<KeySet>, DateTime<Utc>)>>,
    refresh_requested: AtomicBool,
}

impl FetchedKeySet {
    /// Nothing fetched yet; `origin` (the URL) names it in errors.
    pub fn new(origin: impl Into<String>, max_staleness: Duration) -> Self {
        Self {
            origin: origin.into(),
            max_staleness,
            latest: RwLock::new(None),
            refresh_requested: AtomicBool::new(false),
        }
    }

    /// Stores a successful fetch made at `fetched_at`.
    pub fn update(&self, set: KeySet, fetched_at: DateTime<Utc>) {
        *self
            .latest
            .write()
            .unwrap_or_else(|poisoned| poisoned.into_inner()) = Some((Arc::new(set), fetched_at));
    }

    /// The latest fetch and when it was made, however old: for diagnostics and startup
    /// checks. Verification goes through [`KeySetProvider::key_set`], which refuses stale keys.
    pub fn latest(&self) -> Option<(Arc<KeySet>, DateTime<Utc>)> {
        self.latest
            .read()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
            .clone()
    }

    /// The URL (or other origin) the keys come from.
    pub fn origin(&self) -> &str {
        &self.origin
    }

    /// The allowed age of the last fetch.
    pub fn max_staleness(&self) -> Duration {
        self.max_staleness
    }

    /// Whether a refresh was requested since the last call (and clears the request).
    pub fn take_refresh_request(&self) -> bool {
        self.refresh_requested.swap(false, Ordering::AcqRel)
    }
}

impl KeySetProvider for FetchedKeySet {
    fn key_set(&self, now: DateTime<Utc>) -> Result<Arc<KeySet>, KeySetError> {
        let latest = self
            .latest
            .read()
            .unwrap_or_else(|poisoned| poisoned.into_inner());
        let Some((set, fetched_at)) = latest.as_ref() else {
            return Err(KeySetError::NotLoaded {
                origin: self.origin.clone(),
            });
        };
        let age = (now - *fetched_at).to_std().unwrap_or_default();
        if age > self.max_staleness {
            return Err(KeySetError::Stale {
                origin: self.origin.clone(),
                fetched_at: *fetched_at,
                max_staleness: self.max_staleness,
            });
        }
        Ok(Arc::clone(set))
    }

    fn unknown_key_id(&self, _kid: &str) {
        self.refresh_requested.store(true, Ordering::Release);
    }
}

/// A key that cannot be used.
#[derive(Debug, Clone, thiserror::Error)]
#[non_exhaustive]
pub enum KeyError {
    /// A key file cannot be read.
    #[error("cannot read {}: {source}", .path.display())]
    Unreadable {
        /// The file.
        path: PathBuf,
        /// The I/O error.
        #[source]
        source: Arc<std::io::Error>,
    },
    /// An HMAC secret is too short.
    #[error("{origin} is {length} bytes long; an HMAC secret needs at least {minimum}")]
    SecretTooShort {
        /// Where the secret came from.
        origin: String,
        /// Its length in bytes.
        length: usize,
        /// The minimum.
        minimum: usize,
    },
    /// A key is not a usable public key.
    #[error("{origin} {problem}")]
    InvalidKey {
        /// Where the key came from.
        origin: String,
        /// What is wrong.
        problem: &'static str,
    },
    /// A JWKS document is unusable.
    #[error("{origin} {problem}")]
    InvalidJwks {
        /// Where the document came from.
        origin: String,
        /// What is wrong.
        problem: String,
    },
}

/// A key set that cannot be used right now: a server fault, not the client's.
#[derive(Debug, Clone, thiserror::Error)]
#[non_exhaustive]
pub enum KeySetError {
    /// Nothing has been fetched yet.
    #[error("no keys fetched yet from {origin}")]
    NotLoaded {
        /// Where the keys come from.
        origin: String,
    },
    /// The last fetch is too old.
    #[error("keys from {origin} were last fetched at {fetched_at}, longer ago than the allowed {}s", .max_staleness.as_secs())]
    Stale {
        /// Where the keys come from.
        origin: String,
        /// When they were last fetched.
        fetched_at: DateTime<Utc>,
        /// How old they may be.
        max_staleness: Duration,
    },
}
