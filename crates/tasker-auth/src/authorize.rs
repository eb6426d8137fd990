//! Authorization: may this principal do this to that?
//!
//! [`PermissionPolicy`] answers from grants: the principal's own, and those its roles map to
//! in configuration. An application adds its own rules ("this principal acts only on namespace
//! `payments`") as an [`AuthorizationCoordinator`]. [`Authorizer`] asks the permission policy,
//! then every coordinator; the first denial wins, and every decision, with its reason, goes to
//! the audit log (`tracing` target `tasker::audit`). A denial is a value, not an error.

use std::collections::BTreeMap;
use std::fmt;
use std::sync::Arc;

use chrono::{DateTime, Utc};
use http::HeaderMap;

use crate::authenticate::{AuthError, Authenticator};
use crate::operation::Operation;
use crate::permission::{Grant, Permission};
use crate::principal::{AuthMethod, Principal};

/// The `tracing` target of authorization decisions and authentication rejections.
pub const AUDIT_TARGET: &str = "tasker::audit";

/// What a request acts on, as far as the API knows it.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
#[non_exhaustive]
pub struct AuthorizationContext {
    /// The operation asked for, when the check comes from the operation table.
    pub operation: Option<Operation>,
    /// The resource's id (a task id, a step id, a key id).
    pub resource_id: Option<String>,
    /// Its parent's id (the task of a step).
    pub parent_resource_id: Option<String>,
    /// The namespace of the task, template or handler concerned.
    pub namespace: Option<String>,
}

impl AuthorizationContext {
    /// A context naming nothing.
    pub fn new() -> Self {
        Self::default()
    }

    /// For `operation`.
    pub fn operation(mut self, operation: Operation) -> Self {
        self.operation = Some(operation);
        self
    }

    /// On the resource `id`.
    pub fn resource_id(mut self, id: impl Into<String>) -> Self {
        self.resource_id = Some(id.into());
        self
    }

    /// Under the parent `id`.
    pub fn parent_resource_id(mut self, id: impl Into<String>) -> Self {
        self.parent_resource_id = Some(id.into());
        self
    }

    /// In `namespace`.
    pub fn namespace(mut self, namespace: impl Into<String>) -> Self {
        self.namespace = Some(namespace.into());
        self
    }
}

/// An authorization decision and why.
#[derive(Debug, Clone, PartialEq, Eq)]
#[must_use]
pub enum Decision {
    /// Go ahead.
    Allow {
        /// Why (for the audit log).
        reason: String,
    },
    /// Refused.
    Deny {
        /// Why (for the audit log; the client is told only what it may not do).
        reason: String,
    },
}

impl Decision {
    /// An allowance.
    pub fn allow(reason: impl Into<String>) -> Self {
        Decision::Allow {
            reason: reason.into(),
        }
    }

    /// A denial.
    pub fn deny(reason: impl Into<String>) -> Self {
        Decision::Deny {
            reason: reason.into(),
        }
    }

    /// Whether it allows.
    pub fn is_allowed(&self) -> bool {
        matches!(self, Decision::Allow { .. })
    }

    /// The reason.
    pub fn reason(&self) -> &str {
        match self {
            Decision::Allow { reason } | Decision::Deny { reason } => reason,
        }
    }
}

impl fmt::Display for Decision {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Decision::Allow { reason } => write!(f, "allowed: {reason}"),
            Decision::Deny { reason } => write!(f, "denied: {reason}"),
        }
    }
}

/// A policy over `resource:action`: given who asks, for what, and on what, allow or deny.
///
/// Implement it for rules beyond grants (namespaces, ownership, office hours) and add it to an
/// [`Authorizer`]; it is asked only after the permission check allowed the request.
#[async_trait::async_trait]
pub trait AuthorizationCoordinator: Send + Sync {
    /// Decides one request.
    async fn authorize(
        &self,
        principal: &Principal,
        permission: Permission,
        context: &AuthorizationContext,
    ) -> Decision;
}

/// Role names and the grants each confers.
pub type RoleGrants = BTreeMap<String, Vec<Grant>>;

/// Allows exactly what the principal's grants and its roles' grants cover. The global `*`
/// counts only when `allow_global_wildcard` is set; the open authenticator's anonymous
/// principal is allowed everything (open access is a configuration decision already made).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct PermissionPolicy {
    roles: RoleGrants,
    allow_global_wildcard: bool,
}

impl PermissionPolicy {
    /// Roles map to grants as given; `*` is ignored unless `allow_global_wildcard`.
    pub fn new(roles: RoleGrants, allow_global_wildcard: bool) -> Self {
        Self {
            roles,
            allow_global_wildcard,
        }
    }

    /// The role mapping.
    pub fn roles(&self) -> &RoleGrants {
        &self.roles
    }

    /// The decision, without the audit log.
    pub fn decide(&self, principal: &Principal, permission: Permission) -> Decision {
        if principal.method == AuthMethod::Open {
            return Decision::allow("open access: authentication is off");
        }
        let honoured = |grant: &Grant| {
            grant.covers(permission) && (*grant != Grant::All || self.allow_global_wildcard)
        };
        if let Some(grant) = principal.permissions.iter().find(|g| honoured(g)) {
            return Decision::allow(format!("granted by `{grant}`"));
        }
        for role in &principal.roles {
            if let Some(grant) = self
                .roles
                .get(role)
                .and_then(|g| g.iter().find(|g| honoured(g)))
            {
                return Decision::allow(format!("granted by role `{role}` (`{grant}`)"));
            }
        }
        let ignored_wildcard = !self.allow_global_wildcard
            && (principal.permissions.contains(&Grant::All)
                || principal.roles.iter().any(|role| {
                    self.roles
                        .get(role)
                        .is_some_and(|grants| grants.contains(&Grant::All))
                }));
        let unknown_roles: Vec<&str> = principal
            .roles
            .iter()
            .filter(|role| !self.roles.contains_key(*role))
            .map(String::as_str)
            .collect();
        let mut reason = format!("`{}` holds no grant for `{permission}`", principal.subject);
        if ignored_wildcard {
            reason.push_str(" (`*` is ignored: the global wildcard is not enabled)");
        }
        if !unknown_roles.is_empty() {
            reason.push_str(&format!(" (unknown roles: {})", unknown_roles.join(", ")));
        }
        Decision::deny(reason)
    }
}

#[async_trait::async_trait]
impl AuthorizationCoordinator for PermissionPolicy {
    async fn authorize(
        &self,
        principal: &Principal,
        permission: Permission,
        _context: &AuthorizationContext,
    ) -> Decision {
        self.decide(principal, permission)
    }
}

/// The permission policy, then each coordinator; the first denial wins. Every decision is
/// written to the audit log.
#[derive(Clone)]
pub struct Authorizer {
    policy: PermissionPolicy,
    coordinators: Vec<Arc<dyn AuthorizationCoordinator>>,
}

impl fmt::Debug for Authorizer {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Authorizer")
            .field("policy", &self.policy)
            .field("coordinators", &self.coordinators.len())
            .finish()
    }
}

impl Authorizer {
    /// Only the permission policy.
    pub fn new(policy: PermissionPolicy) -> Self {
        Self {
            policy,
            coordinators: Vec::new(),
        }
    }

    /// Also asks `coordinator` (after the policy and the coordinators added before).
    pub fn with_coordinator(mut self, coordinator: Arc<dyn AuthorizationCoordinator>) -> Self {
        self.coordinators.push(coordinator);
        self
    }

    /// The permission policy.
    pub fn policy(&self) -> &PermissionPolicy {
        &self.policy
    }

    /// May `principal` perform `operation`? The context's operation is set to it.
    pub async fn authorize(
        &self,
        principal: &Principal,
        operation: Operation,
        context: AuthorizationContext,
    ) -> Decision {
        let context = context.operation(operation);
        let decision = match operation.permission() {
            None => Decision::allow(format!("{operation} is public")),
            Some(permission) => self.decide(principal, permission, &context).await,
        };
        audit(principal, operation.permission(), &context, &decision);
        decision
    }

    /// May `principal` do what `permission` covers? For checks outside the operation table.
    pub async fn authorize_permission(
        &self,
        principal: &Principal,
        permission: Permission,
        context: &AuthorizationContext,
    ) -> Decision {
        let decision = self.decide(principal, permission, context).await;
        audit(principal, Some(permission), context, &decision);
        decision
    }

    async fn decide(
        &self,
        principal: &Principal,
        permission: Permission,
        context: &AuthorizationContext,
    ) -> Decision {
        let decision = self.policy.decide(principal, permission);
        if !decision.is_allowed() {
            return decision;
        }
        for coordinator in &self.coordinators {
            let verdict = coordinator.authorize(principal, permission, context).await;
            if !verdict.is_allowed() {
                return verdict;
            }
        }
        decision
    }
}

fn audit(
    principal: &Principal,
    permission: Option<Permission>,
    context: &AuthorizationContext,
    decision: &Decision,
) {
    let permission = permission.map(|p| p.to_string());
    let operation = context.operation.map(|op| op.to_string());
    tracing::info!(
        target: AUDIT_TARGET,
        subject = %principal.subject,
        method = %principal.method,
        permission = permission.as_deref().unwrap_or("none"),
        operation = operation.as_deref().unwrap_or("none"),
        resource_id = context.resource_id.as_deref().unwrap_or(""),
        parent_resource_id = context.parent_resource_id.as_deref().unwrap_or(""),
        namespace = context.namespace.as_deref().unwrap_or(""),
        allowed = decision.is_allowed(),
        reason = decision.reason(),
        "authorization"
    );
}

/// An authenticator and an authorizer together: what the API layer holds. Rejections are
/// logged with their reason on the audit target; the caller tells the client only
/// "unauthorized".
#[derive(Clone)]
pub struct AccessControl {
    authenticator: Arc<dyn Authenticator>,
    authorizer: Authorizer,
}

impl fmt::Debug for AccessControl {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("AccessControl")
            .field("authorizer", &self.authorizer)
            .finish_non_exhaustive()
    }
}

impl AccessControl {
    /// From parts.
    pub fn new(authenticator: Arc<dyn Authenticator>, authorizer: Authorizer) -> Self {
        Self {
            authenticator,
            authorizer,
        }
    }

    /// The authenticator.
    pub fn authenticator(&self) -> &Arc<dyn Authenticator> {
        &self.authenticator
    }

    /// The authorizer.
    pub fn authorizer(&self) -> &Authorizer {
        &self.authorizer
    }

    /// Also asks `coordinator` when authorizing.
    pub fn with_coordinator(mut self, coordinator: Arc<dyn AuthorizationCoordinator>) -> Self {
        self.authorizer = self.authorizer.with_coordinator(coordinator);
        self
    }

    /// Authenticates a request, logging why when it fails.
    pub async fn authenticate(
        &self,
        headers: &HeaderMap,
        now: DateTime<Utc>,
    ) -> Result<Principal, AuthError> {
        let outcome = self.authenticator.authenticate(headers, now).await;
        if let Err(err) = &outcome {
            if err.is_unavailable() {
                tracing::error!(target: AUDIT_TARGET, reason = %err, "authentication unavailable");
            } else {
                tracing::info!(target: AUDIT_TARGET, reason = %err, "authentication rejected");
            }
        }
        outcome
    }

    /// Authorizes `operation` for `principal` (see [`Authorizer::authorize`]).
    pub async fn authorize(
        &self,
        principal: &Principal,
        operation: Operation,
        context: AuthorizationContext,
    ) -> Decision {
        self.authorizer
            .authorize(principal, operation, context)
            .await
    }
}
