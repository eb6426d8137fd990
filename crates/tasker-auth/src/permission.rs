//! Permissions: `resource:action` pairs from one registry, and the grants a principal holds
//! (an exact permission, every action on one resource, or everything).
//!
//! The registry keeps the Rails engine's resources and actions, so role mappings written for it
//! still parse, and adds Tasker's own (templates, event streams, runtime switches, API keys,
//! manual resolution). A pair outside the registry is an error wherever it is written.

use std::fmt;
use std::str::FromStr;

/// What a permission protects. Written `tasker.<name>`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
#[non_exhaustive]
pub enum Resource {
    /// Tasks (`tasker.task`).
    Task,
    /// A task's workflow steps (`tasker.workflow_step`).
    WorkflowStep,
    /// A task's dependency diagram (`tasker.task_diagram`).
    TaskDiagram,
    /// The detailed health report (`tasker.health_status`).
    HealthStatus,
    /// Registered step handlers by namespace (`tasker.handler`).
    Handler,
    /// The Prometheus metrics endpoint (`tasker.metrics`).
    Metrics,
    /// Performance and bottleneck analytics (`tasker.analytics`).
    Analytics,
    /// Task templates (`tasker.template`).
    Template,
    /// The event catalog and live event streams (`tasker.event_stream`).
    EventStream,
    /// Switches an operator flips at run time (`tasker.runtime_switch`).
    RuntimeSwitch,
    /// API keys (`tasker.api_key`).
    ApiKey,
}

/// What is done to a resource.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
#[non_exhaustive]
pub enum Action {
    /// List.
    Index,
    /// Read one.
    Show,
    /// Create.
    Create,
    /// Change.
    Update,
    /// Kept from the Rails registry so its role mappings parse; no operation requires it
    /// (cancelling requires `cancel`).
    Destroy,
    /// Retry.
    Retry,
    /// Cancel.
    Cancel,
    /// Resolve manually.
    Resolve,
    /// Receive live events.
    Subscribe,
    /// Revoke.
    Revoke,
}

impl Resource {
    /// Every resource, in registry order.
    pub const ALL: &'static [Resource] = &[
        Resource::Task,
        Resource::WorkflowStep,
        Resource::TaskDiagram,
        Resource::HealthStatus,
        Resource::Handler,
        Resource::Metrics,
        Resource::Analytics,
        Resource::Template,
        Resource::EventStream,
        Resource::RuntimeSwitch,
        Resource::ApiKey,
    ];

    /// The written name, e.g. `tasker.workflow_step`.
    pub const fn as_str(self) -> &'static str {
        match self {
            Resource::Task => "tasker.task",
            Resource::WorkflowStep => "tasker.workflow_step",
            Resource::TaskDiagram => "tasker.task_diagram",
            Resource::HealthStatus => "tasker.health_status",
            Resource::Handler => "tasker.handler",
            Resource::Metrics => "tasker.metrics",
            Resource::Analytics => "tasker.analytics",
            Resource::Template => "tasker.template",
            Resource::EventStream => "tasker.event_stream",
            Resource::RuntimeSwitch => "tasker.runtime_switch",
            Resource::ApiKey => "tasker.api_key",
        }
    }

    /// The actions the registry allows on this resource.
    pub const fn actions(self) -> &'static [Action] {
        use Action::*;
        match self {
            Resource::Task => &[Index, Show, Create, Update, Destroy, Retry, Cancel, Resolve],
            Resource::WorkflowStep => &[Index, Show, Update, Destroy, Retry, Cancel, Resolve],
            Resource::TaskDiagram => &[Show],
            Resource::HealthStatus => &[Index],
            Resource::Handler => &[Index, Show],
            Resource::Metrics => &[Index],
            Resource::Analytics => &[Index],
            Resource::Template => &[Index, Show, Create],
            Resource::EventStream => &[Index, Subscribe],
            Resource::RuntimeSwitch => &[Index, Update],
            Resource::ApiKey => &[Index, Create, Revoke],
        }
    }
}

impl Action {
    /// Every action.
    pub const ALL: &'static [Action] = &[
        Action::Index,
        Action::Show,
        Action::Create,
        Action::Update,
        Action::Destroy,
        Action::Retry,
        Action::Cancel,
        Action::Resolve,
        Action::Subscribe,
        Action::Revoke,
    ];

    /// The written name, e.g. `cancel`.
    pub const fn as_str(self) -> &'static str {
        match self {
            Action::Index => "index",
            Action::Show => "show",
            Action::Create => "create",
            Action::Update => "update",
            Action::Destroy => "destroy",
            Action::Retry => "retry",
            Action::Cancel => "cancel",
            Action::Resolve => "resolve",
            Action::Subscribe => "subscribe",
            Action::Revoke => "revoke",
        }
    }
}

impl fmt::Display for Resource {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl fmt::Display for Action {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl FromStr for Resource {
    type Err = PermissionError;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Resource::ALL
            .iter()
            .copied()
            .find(|r| r.as_str() == s)
            .ok_or_else(|| PermissionError::UnknownResource {
                resource: s.to_owned(),
                did_you_mean: closest(s, Resource::ALL.iter().map(|r| r.as_str())),
            })
    }
}

impl FromStr for Action {
    type Err = PermissionError;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Action::ALL
            .iter()
            .copied()
            .find(|a| a.as_str() == s)
            .ok_or_else(|| PermissionError::UnknownAction {
                action: s.to_owned(),
                did_you_mean: closest(s, Action::ALL.iter().map(|a| a.as_str())),
            })
    }
}

/// A registered `resource:action` pair. Only pairs in the registry can be built.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Permission {
    resource: Resource,
    action: Action,
}

impl Permission {
    /// The pair, if the registry has it.
    pub fn new(resource: Resource, action: Action) -> Result<Self, PermissionError> {
        if resource.actions().contains(&action) {
            Ok(Self { resource, action })
        } else {
            Err(PermissionError::NotRegistered { resource, action })
        }
    }

    /// For tables of known pairs; a test checks every use against the registry.
    pub(crate) const fn registered(resource: Resource, action: Action) -> Self {
        Self { resource, action }
    }

    /// The resource.
    pub const fn resource(self) -> Resource {
        self.resource
    }

    /// The action.
    pub const fn action(self) -> Action {
        self.action
    }

    /// Every registered pair, in registry order.
    pub fn all() -> impl Iterator<Item = Permission> {
        Resource::ALL.iter().flat_map(|&resource| {
            resource
                .actions()
                .iter()
                .map(move |&action| Permission { resource, action })
        })
    }
}

impl fmt::Display for Permission {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}:{}", self.resource, self.action)
    }
}

impl FromStr for Permission {
    type Err = PermissionError;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s.parse::<Grant>()? {
            Grant::Permission(permission) => Ok(permission),
            Grant::Resource(_) | Grant::All => Err(PermissionError::WildcardNotAPermission {
                input: s.to_owned(),
            }),
        }
    }
}

/// What a principal, a role or an API key holds: one permission, every action on a resource
/// (`tasker.task:*`), or everything (`*`, honoured only where configuration allows it).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Grant {
    /// Exactly this permission.
    Permission(Permission),
    /// Every registered action on this resource.
    Resource(Resource),
    /// Every permission.
    All,
}

impl Grant {
    /// Whether this grant covers `permission`. `All` covers everything here; whether `*` is
    /// honoured at all is the authorization policy's decision.
    pub fn covers(self, permission: Permission) -> bool {
        match self {
            Grant::Permission(p) => p == permission,
            Grant::Resource(r) => r == permission.resource,
            Grant::All => true,
        }
    }
}

impl From<Permission> for Grant {
    fn from(permission: Permission) -> Self {
        Grant::Permission(permission)
    }
}

impl fmt::Display for Grant {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Grant::Permission(p) => p.fmt(f),
            Grant::Resource(r) => write!(f, "{r}:*"),
            Grant::All => f.write_str("*"),
        }
    }
}

impl FromStr for Grant {
    type Err = PermissionError;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        if s.is_empty() {
            return Err(PermissionError::Empty);
        }
        if s == "*" {
            return Ok(Grant::All);
        }
        let Some((resource, action)) = s.split_once(':') else {
            return Err(PermissionError::MissingSeparator {
                input: s.to_owned(),
            });
        };
        let resource: Resource = resource.parse()?;
        if action == "*" {
            return Ok(Grant::Resource(resource));
        }
        let action: Action = action.parse()?;
        Permission::new(resource, action).map(Grant::Permission)
    }
}

impl serde::Serialize for Grant {
    fn serialize<S: serde::Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.collect_str(self)
    }
}

impl<'de> serde::Deserialize<'de> for Grant {
    fn deserialize<D: serde::Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        let text = String::deserialize(deserializer)?;
        text.parse().map_err(serde::de::Error::custom)
    }
}

/// Why a permission or grant string does not parse.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum PermissionError {
    /// The string is empty.
    #[error("empty permission")]
    Empty,
    /// No `:` between resource and action.
    #[error("`{input}` is not `resource:action`")]
    MissingSeparator {
        /// The string given.
        input: String,
    },
    /// The resource is not in the registry.
    #[error("unknown resource `{resource}`{}", suggestion(.did_you_mean))]
    UnknownResource {
        /// The resource given.
        resource: String,
        /// The closest known resource, if any is close.
        did_you_mean: Option<&'static str>,
    },
    /// The action is not in the registry.
    #[error("unknown action `{action}`{}", suggestion(.did_you_mean))]
    UnknownAction {
        /// The action given.
        action: String,
        /// The closest known action, if any is close.
        did_you_mean: Option<&'static str>,
    },
    /// Both parts are known but the registry has no such pair.
    #[error("`{resource}:{action}` is not a permission: {resource} allows {}", allowed(*.resource))]
    NotRegistered {
        /// The resource.
        resource: Resource,
        /// The action.
        action: Action,
    },
    /// A wildcard where one exact permission is needed.
    #[error("`{input}` is a wildcard, not one permission")]
    WildcardNotAPermission {
        /// The string given.
        input: String,
    },
}

fn suggestion(did_you_mean: &Option<&'static str>) -> String {
    did_you_mean
        .map(|name| format!(" (did you mean `{name}`?)"))
        .unwrap_or_default()
}

fn allowed(resource: Resource) -> String {
    resource
        .actions()
        .iter()
        .map(|a| a.as_str())
        .collect::<Vec<_>>()
        .join(", ")
}

fn closest<'a>(input: &str, candidates: impl Iterator<Item = &'a str>) -> Option<&'a str> {
    candidates
        .map(|candidate| (strsim::jaro_winkler(input, candidate), candidate))
        .filter(|(score, _)| *score >= 0.85)
        .max_by(|a, b| a.0.total_cmp(&b.0))
        .map(|(_, candidate)| candidate)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn check(input: &str, expect: &str) {
        let shown = match input.parse::<Grant>() {
            Ok(grant) => format!("ok {grant:?}"),
            Err(err) => format!("error: {err}"),
        };
        assert_eq!(shown, expect, "parsing `{input}`");
    }

    #[test]
    fn exact_permissions() {
        check(
            "tasker.task:cancel",
            "ok Permission(Permission { resource: Task, action: Cancel })",
        );
        check(
            "tasker.api_key:revoke",
            "ok Permission(Permission { resource: ApiKey, action: Revoke })",
        );
    }

    #[test]
    fn wildcards() {
        check("tasker.workflow_step:*", "ok Resource(WorkflowStep)");
        check("*", "ok All");
    }

    #[test]
    fn errors_name_the_problem() {
        check("", "error: empty permission");
        check(
            "tasker.task",
            "error: `tasker.task` is not `resource:action`",
        );
        check(
            "tasker.tasks:index",
            "error: unknown resource `tasker.tasks` (did you mean `tasker.task`?)",
        );
        check("nothing:index", "error: unknown resource `nothing`");
        check(
            "tasker.task:cancl",
            "error: unknown action `cancl` (did you mean `cancel`?)",
        );
        check(
            "tasker.metrics:create",
            "error: `tasker.metrics:create` is not a permission: tasker.metrics allows index",
        );
        check(
            "tasker.task:cancel:x",
            "error: unknown action `cancel:x` (did you mean `cancel`?)",
        );
        check("*:index", "error: unknown resource `*`");
        check(
            " tasker.task:index",
            "error: unknown resource ` tasker.task` (did you mean `tasker.task`?)",
        );
    }

    #[test]
    fn a_permission_is_not_a_wildcard() {
        assert_eq!(
            "tasker.task:*"
                .parse::<Permission>()
                .unwrap_err()
                .to_string(),
            "`tasker.task:*` is a wildcard, not one permission"
        );
    }

    #[test]
    fn registry_round_trips() {
        let all: Vec<Permission> = Permission::all().collect();
        assert_eq!(all.len(), 31);
        for permission in all {
            assert_eq!(permission.to_string().parse::<Permission>(), Ok(permission));
        }
    }

    #[test]
    fn coverage() {
        let cancel = Permission::new(Resource::Task, Action::Cancel).unwrap();
        let show = Permission::new(Resource::WorkflowStep, Action::Show).unwrap();
        assert!(Grant::Permission(cancel).covers(cancel));
        assert!(!Grant::Permission(cancel).covers(show));
        assert!(Grant::Resource(Resource::Task).covers(cancel));
        assert!(!Grant::Resource(Resource::Task).covers(show));
        assert!(Grant::All.covers(show));
    }
}
