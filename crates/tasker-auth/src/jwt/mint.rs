//! Minting tokens (`tasker token mint`, tests) and reading a token without trusting it
//! (`tasker token inspect`).

use std::time::Duration;

use base64::Engine as _;
use chrono::{DateTime, Utc};
use jsonwebtoken::EncodingKey;
use serde_json::{Map, Value, json};

use super::{JwtAlgorithm, KeyKind, MIN_SECRET_BYTES, TokenRejection};
use crate::permission::Grant;

/// A key that signs tokens, with its algorithm.
#[derive(Clone)]
pub struct SigningKey {
    algorithm: JwtAlgorithm,
    key: EncodingKey,
    kid: Option<String>,
}

impl std::fmt::Debug for SigningKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SigningKey")
            .field("algorithm", &self.algorithm)
            .field("kid", &self.kid)
            .finish_non_exhaustive()
    }
}

impl SigningKey {
    /// An HMAC secret (at least [`MIN_SECRET_BYTES`] bytes) for an `HS*` algorithm.
    pub fn hmac(secret: &[u8], algorithm: JwtAlgorithm) -> Result<Self, MintError> {
        if algorithm.key_kind() != KeyKind::Hmac {
            return Err(MintError::KeyDoesNotFit {
                algorithm,
                key: KeyKind::Hmac,
            });
        }
        if secret.len() < MIN_SECRET_BYTES {
            return Err(MintError::SecretTooShort {
                length: secret.len(),
                minimum: MIN_SECRET_BYTES,
            });
        }
        Ok(Self {
            algorithm,
            key: EncodingKey::from_secret(secret),
            kid: None,
        })
    }

    /// A private key in PEM form (PKCS#8, or PKCS#1 for RSA). Without `algorithm`, RSA keys
    /// sign RS256, EC keys ES256 and Ed25519 keys EdDSA.
    pub fn from_private_pem(
        pem: &[u8],
        algorithm: Option<JwtAlgorithm>,
    ) -> Result<Self, MintError> {
        // jsonwebtoken reads an RSA public key as a signing key too; refuse it up front.
        if !std::str::from_utf8(pem).is_ok_and(|text| text.contains("PRIVATE KEY-----")) {
            return Err(MintError::NotAPrivateKey);
        }
        let (kind, key) = if let Ok(key) = EncodingKey::from_rsa_pem(pem) {
            (KeyKind::Rsa, key)
        } else if let Ok(key) = EncodingKey::from_ec_pem(pem) {
            (KeyKind::EcP256, key)
        } else if let Ok(key) = EncodingKey::from_ed_pem(pem) {
            (KeyKind::Ed25519, key)
        } else {
            return Err(MintError::NotAPrivateKey);
        };
        let algorithm = algorithm.unwrap_or(match kind {
            KeyKind::Rsa => JwtAlgorithm::RS256,
            KeyKind::Ed25519 => JwtAlgorithm::EdDSA,
            _ => JwtAlgorithm::ES256,
        });
        // Both EC curves parse as one family; signing tells them apart.
        let fits = match kind {
            KeyKind::EcP256 => matches!(algorithm, JwtAlgorithm::ES256 | JwtAlgorithm::ES384),
            kind => algorithm.accepts(kind),
        };
        if !fits {
            return Err(MintError::KeyDoesNotFit {
                algorithm,
                key: kind,
            });
        }
        let signing = Self {
            algorithm,
            key,
            kid: None,
        };
        jsonwebtoken::crypto::sign(b"probe", &signing.key, algorithm.to_jsonwebtoken()).map_err(
            |_| MintError::KeyDoesNotFit {
                algorithm,
                key: kind,
            },
        )?;
        Ok(signing)
    }

    /// With a key id written into each token's header.
    pub fn with_kid(mut self, kid: impl Into<String>) -> Self {
        self.kid = Some(kid.into());
        self
    }

    /// The algorithm it signs with.
    pub fn algorithm(&self) -> JwtAlgorithm {
        self.algorithm
    }

    /// Signs `claims` as they are (tests use this to build hostile tokens).
    pub fn sign_claims(&self, claims: &Map<String, Value>) -> Result<String, MintError> {
        let mut header = jsonwebtoken::Header::new(self.algorithm.to_jsonwebtoken());
        header.kid = self.kid.clone();
        jsonwebtoken::encode(&header, claims, &self.key).map_err(|err| MintError::Signing {
            reason: err.to_string(),
        })
    }

    /// A token for `request`, issued at `now`.
    pub fn mint(&self, request: &TokenRequest, now: DateTime<Utc>) -> Result<String, MintError> {
        self.sign_claims(&request.claims(now)?)
    }
}

/// What a minted token says.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub struct TokenRequest {
    /// `sub`.
    pub subject: String,
    /// Direct grants, written to `permissions_claim`.
    pub permissions: Vec<Grant>,
    /// Role names, written to `roles_claim`.
    pub roles: Vec<String>,
    /// `exp` is `iat` plus this.
    pub ttl: Duration,
    /// `iss`, if any.
    pub issuer: Option<String>,
    /// `aud`, if any.
    pub audience: Option<String>,
    /// The claim holding permissions.
    pub permissions_claim: String,
    /// The claim holding roles.
    pub roles_claim: String,
    /// `jti`, the id a revocation names, if any.
    pub jti: Option<String>,
}

impl TokenRequest {
    /// A token for `subject` lasting `ttl`, with the default claim names.
    pub fn new(subject: impl Into<String>, ttl: Duration) -> Self {
        Self {
            subject: subject.into(),
            permissions: Vec::new(),
            roles: Vec::new(),
            ttl,
            issuer: None,
            audience: None,
            permissions_claim: "permissions".to_owned(),
            roles_claim: "roles".to_owned(),
            jti: None,
        }
    }

    fn claims(&self, now: DateTime<Utc>) -> Result<Map<String, Value>, MintError> {
        if self.subject.trim().is_empty() {
            return Err(MintError::EmptySubject);
        }
        let ttl = chrono::Duration::from_std(self.ttl).map_err(|_| MintError::TtlTooLong)?;
        let expires = now.checked_add_signed(ttl).ok_or(MintError::TtlTooLong)?;
        let mut claims = Map::new();
        claims.insert("sub".into(), json!(self.subject));
        claims.insert("iat".into(), json!(now.timestamp()));
        claims.insert("exp".into(), json!(expires.timestamp()));
        if let Some(issuer) = &self.issuer {
            claims.insert("iss".into(), json!(issuer));
        }
        if let Some(audience) = &self.audience {
            claims.insert("aud".into(), json!(audience));
        }
        if let Some(jti) = &self.jti {
            claims.insert("jti".into(), json!(jti));
        }
        let permissions: Vec<String> = self.permissions.iter().map(ToString::to_string).collect();
        claims.insert(self.permissions_claim.clone(), json!(permissions));
        if !self.roles.is_empty() {
            claims.insert(self.roles_claim.clone(), json!(self.roles));
        }
        Ok(claims)
    }
}

/// Why a token could not be minted.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum MintError {
    /// The HMAC secret is too short.
    #[error("the secret is {length} bytes long; an HMAC secret needs at least {minimum}")]
    SecretTooShort {
        /// Its length.
        length: usize,
        /// The minimum.
        minimum: usize,
    },
    /// The file is not a private key this crate reads.
    #[error("not an RSA, EC or Ed25519 private key in PEM form (PKCS#8, or PKCS#1 for RSA)")]
    NotAPrivateKey,
    /// The key cannot sign with the algorithm.
    #[error("{key} cannot sign {algorithm}")]
    KeyDoesNotFit {
        /// The algorithm asked for.
        algorithm: JwtAlgorithm,
        /// The kind of key given.
        key: KeyKind,
    },
    /// The subject is empty.
    #[error("the subject is empty")]
    EmptySubject,
    /// The lifetime overflows the calendar.
    #[error("the lifetime is too long")]
    TtlTooLong,
    /// Signing failed.
    #[error("signing failed: {reason}")]
    Signing {
        /// The signer's message.
        reason: String,
    },
}

/// A token's header and claims, decoded but not verified: for display only.
#[derive(Debug, Clone, PartialEq)]
pub struct UnverifiedToken {
    /// The header.
    pub header: Map<String, Value>,
    /// The claims.
    pub claims: Map<String, Value>,
}

/// Decodes `token`'s header and claims without checking anything else.
pub fn decode_unverified(token: &str) -> Result<UnverifiedToken, TokenRejection> {
    let malformed = |problem| TokenRejection::Malformed { problem };
    let mut parts = token.trim().split('.');
    let (Some(header), Some(claims), Some(_), None) =
        (parts.next(), parts.next(), parts.next(), parts.next())
    else {
        return Err(malformed("not three dot-separated parts"));
    };
    let object = |part: &str, what: &'static str| -> Result<Map<String, Value>, TokenRejection> {
        let bytes = base64::engine::general_purpose::URL_SAFE_NO_PAD
            .decode(part)
            .map_err(|_| malformed(what))?;
        serde_json::from_slice(&bytes).map_err(|_| malformed(what))
    };
    Ok(UnverifiedToken {
        header: object(header, "header is not base64url JSON")?,
        claims: object(claims, "payload is not base64url JSON")?,
    })
}
