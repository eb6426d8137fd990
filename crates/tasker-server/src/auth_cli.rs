//! `tasker token` (mint and inspect JWTs with the configured keys) and `tasker keys` (API keys
//! in the configured database). Neither ever prints a secret: a minted token, and a new API
//! key once at creation, are the only credentials written out.

use std::io::Read as _;
use std::process::ExitCode;
use std::sync::Arc;

use anyhow::{Context as _, anyhow, bail};
use chrono::{DateTime, SecondsFormat, Utc};
use clap::Subcommand;
use serde_json::{Map, Value, json};
use tasker_auth::jwt::{TokenRequest, decode_unverified};
use tasker_auth::{ApiKey, AuthError, AuthenticatorKind, Grant, JwtAuthenticator, parse_duration};
use tasker_persistence::{ApiKeyRecord, NewApiKey};

use crate::jwks::JwksFetcher;
use crate::settings::Settings;

#[cfg(test)]
pub(crate) mod docs;

/// `tasker token ...`.
#[derive(Subcommand)]
pub(crate) enum TokenCommand {
    /// Print a new token signed with auth.jwt.private_key or else auth.jwt.secret (with iss
    /// and aud when configured); only the token is printed
    Mint {
        /// The subject (`sub`)
        #[arg(long, value_name = "NAME")]
        sub: String,
        /// A grant, `resource:action` or `resource:*` (repeatable)
        #[arg(long = "permission", value_name = "P")]
        permissions: Vec<String>,
        /// A role name from auth.roles (repeatable)
        #[arg(long = "role", value_name = "R")]
        roles: Vec<String>,
        /// How long it lasts: seconds, or e.g. 15m, 1h, 7d
        #[arg(long, value_name = "DURATION")]
        ttl: String,
        /// A key id for the header (to pick the key in a JWKS)
        #[arg(long, value_name = "K")]
        kid: Option<String>,
    },
    /// Put a token on the revocation list in the database (and the shared cache): `tasker
    /// serve` refuses it from then on although it has not expired
    Revoke {
        /// The token (its `jti` and `exp` are read from it), or `-` to read it from stdin
        #[arg(
            value_name = "TOKEN",
            required_unless_present = "jti",
            conflicts_with = "jti"
        )]
        token: Option<String>,
        /// The token's id, when the token itself is not at hand
        #[arg(long, value_name = "ID")]
        jti: Option<String>,
        /// Why, kept with the revocation
        #[arg(long, value_name = "TEXT")]
        reason: Option<String>,
    },
    /// Print a token's header and claims and whether this configuration accepts it (exit 0)
    /// or not (exit 1, with the reason)
    Inspect {
        /// The token, or `-` to read it from stdin
        token: String,
        /// One JSON document instead of text
        #[arg(long)]
        json: bool,
    },
}

/// `tasker keys ...`.
#[derive(Subcommand)]
pub(crate) enum KeysCommand {
    /// Create an API key and print it (the only time it is shown)
    Create {
        /// A unique name (the principal's subject)
        #[arg(long, value_name = "N")]
        name: String,
        /// A grant, `resource:action` or `resource:*` (repeatable)
        #[arg(long = "permission", value_name = "P", required = true)]
        permissions: Vec<String>,
        /// Expire after this long: seconds, or e.g. 12h, 30d
        #[arg(long, value_name = "DURATION", conflicts_with = "expires_at")]
        expires_in: Option<String>,
        /// Expire at this time (RFC 3339, e.g. 2027-01-01T00:00:00Z)
        #[arg(long, value_name = "TIME")]
        expires_at: Option<String>,
    },
    /// List API keys (never the keys or their hashes)
    List {
        /// JSON instead of a table
        #[arg(long)]
        json: bool,
    },
    /// Revoke an API key by name or id
    Revoke {
        /// The key's name or id
        #[arg(value_name = "NAME_OR_ID")]
        key: String,
    },
}

/// Runs a `tasker token` command.
pub(crate) async fn token(settings: &Settings, command: TokenCommand) -> anyhow::Result<ExitCode> {
    match command {
        TokenCommand::Mint {
            sub,
            permissions,
            roles,
            ttl,
            kid,
        } => {
            let token = mint(settings, &sub, &permissions, &roles, &ttl, kid.as_deref())?;
            crate::print_stdout(&format!("{token}\n"));
            Ok(ExitCode::SUCCESS)
        }
        TokenCommand::Inspect { token, json } => inspect(settings, &token, json).await,
        TokenCommand::Revoke { token, jti, reason } => {
            revoke(settings, token.as_deref(), jti, reason.as_deref()).await
        }
    }
}

/// The token given on the command line, or read from stdin for `-`.
fn read_token(token: &str) -> anyhow::Result<String> {
    if token != "-" {
        return Ok(token.trim().to_owned());
    }
    let mut text = String::new();
    std::io::stdin()
        .read_to_string(&mut text)
        .context("reading the token from stdin")?;
    Ok(text.trim().to_owned())
}

/// `tasker token revoke`: the token's `jti` goes on the list, with its `exp` so the row can be
/// pruned once the token would be refused anyway.
async fn revoke(
    settings: &Settings,
    token: Option<&str>,
    jti: Option<String>,
    reason: Option<&str>,
) -> anyhow::Result<ExitCode> {
    let (jti, expires_at) = match (token, jti) {
        (_, Some(jti)) => (jti, None),
        (Some(token), None) => {
            let decoded = decode_unverified(&read_token(token)?)
                .map_err(|err| anyhow!("the token cannot be read: {err}"))?;
            let jti = match decoded.claims.get("jti") {
                Some(serde_json::Value::String(jti)) => jti.clone(),
                Some(_) => bail!("the token's `jti` claim is not a string"),
                None => bail!(
                    "the token has no `jti` claim, so it cannot be revoked alone; tokens from `tasker token mint` carry one (rotate the signing key to refuse every token)"
                ),
            };
            let expires_at = decoded
                .claims
                .get("exp")
                .and_then(serde_json::Value::as_i64)
                .and_then(|exp| DateTime::from_timestamp(exp, 0));
            (jti, expires_at)
        }
        (None, None) => bail!("give the token, or its id with --jti"),
    };
    let jti = jti.trim().to_owned();
    if jti.is_empty() {
        bail!("--jti: must not be empty");
    }
    let cache = settings.cache.build().map_err(|err| anyhow!(err))?;
    let ttl = settings.cache.ttl().map_err(|err| anyhow!(err))?;
    let store = crate::serve::open_current(settings, false).await?;
    let list = tasker_api::DatabaseRevocations::new(store, cache.clone(), ttl);
    let revoked = list.revoke(&jti, expires_at, reason, Utc::now()).await?;
    let reach = if cache.is_shared() {
        "every replica refuses it now".to_owned()
    } else {
        format!(
            "servers refuse it within cache.ttl ({}): set cache.redis_url to make it immediate",
            settings.cache.ttl
        )
    };
    crate::print_stdout(&format!(
        "revoked token {} at {}; {reach}\n",
        revoked.jti,
        rfc3339(revoked.revoked_at)
    ));
    Ok(ExitCode::SUCCESS)
}

/// Parses grants given on the command line, naming the bad one.
fn grants(settings: &Settings, written: &[String]) -> anyhow::Result<Vec<Grant>> {
    written
        .iter()
        .map(|text| {
            let grant: Grant = text
                .parse()
                .map_err(|e| anyhow!("--permission `{text}`: {e}"))?;
            if grant == Grant::All && !settings.auth.allow_global_wildcard {
                bail!(
                    "--permission `*`: the global wildcard counts only with auth.allow_global_wildcard = true"
                );
            }
            Ok(grant)
        })
        .collect()
}

fn positive_duration(flag: &str, text: &str) -> anyhow::Result<std::time::Duration> {
    let duration = parse_duration(text).map_err(|e| anyhow!("{flag}: {e}"))?;
    if duration.is_zero() {
        bail!("{flag}: must be longer than zero");
    }
    Ok(duration)
}

fn mint(
    settings: &Settings,
    subject: &str,
    permissions: &[String],
    roles: &[String],
    ttl: &str,
    kid: Option<&str>,
) -> anyhow::Result<String> {
    let auth = &settings.auth;
    if subject.trim().is_empty() {
        bail!("--sub: must not be empty");
    }
    let ttl = positive_duration("--ttl", ttl)?;
    let grants = grants(settings, permissions)?;
    let policy = auth.jwt_policy()?;
    let key = auth.signing_key(kid)?;
    if !policy.algorithms.contains(&key.algorithm()) {
        bail!(
            "the signing key signs {}, which auth.jwt.algorithms ({}) does not accept",
            key.algorithm(),
            auth.jwt.algorithms.join(", ")
        );
    }
    for role in roles {
        if !auth.roles.contains_key(role) {
            eprintln!(
                "warning: --role `{role}`: auth.roles has no such role; it grants nothing here"
            );
        }
    }
    let mut request = TokenRequest::new(subject, ttl);
    request.permissions = grants;
    request.roles = roles.to_vec();
    request.issuer = policy.issuer.clone();
    request.audience = policy.audience.clone();
    request.permissions_claim = policy.permissions_claim.clone();
    request.roles_claim = policy.roles_claim.clone();
    request.jti = Some(uuid::Uuid::new_v4().simple().to_string());
    let now = Utc::now();
    let token = key.mint(&request, now)?;
    // Say so when this configuration would refuse what it just minted (checked offline only:
    // a JWKS URL is not fetched for this).
    if auth.authenticators.contains(&AuthenticatorKind::Jwt)
        && auth.jwt.jwks_url.is_none()
        && let Ok(verifier) = auth.jwt_authenticator()
        && let Err(err) = verifier.verify(&token, now)
    {
        eprintln!("warning: this configuration would refuse the token: {err}");
    }
    Ok(token)
}

/// The verdict on a token, for text or JSON output.
struct Verdict {
    accepted: bool,
    reason: String,
    subject: Option<String>,
    key: Option<String>,
}

async fn verifier(settings: &Settings) -> anyhow::Result<Result<JwtAuthenticator, String>> {
    let auth = &settings.auth;
    if !auth.authenticators.contains(&AuthenticatorKind::Jwt) {
        return Ok(Err(
            "`jwt` is not in auth.authenticators: this configuration accepts no tokens".to_owned(),
        ));
    }
    let fetched = match auth.jwks_url_settings()? {
        Some(url) => {
            let fetcher = JwksFetcher::new(url)?;
            fetcher.fetch(Utc::now()).await?;
            Some(fetcher.keys())
        }
        None => None,
    };
    Ok(Ok(auth.jwt_authenticator_with(fetched)?))
}

async fn inspect(settings: &Settings, token: &str, json: bool) -> anyhow::Result<ExitCode> {
    let token = read_token(token)?;
    let decoded = decode_unverified(&token);
    let verdict = match verifier(settings).await? {
        Err(reason) => Verdict {
            accepted: false,
            reason,
            subject: None,
            key: None,
        },
        Ok(verifier) => match verifier.verify(&token, Utc::now()) {
            Ok(verified) => Verdict {
                accepted: true,
                reason: format!(
                    "signature ({}) verified by {}; every claim checks",
                    verified.algorithm, verified.key_origin
                ),
                subject: Some(verified.principal.subject.clone()),
                key: Some(verified.key_origin),
            },
            Err(AuthError::Rejected(rejection)) => Verdict {
                accepted: false,
                reason: rejection.to_string(),
                subject: None,
                key: None,
            },
            Err(other) => Verdict {
                accepted: false,
                reason: other.to_string(),
                subject: None,
                key: None,
            },
        },
    };
    let (header, claims) = match &decoded {
        Ok(token) => (
            Value::Object(token.header.clone()),
            Value::Object(token.claims.clone()),
        ),
        Err(_) => (Value::Null, Value::Null),
    };
    let output = if json {
        let document = json!({
            "header": header,
            "claims": claims,
            "accepted": verdict.accepted,
            "reason": verdict.reason,
            "subject": verdict.subject,
            "key": verdict.key,
            "times": times(decoded.as_ref().ok().map(|t| &t.claims)),
        });
        format!("{}\n", serde_json::to_string_pretty(&document)?)
    } else {
        let mut text = String::new();
        match &decoded {
            Ok(_) => {
                text.push_str("header:\n");
                text.push_str(&serde_json::to_string_pretty(&header)?);
                text.push_str("\nclaims:\n");
                text.push_str(&serde_json::to_string_pretty(&claims)?);
                text.push('\n');
                if let Value::Object(times) = times(decoded.as_ref().ok().map(|t| &t.claims)) {
                    for (claim, at) in times {
                        text.push_str(&format!("{claim}: {}\n", at.as_str().unwrap_or_default()));
                    }
                }
            }
            Err(err) => text.push_str(&format!("cannot decode the token: {err}\n")),
        }
        if verdict.accepted {
            text.push_str(&format!("accepted: {}\n", verdict.reason));
        } else {
            text.push_str(&format!("refused: {}\n", verdict.reason));
        }
        text
    };
    crate::print_stdout(&output);
    Ok(if verdict.accepted {
        ExitCode::SUCCESS
    } else {
        ExitCode::from(1)
    })
}

/// `iat`, `nbf` and `exp` as RFC 3339 times, for people.
fn times(claims: Option<&Map<String, Value>>) -> Value {
    let mut out = Map::new();
    for claim in ["iat", "nbf", "exp"] {
        if let Some(at) = claims
            .and_then(|c| c.get(claim))
            .and_then(Value::as_i64)
            .and_then(|secs| DateTime::from_timestamp(secs, 0))
        {
            out.insert(claim.to_owned(), json!(rfc3339(at)));
        }
    }
    Value::Object(out)
}

fn rfc3339(at: DateTime<Utc>) -> String {
    at.to_rfc3339_opts(SecondsFormat::Secs, true)
}

/// Runs a `tasker keys` command against the configured database.
pub(crate) async fn keys(settings: &Settings, command: KeysCommand) -> anyhow::Result<ExitCode> {
    match command {
        KeysCommand::Create {
            name,
            permissions,
            expires_in,
            expires_at,
        } => {
            // Everything is checked before the database is opened, let alone written.
            let name = name.trim().to_owned();
            if name.is_empty() {
                bail!("--name: must not be empty");
            }
            let grants = grants(settings, &permissions)?;
            let now = Utc::now();
            let expires_at = match (expires_in, expires_at) {
                (Some(text), _) => {
                    let after = positive_duration("--expires-in", &text)?;
                    let after = chrono::Duration::from_std(after)
                        .ok()
                        .and_then(|after| now.checked_add_signed(after))
                        .ok_or_else(|| anyhow!("--expires-in `{text}`: too far in the future"))?;
                    Some(after)
                }
                (None, Some(text)) => {
                    let at = DateTime::parse_from_rfc3339(&text)
                        .map_err(|e| {
                            anyhow!("--expires-at `{text}`: not an RFC 3339 time ({e}), e.g. 2027-01-01T00:00:00Z")
                        })?
                        .with_timezone(&Utc);
                    if at <= now {
                        bail!("--expires-at `{text}`: lies in the past");
                    }
                    Some(at)
                }
                (None, None) => None,
            };
            let store = crate::serve::open_current(settings, false).await?;
            if let Some(existing) = store
                .list_api_keys()
                .await?
                .into_iter()
                .find(|k| k.name == name && k.revoked_at.is_none())
            {
                bail!(
                    "an API key named `{name}` already exists (id {}); revoke it first or choose another name",
                    existing.api_key_id
                );
            }
            let key = ApiKey::generate()?;
            let record = store
                .create_api_key(
                    &NewApiKey {
                        name,
                        key_hash: key.hash().to_hex(),
                        key_prefix: key.display_prefix().to_owned(),
                        permissions: grants.iter().map(ToString::to_string).collect(),
                        expires_at,
                    },
                    now,
                )
                .await?;
            crate::print_stdout(&format!("{}\n", key.expose()));
            eprintln!(
                "created API key `{}` (id {}); send it in the X-API-Key header. It is not shown again.",
                record.name, record.api_key_id
            );
            Ok(ExitCode::SUCCESS)
        }
        KeysCommand::List { json } => {
            let store = crate::serve::open_current(settings, false).await?;
            let keys = store.list_api_keys().await?;
            let output = if json {
                let list: Vec<Value> = keys.iter().map(key_json).collect();
                format!("{}\n", serde_json::to_string_pretty(&list)?)
            } else {
                key_table(&keys)
            };
            crate::print_stdout(&output);
            Ok(ExitCode::SUCCESS)
        }
        KeysCommand::Revoke { key } => {
            let store = crate::serve::open_current(settings, false).await?;
            let keys = store.list_api_keys().await?;
            let target = find_key(&keys, &key)?;
            if let Some(at) = target.revoked_at {
                println!(
                    "API key `{}` (id {}) was already revoked at {}",
                    target.name,
                    target.api_key_id,
                    rfc3339(at)
                );
                return Ok(ExitCode::SUCCESS);
            }
            let revoked = store.revoke_api_key(target.api_key_id, Utc::now()).await?;
            println!(
                "revoked API key `{}` (id {}) at {}",
                revoked.name,
                revoked.api_key_id,
                revoked.revoked_at.map(rfc3339).unwrap_or_default()
            );
            Ok(ExitCode::SUCCESS)
        }
    }
}

/// The key a revocation names: an id, else the one unrevoked key of that name (else a
/// revoked one, reported as such).
fn find_key<'k>(keys: &'k [ApiKeyRecord], wanted: &str) -> anyhow::Result<&'k ApiKeyRecord> {
    if let Ok(id) = wanted.parse::<i64>()
        && let Some(key) = keys.iter().find(|k| k.api_key_id == id)
    {
        return Ok(key);
    }
    let named: Vec<&ApiKeyRecord> = keys.iter().filter(|k| k.name == wanted).collect();
    let active: Vec<&&ApiKeyRecord> = named.iter().filter(|k| k.revoked_at.is_none()).collect();
    match (active.as_slice(), named.last()) {
        ([one], _) => Ok(one),
        ([], Some(revoked)) => Ok(revoked),
        ([], None) => {
            bail!("no API key has the name or id `{wanted}` (`tasker keys list` shows them)")
        }
        (several, _) => bail!(
            "{} API keys are named `{wanted}` (ids {}): revoke one by id",
            several.len(),
            several
                .iter()
                .map(|k| k.api_key_id.to_string())
                .collect::<Vec<_>>()
                .join(", ")
        ),
    }
}

fn key_json(key: &ApiKeyRecord) -> Value {
    json!({
        "id": key.api_key_id,
        "name": key.name,
        "permissions": key.permissions,
        "created_at": rfc3339(key.created_at),
        "expires_at": key.expires_at.map(rfc3339),
        "last_used_at": key.last_used_at.map(rfc3339),
        "revoked_at": key.revoked_at.map(rfc3339),
    })
}

fn key_table(keys: &[ApiKeyRecord]) -> String {
    if keys.is_empty() {
        return "no API keys (create one with `tasker keys create`)\n".to_owned();
    }
    let headings = [
        "ID",
        "NAME",
        "PERMISSIONS",
        "CREATED",
        "EXPIRES",
        "LAST USED",
        "REVOKED",
    ];
    let optional = |at: Option<DateTime<Utc>>| at.map_or_else(|| "-".to_owned(), rfc3339);
    let rows: Vec<[String; 7]> = keys
        .iter()
        .map(|key| {
            [
                key.api_key_id.to_string(),
                key.name.clone(),
                key.permissions.join(","),
                rfc3339(key.created_at),
                optional(key.expires_at),
                optional(key.last_used_at),
                optional(key.revoked_at),
            ]
        })
        .collect();
    let mut widths = headings.map(str::len);
    for row in &rows {
        for (width, cell) in widths.iter_mut().zip(row) {
            *width = (*width).max(cell.chars().count());
        }
    }
    let mut out = String::new();
    let mut line = |cells: &[&str]| {
        let text: Vec<String> = cells
            .iter()
            .zip(widths)
            .map(|(cell, width)| format!("{cell:<width$}"))
            .collect();
        out.push_str(text.join("  ").trim_end());
        out.push('\n');
    };
    line(&headings);
    for row in &rows {
        line(&row.each_ref().map(String::as_str));
    }
    out
}

/// The JWKS fetcher `tasker serve` runs, when `auth.jwt.jwks_url` is set and `jwt` listed:
/// fetched once now (an error stops startup).
pub(crate) async fn start_jwks(settings: &Settings) -> anyhow::Result<Option<Arc<JwksFetcher>>> {
    let auth = &settings.auth;
    if !auth.authenticators.contains(&AuthenticatorKind::Jwt) {
        return Ok(None);
    }
    let Some(url) = auth.jwks_url_settings()? else {
        return Ok(None);
    };
    let fetcher = Arc::new(JwksFetcher::new(url)?);
    let first = fetcher
        .fetch(Utc::now())
        .await
        .context("auth.jwt.jwks_url: the first fetch failed, so no token could be verified")?;
    if let crate::jwks::Refresh::Fetched { skipped, .. } = first {
        for note in skipped {
            tracing::warn!(target: "tasker::auth", "JWKS: skipped {note}");
        }
    }
    Ok(Some(fetcher))
}
