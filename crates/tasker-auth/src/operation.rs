//! The one table from API operations to permissions. The REST and GraphQL layers both look
//! operations up here, so the same operation always requires the same permission whichever
//! door it comes through: cancelling a task is `tasker.task:cancel` for `DELETE /tasks/{id}`,
//! `POST /tasks/{id}/cancel` and the `cancelTask` mutation alike.

use std::fmt;

use crate::permission::{Action, Permission, Resource};

/// An HTTP method of a REST route.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum RestMethod {
    /// `GET`.
    Get,
    /// `POST`.
    Post,
    /// `PUT`.
    Put,
    /// `PATCH`.
    Patch,
    /// `DELETE`.
    Delete,
}

impl RestMethod {
    /// The `http` crate's method.
    pub fn to_http(self) -> http::Method {
        match self {
            RestMethod::Get => http::Method::GET,
            RestMethod::Post => http::Method::POST,
            RestMethod::Put => http::Method::PUT,
            RestMethod::Patch => http::Method::PATCH,
            RestMethod::Delete => http::Method::DELETE,
        }
    }

    /// The method for an `http` method, if it is one routes use.
    pub fn from_http(method: &http::Method) -> Option<Self> {
        [
            RestMethod::Get,
            RestMethod::Post,
            RestMethod::Put,
            RestMethod::Patch,
            RestMethod::Delete,
        ]
        .into_iter()
        .find(|m| m.to_http() == method)
    }
}

/// A REST route: a method and a path template relative to where the API is mounted, with
/// `{name}` segments as axum writes them.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct RestRoute {
    /// The method.
    pub method: RestMethod,
    /// The path template, e.g. `/tasks/{task_id}`.
    pub path: &'static str,
}

/// Everything a client can ask of the API.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
#[non_exhaustive]
#[allow(missing_docs)] // each variant's route and permission are in `Operation::TABLE`
pub enum Operation {
    ListTasks,
    CreateTask,
    ShowTask,
    UpdateTask,
    CancelTask,
    RetryTask,
    ResolveTask,
    ShowTaskDiagram,
    ShowTaskHistory,
    StreamTaskEvents,
    ListSteps,
    ShowStep,
    UpdateStep,
    CancelStep,
    ResolveStep,
    RetryStep,
    ListAnnotationTypes,
    ListHandlerNamespaces,
    ShowHandlerNamespace,
    ShowHandler,
    ListTemplates,
    ShowTemplate,
    RegisterTemplate,
    ValidateTemplate,
    ListEvents,
    SubscribeEvents,
    ListRuntimeSwitches,
    UpdateRuntimeSwitch,
    HealthLive,
    HealthReady,
    HealthStatus,
    Metrics,
    AnalyticsPerformance,
    AnalyticsBottlenecks,
    ListApiKeys,
    CreateApiKey,
    RevokeApiKey,
    SignIn,
    ShowSession,
    SignOut,
}

/// One row of [`Operation::TABLE`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct OperationSpec {
    /// The operation.
    pub operation: Operation,
    /// The permission it requires; `None` for the liveness and readiness probes, which are
    /// never authenticated, and for the dashboard's session routes, which check the
    /// credentials or session they are given themselves and need no permission.
    pub permission: Option<Permission>,
    /// Its REST routes.
    pub rest: &'static [RestRoute],
    /// The GraphQL root fields (queries, mutations, subscriptions) that perform it.
    pub graphql: &'static [&'static str],
}

const fn p(resource: Resource, action: Action) -> Option<Permission> {
    Some(Permission::registered(resource, action))
}

const fn get(path: &'static str) -> RestRoute {
    RestRoute {
        method: RestMethod::Get,
        path,
    }
}

const fn post(path: &'static str) -> RestRoute {
    RestRoute {
        method: RestMethod::Post,
        path,
    }
}

const fn put(path: &'static str) -> RestRoute {
    RestRoute {
        method: RestMethod::Put,
        path,
    }
}

const fn patch(path: &'static str) -> RestRoute {
    RestRoute {
        method: RestMethod::Patch,
        path,
    }
}

const fn delete(path: &'static str) -> RestRoute {
    RestRoute {
        method: RestMethod::Delete,
        path,
    }
}

const fn row(
    operation: Operation,
    permission: Option<Permission>,
    rest: &'static [RestRoute],
    graphql: &'static [&'static str],
) -> OperationSpec {
    OperationSpec {
        operation,
        permission,
        rest,
        graphql,
    }
}

use Action::*;
use Operation as Op;
use Resource as R;

impl Operation {
    /// Every operation with its permission, REST routes and GraphQL fields.
    pub const TABLE: &'static [OperationSpec] = &[
        row(
            Op::ListTasks,
            p(R::Task, Index),
            &[get("/tasks")],
            &["tasks"],
        ),
        row(
            Op::CreateTask,
            p(R::Task, Create),
            &[post("/tasks")],
            &["createTask"],
        ),
        row(
            Op::ShowTask,
            p(R::Task, Show),
            &[get("/tasks/{task_id}")],
            &["task"],
        ),
        row(
            Op::UpdateTask,
            p(R::Task, Update),
            &[patch("/tasks/{task_id}"), put("/tasks/{task_id}")],
            &["updateTask"],
        ),
        row(
            Op::CancelTask,
            p(R::Task, Cancel),
            &[delete("/tasks/{task_id}"), post("/tasks/{task_id}/cancel")],
            &["cancelTask"],
        ),
        row(
            Op::RetryTask,
            p(R::Task, Retry),
            &[post("/tasks/{task_id}/retry")],
            &["retryTask"],
        ),
        row(
            Op::ResolveTask,
            p(R::Task, Resolve),
            &[post("/tasks/{task_id}/resolve")],
            &["resolveTask"],
        ),
        row(
            Op::ShowTaskDiagram,
            p(R::TaskDiagram, Show),
            &[get("/tasks/{task_id}/diagram")],
            &[],
        ),
        // A task's history is part of showing it.
        row(
            Op::ShowTaskHistory,
            p(R::Task, Show),
            &[get("/tasks/{task_id}/transitions")],
            &[],
        ),
        row(
            Op::StreamTaskEvents,
            p(R::EventStream, Subscribe),
            &[get("/tasks/{task_id}/events")],
            &["taskEvents", "stepEvents"],
        ),
        row(
            Op::ListSteps,
            p(R::WorkflowStep, Index),
            &[get("/tasks/{task_id}/workflow_steps")],
            &["steps"],
        ),
        row(
            Op::ShowStep,
            p(R::WorkflowStep, Show),
            &[get("/tasks/{task_id}/workflow_steps/{step_id}")],
            &["step"],
        ),
        row(
            Op::UpdateStep,
            p(R::WorkflowStep, Update),
            &[
                patch("/tasks/{task_id}/workflow_steps/{step_id}"),
                put("/tasks/{task_id}/workflow_steps/{step_id}"),
            ],
            &["updateStep"],
        ),
        row(
            Op::CancelStep,
            p(R::WorkflowStep, Cancel),
            &[
                delete("/tasks/{task_id}/workflow_steps/{step_id}"),
                post("/tasks/{task_id}/workflow_steps/{step_id}/cancel"),
            ],
            &["cancelStep"],
        ),
        row(
            Op::ResolveStep,
            p(R::WorkflowStep, Resolve),
            &[post("/tasks/{task_id}/workflow_steps/{step_id}/resolve")],
            &["resolveStep"],
        ),
        row(
            Op::RetryStep,
            p(R::WorkflowStep, Retry),
            &[post("/tasks/{task_id}/workflow_steps/{step_id}/retry")],
            &["retryStep"],
        ),
        // Annotation types describe tasks' annotations; reading them is reading tasks.
        row(
            Op::ListAnnotationTypes,
            p(R::Task, Index),
            &[],
            &["annotationTypes"],
        ),
        row(
            Op::ListHandlerNamespaces,
            p(R::Handler, Index),
            &[get("/handlers")],
            &["handlers"],
        ),
        row(
            Op::ShowHandlerNamespace,
            p(R::Handler, Show),
            &[get("/handlers/{namespace}")],
            &[],
        ),
        row(
            Op::ShowHandler,
            p(R::Handler, Show),
            &[get("/handlers/{namespace}/{name}")],
            &[],
        ),
        row(
            Op::ListTemplates,
            p(R::Template, Index),
            &[get("/templates")],
            &["templates"],
        ),
        row(
            Op::ShowTemplate,
            p(R::Template, Show),
            &[get("/templates/{namespace}/{name}")],
            &["template"],
        ),
        row(
            Op::RegisterTemplate,
            p(R::Template, Create),
            &[post("/templates")],
            &["registerTemplate"],
        ),
        // Validating stores nothing: reading templates is enough.
        row(
            Op::ValidateTemplate,
            p(R::Template, Show),
            &[post("/templates/validate")],
            &["validateTemplate"],
        ),
        row(
            Op::ListEvents,
            p(R::EventStream, Index),
            &[get("/events")],
            &[],
        ),
        row(
            Op::SubscribeEvents,
            p(R::EventStream, Subscribe),
            &[get("/events/stream")],
            &["events"],
        ),
        row(
            Op::ListRuntimeSwitches,
            p(R::RuntimeSwitch, Index),
            &[get("/runtime/switches")],
            &[],
        ),
        row(
            Op::UpdateRuntimeSwitch,
            p(R::RuntimeSwitch, Update),
            &[
                post("/runtime/switches/pause"),
                post("/runtime/switches/resume"),
                put("/runtime/switches/limits/{namespace}"),
            ],
            &[],
        ),
        row(Op::HealthLive, None, &[get("/health/live")], &[]),
        row(Op::HealthReady, None, &[get("/health/ready")], &[]),
        row(
            Op::HealthStatus,
            p(R::HealthStatus, Index),
            &[get("/health/status")],
            &["healthStatus"],
        ),
        row(Op::Metrics, p(R::Metrics, Index), &[get("/metrics")], &[]),
        row(
            Op::AnalyticsPerformance,
            p(R::Analytics, Index),
            &[get("/analytics/performance")],
            &["analyticsPerformance"],
        ),
        row(
            Op::AnalyticsBottlenecks,
            p(R::Analytics, Index),
            &[get("/analytics/bottlenecks")],
            &["analyticsBottlenecks"],
        ),
        row(
            Op::ListApiKeys,
            p(R::ApiKey, Index),
            &[get("/api_keys")],
            &[],
        ),
        row(
            Op::CreateApiKey,
            p(R::ApiKey, Create),
            &[post("/api_keys")],
            &[],
        ),
        row(
            Op::RevokeApiKey,
            p(R::ApiKey, Revoke),
            &[delete("/api_keys/{key_id}")],
            &[],
        ),
        // The dashboard's sessions: signing in checks the token or key it is given, showing
        // and ending one check the session; any authenticated principal may do all three.
        row(Op::SignIn, None, &[post("/session")], &[]),
        row(Op::ShowSession, None, &[get("/session")], &[]),
        row(Op::SignOut, None, &[delete("/session")], &[]),
    ];

    /// This operation's row of [`Operation::TABLE`].
    pub fn spec(self) -> &'static OperationSpec {
        Self::TABLE
            .iter()
            .find(|spec| spec.operation == self)
            .expect("every operation has a row in Operation::TABLE (tested)")
    }

    /// The permission this operation requires; `None` for the unauthenticated probes.
    pub fn permission(self) -> Option<Permission> {
        self.spec().permission
    }

    /// The operation a REST route performs (`path` is the route template, not the request
    /// path), or `None` for a route the table does not know, which the API must refuse.
    pub fn for_rest(method: &http::Method, path: &str) -> Option<Operation> {
        let method = RestMethod::from_http(method)?;
        Self::TABLE
            .iter()
            .find(|spec| {
                spec.rest
                    .iter()
                    .any(|route| route.method == method && route.path == path)
            })
            .map(|spec| spec.operation)
    }

    /// The operation a GraphQL root field performs, or `None` for a field the table does not
    /// know, which the API must refuse.
    pub fn for_graphql_field(field: &str) -> Option<Operation> {
        Self::TABLE
            .iter()
            .find(|spec| spec.graphql.contains(&field))
            .map(|spec| spec.operation)
    }
}

impl fmt::Display for Operation {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Debug::fmt(self, f)
    }
}

#[cfg(test)]
mod tests {
    use std::collections::HashSet;

    use super::*;

    #[test]
    fn every_operation_has_exactly_one_row_and_registered_permissions() {
        let mut seen = HashSet::new();
        for spec in Operation::TABLE {
            assert!(seen.insert(spec.operation), "{:?} twice", spec.operation);
            if let Some(permission) = spec.permission {
                assert_eq!(
                    Permission::new(permission.resource(), permission.action()),
                    Ok(permission),
                    "{:?} uses an unregistered pair",
                    spec.operation
                );
            }
        }
        assert_eq!(seen.len(), 40);
        for operation in every_variant() {
            assert!(seen.contains(&operation), "{operation:?} has no row");
        }
    }

    /// Adding a variant breaks this match until it is listed, and the test above then
    /// requires its row.
    fn every_variant() -> Vec<Operation> {
        let all = [
            Op::ListTasks,
            Op::CreateTask,
            Op::ShowTask,
            Op::UpdateTask,
            Op::CancelTask,
            Op::RetryTask,
            Op::ResolveTask,
            Op::ShowTaskDiagram,
            Op::ShowTaskHistory,
            Op::StreamTaskEvents,
            Op::ListSteps,
            Op::ShowStep,
            Op::UpdateStep,
            Op::CancelStep,
            Op::ResolveStep,
            Op::RetryStep,
            Op::ListAnnotationTypes,
            Op::ListHandlerNamespaces,
            Op::ShowHandlerNamespace,
            Op::ShowHandler,
            Op::ListTemplates,
            Op::ShowTemplate,
            Op::RegisterTemplate,
            Op::ValidateTemplate,
            Op::ListEvents,
            Op::SubscribeEvents,
            Op::ListRuntimeSwitches,
            Op::UpdateRuntimeSwitch,
            Op::HealthLive,
            Op::HealthReady,
            Op::HealthStatus,
            Op::Metrics,
            Op::AnalyticsPerformance,
            Op::AnalyticsBottlenecks,
            Op::ListApiKeys,
            Op::CreateApiKey,
            Op::RevokeApiKey,
            Op::SignIn,
            Op::ShowSession,
            Op::SignOut,
        ];
        for operation in all {
            match operation {
                Op::ListTasks
                | Op::CreateTask
                | Op::ShowTask
                | Op::UpdateTask
                | Op::CancelTask
                | Op::RetryTask
                | Op::ResolveTask
                | Op::ShowTaskDiagram
                | Op::ShowTaskHistory
                | Op::StreamTaskEvents
                | Op::ListSteps
                | Op::ShowStep
                | Op::UpdateStep
                | Op::CancelStep
                | Op::ResolveStep
                | Op::RetryStep
                | Op::ListAnnotationTypes
                | Op::ListHandlerNamespaces
                | Op::ShowHandlerNamespace
                | Op::ShowHandler
                | Op::ListTemplates
                | Op::ShowTemplate
                | Op::RegisterTemplate
                | Op::ValidateTemplate
                | Op::ListEvents
                | Op::SubscribeEvents
                | Op::ListRuntimeSwitches
                | Op::UpdateRuntimeSwitch
                | Op::HealthLive
                | Op::HealthReady
                | Op::HealthStatus
                | Op::Metrics
                | Op::AnalyticsPerformance
                | Op::AnalyticsBottlenecks
                | Op::ListApiKeys
                | Op::CreateApiKey
                | Op::RevokeApiKey
                | Op::SignIn
                | Op::ShowSession
                | Op::SignOut => {}
            }
        }
        all.to_vec()
    }

    #[test]
    fn routes_and_fields_are_unique() {
        let mut routes = HashSet::new();
        let mut fields = HashSet::new();
        for spec in Operation::TABLE {
            for route in spec.rest {
                assert!(routes.insert(*route), "{route:?} twice");
            }
            for field in spec.graphql {
                assert!(fields.insert(*field), "{field} twice");
            }
        }
    }

    #[test]
    fn cancel_is_cancel_through_every_door() {
        let rest = Operation::for_rest(&http::Method::DELETE, "/tasks/{task_id}").unwrap();
        let rest_post = Operation::for_rest(&http::Method::POST, "/tasks/{task_id}/cancel");
        let graphql = Operation::for_graphql_field("cancelTask").unwrap();
        assert_eq!((rest, rest_post), (Operation::CancelTask, Some(graphql)));
        assert_eq!(
            graphql.permission().unwrap().to_string(),
            "tasker.task:cancel"
        );
        let step = Operation::for_rest(
            &http::Method::DELETE,
            "/tasks/{task_id}/workflow_steps/{step_id}",
        )
        .unwrap();
        assert_eq!(step, Operation::for_graphql_field("cancelStep").unwrap());
        assert_eq!(
            step.permission().unwrap().to_string(),
            "tasker.workflow_step:cancel"
        );
        for spec in Operation::TABLE {
            let is_cancel = format!("{:?}", spec.operation).starts_with("Cancel");
            let action = spec.permission.map(|p| p.action());
            assert_eq!(
                is_cancel,
                action == Some(Action::Cancel),
                "{:?}",
                spec.operation
            );
            assert_ne!(action, Some(Action::Destroy), "{:?}", spec.operation);
        }
    }

    #[test]
    fn only_the_probes_and_the_session_routes_skip_the_guard() {
        let public: Vec<Operation> = Operation::TABLE
            .iter()
            .filter(|spec| spec.permission.is_none())
            .map(|spec| spec.operation)
            .collect();
        assert_eq!(
            public,
            [
                Operation::HealthLive,
                Operation::HealthReady,
                Operation::SignIn,
                Operation::ShowSession,
                Operation::SignOut,
            ]
        );
    }

    #[test]
    fn a_handler_namespace_needs_a_registered_permission() {
        let op = Operation::for_rest(&http::Method::GET, "/handlers/{namespace}").unwrap();
        assert_eq!(op.permission().unwrap().to_string(), "tasker.handler:show");
    }

    #[test]
    fn unknown_routes_and_fields_map_to_nothing() {
        assert_eq!(Operation::for_rest(&http::Method::GET, "/tasks/1"), None);
        assert_eq!(Operation::for_rest(&http::Method::HEAD, "/tasks"), None);
        assert_eq!(Operation::for_graphql_field("dropDatabase"), None);
    }

    #[test]
    fn permissions_no_operation_requires_are_the_rails_leftovers() {
        let used: HashSet<Permission> = Operation::TABLE
            .iter()
            .filter_map(|spec| spec.permission)
            .collect();
        let unused: Vec<String> = Permission::all()
            .filter(|p| !used.contains(p))
            .map(|p| p.to_string())
            .collect();
        assert_eq!(
            unused,
            ["tasker.task:destroy", "tasker.workflow_step:destroy"]
        );
    }
}
