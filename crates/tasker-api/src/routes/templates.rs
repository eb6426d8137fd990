//! `/templates` and `/handlers`: the workflows this server knows, registration (versions are
//! immutable) and validation with lines and columns.

use std::collections::BTreeMap;
use std::sync::Arc;

use axum::body::Bytes;
use axum::extract::State;
use axum::http::{HeaderMap, StatusCode, header};
use axum::response::{IntoResponse, Response};
use tasker_engine::EngineError;
use tasker_template::{TaskTemplate, TemplateErrors};
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;

use crate::error::{ApiError, ErrorCode, ReadErrors, WriteErrors};
use crate::extract::{Json, Path, Query};
use crate::state::Shared;
use crate::views::{
    GraphView, HandlerNamespace, HandlerView, ShowTemplateQuery, TemplateProblem, TemplateSummary,
    TemplateView, ValidationView,
};

pub(crate) fn router() -> OpenApiRouter<Arc<Shared>> {
    OpenApiRouter::new()
        .routes(routes!(list_templates, register_template))
        .routes(routes!(validate_template))
        .routes(routes!(show_template))
        .routes(routes!(list_handler_namespaces))
        .routes(routes!(show_handler_namespace))
        .routes(routes!(show_handler))
}

/// Reads a template body: YAML or JSON (JSON is YAML), by content type.
fn parse_body(
    headers: &HeaderMap,
    body: &[u8],
) -> Result<Result<TaskTemplate, TemplateErrors>, ApiError> {
    let content_type = headers
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .map(|v| {
            v.split(';')
                .next()
                .unwrap_or("")
                .trim()
                .to_ascii_lowercase()
        })
        .unwrap_or_default();
    let accepted = [
        "application/yaml",
        "application/x-yaml",
        "text/yaml",
        "text/x-yaml",
        "application/json",
        "text/plain",
    ];
    if !accepted.contains(&content_type.as_str()) {
        return Err(ApiError::new(
            ErrorCode::UnsupportedMediaType,
            "send the template as application/yaml or application/json",
        ));
    }
    Ok(TaskTemplate::from_yaml_slice(body, Some("request body")))
}

fn problems(errors: &TemplateErrors) -> Vec<TemplateProblem> {
    errors
        .errors()
        .iter()
        .map(|e| TemplateProblem {
            line: e.line,
            column: e.column,
            step: e.step.clone(),
            message: e.kind.to_string(),
        })
        .collect()
}

fn unknown_handlers(shared: &Shared, template: &TaskTemplate) -> Vec<String> {
    let registry = shared.engine.registry();
    let mut unknown: Vec<String> = template
        .step_templates
        .iter()
        .map(|s| s.handler_class.clone())
        .filter(|class| registry.step_handler(class).is_none())
        .collect();
    unknown.sort();
    unknown.dedup();
    unknown
}

fn versions_of(shared: &Shared, namespace: &str, name: &str) -> Vec<semver::Version> {
    shared
        .engine
        .registry()
        .list(Some(namespace))
        .into_iter()
        .filter(|(_, n, _)| n == name)
        .map(|(_, _, v)| v)
        .collect()
}

/// Lists the templates this server has registered.
#[utoipa::path(
    get, path = "/templates", tag = "templates",
    responses(
        (status = 200, description = "The templates", body = Vec<TemplateSummary>),
        ReadErrors,
    )
)]
pub(crate) async fn list_templates(
    State(shared): State<Arc<Shared>>,
) -> Json<Vec<TemplateSummary>> {
    Json(summaries(&shared))
}

/// Every registered template (REST and GraphQL).
pub(crate) fn summaries(shared: &Shared) -> Vec<TemplateSummary> {
    let registry = shared.engine.registry();
    registry
        .list(None)
        .into_iter()
        .filter_map(|(namespace, name, version)| {
            let registered = registry.resolve(&namespace, &name, Some(&version))?;
            Some(TemplateSummary {
                description: registered.template.description.clone(),
                steps: registered.template.step_templates.len(),
                namespace,
                name,
                version: version.to_string(),
            })
        })
        .collect()
}

/// Shows one template (its latest version unless one is named) with its graph.
#[utoipa::path(
    get, path = "/templates/{namespace}/{name}", tag = "templates",
    params(
        ("namespace" = String, Path, description = "The namespace"),
        ("name" = String, Path, description = "The name"),
        ShowTemplateQuery,
    ),
    responses(
        (status = 200, description = "The template", body = TemplateView),
        ReadErrors,
    )
)]
pub(crate) async fn show_template(
    State(shared): State<Arc<Shared>>,
    Path((namespace, name)): Path<(String, String)>,
    Query(query): Query<ShowTemplateQuery>,
) -> Result<Json<TemplateView>, ApiError> {
    Ok(Json(
        find(&shared, &namespace, &name, query.version.as_deref()).await?,
    ))
}

/// One template, from the registry or the database: an exact version, or the highest (REST
/// and GraphQL).
pub(crate) async fn find(
    shared: &Shared,
    namespace: &str,
    name: &str,
    version: Option<&str>,
) -> Result<TemplateView, ApiError> {
    let version = version
        .map(|v| {
            semver::Version::parse(v)
                .map_err(|err| ApiError::bad_request(format!("`version` `{v}`: {err}")))
        })
        .transpose()?;
    let template = match shared
        .engine
        .registry()
        .resolve(namespace, name, version.as_ref())
    {
        Some(registered) => registered.template,
        None => {
            shared
                .engine
                .store()
                .find_template(namespace, name, version.as_ref())
                .await?
                .template
        }
    };
    Ok(template_view(shared, &template))
}

pub(crate) fn template_view(shared: &Shared, template: &TaskTemplate) -> TemplateView {
    let mut versions: Vec<String> = versions_of(shared, &template.namespace_name, &template.name)
        .iter()
        .map(ToString::to_string)
        .collect();
    if versions.is_empty() {
        versions.push(template.version.to_string());
    }
    TemplateView {
        namespace: template.namespace_name.clone(),
        name: template.name.clone(),
        version: template.version.to_string(),
        versions,
        template: serde_json::to_value(template).unwrap_or_default(),
        graph: GraphView::from(&template.graph()),
    }
}

/// Registers a template. Versions are immutable: registering an existing version again with
/// the same content answers 200, with different content 409. Every handler it names must be
/// known to this server.
#[utoipa::path(
    post, path = "/templates", tag = "templates",
    request_body(content = String, content_type = "application/yaml", description = "The template, in YAML or JSON"),
    responses(
        (status = 201, description = "Registered", body = TemplateView),
        (status = 200, description = "Already registered with the same content", body = TemplateView),
        WriteErrors,
    )
)]
pub(crate) async fn register_template(
    State(shared): State<Arc<Shared>>,
    headers: HeaderMap,
    body: Bytes,
) -> Result<Response, ApiError> {
    let template = parse_body(&headers, &body)?.map_err(EngineError::InvalidTemplate)?;
    let (status, view) = register(&shared, template).await?;
    Ok((status, Json(view)).into_response())
}

/// Registers a parsed template (REST and GraphQL): 201 when new, 200 when the same content is
/// already registered, 409 when the version exists with other content.
pub(crate) async fn register(
    shared: &Shared,
    template: TaskTemplate,
) -> Result<(StatusCode, TemplateView), ApiError> {
    let existing = shared
        .engine
        .registry()
        .resolve(
            &template.namespace_name,
            &template.name,
            Some(&template.version),
        )
        .map(|r| r.template);
    let (status, registered) = match existing {
        Some(existing) if *existing == template => (StatusCode::OK, existing),
        Some(_) => {
            return Err(ApiError::new(
                ErrorCode::TemplateVersionExists,
                format!(
                    "{} is already registered with different content; versions are immutable, register a new version",
                    template.full_name()
                ),
            ));
        }
        None => (
            StatusCode::CREATED,
            shared
                .engine
                .register_template(template, false)
                .await?
                .template,
        ),
    };
    Ok((status, template_view(shared, &registered)))
}

/// Validates a template without registering it: every error with its line and column, and the
/// handler classes this server does not know.
#[utoipa::path(
    post, path = "/templates/validate", tag = "templates",
    request_body(content = String, content_type = "application/yaml", description = "The template, in YAML or JSON"),
    responses(
        (status = 200, description = "The verdict (valid or not)", body = ValidationView),
        WriteErrors,
    )
)]
pub(crate) async fn validate_template(
    State(shared): State<Arc<Shared>>,
    headers: HeaderMap,
    body: Bytes,
) -> Result<Json<ValidationView>, ApiError> {
    Ok(Json(validation(&shared, parse_body(&headers, &body)?)))
}

/// What validating a parsed (or unparsable) template found (REST and GraphQL).
pub(crate) fn validation(
    shared: &Shared,
    parsed: Result<TaskTemplate, TemplateErrors>,
) -> ValidationView {
    match parsed {
        Ok(template) => {
            let unknown_handlers = unknown_handlers(shared, &template);
            ValidationView {
                valid: unknown_handlers.is_empty(),
                full_name: Some(template.full_name()),
                errors: Vec::new(),
                unknown_handlers,
            }
        }
        Err(errors) => ValidationView {
            valid: false,
            full_name: None,
            errors: problems(&errors),
            unknown_handlers: Vec::new(),
        },
    }
}

pub(crate) fn handler_namespaces(shared: &Shared, only: Option<&str>) -> Vec<HandlerNamespace> {
    let registry = shared.engine.registry();
    let mut namespaces: BTreeMap<String, BTreeMap<String, Vec<semver::Version>>> = BTreeMap::new();
    for (namespace, name, version) in registry.list(only) {
        namespaces
            .entry(namespace)
            .or_default()
            .entry(name)
            .or_default()
            .push(version);
    }
    namespaces
        .into_iter()
        .map(|(namespace, handlers)| HandlerNamespace {
            handlers: handlers
                .into_iter()
                .map(|(name, versions)| {
                    let mut step_handlers: Vec<String> = registry
                        .resolve(&namespace, &name, versions.last())
                        .map(|r| {
                            r.template
                                .step_templates
                                .iter()
                                .map(|s| s.handler_class.clone())
                                .collect()
                        })
                        .unwrap_or_default();
                    step_handlers.sort();
                    step_handlers.dedup();
                    HandlerView {
                        namespace: namespace.clone(),
                        name,
                        versions: versions.iter().map(ToString::to_string).collect(),
                        step_handlers,
                    }
                })
                .collect(),
            namespace,
        })
        .collect()
}

/// Lists handler namespaces with their workflows and versions.
#[utoipa::path(
    get, path = "/handlers", tag = "handlers",
    responses(
        (status = 200, description = "The namespaces", body = Vec<HandlerNamespace>),
        ReadErrors,
    )
)]
pub(crate) async fn list_handler_namespaces(
    State(shared): State<Arc<Shared>>,
) -> Json<Vec<HandlerNamespace>> {
    Json(handler_namespaces(&shared, None))
}

/// One handler namespace.
#[utoipa::path(
    get, path = "/handlers/{namespace}", tag = "handlers",
    params(("namespace" = String, Path, description = "The namespace")),
    responses(
        (status = 200, description = "The namespace", body = HandlerNamespace),
        ReadErrors,
    )
)]
pub(crate) async fn show_handler_namespace(
    State(shared): State<Arc<Shared>>,
    Path(namespace): Path<String>,
) -> Result<Json<HandlerNamespace>, ApiError> {
    handler_namespaces(&shared, Some(&namespace))
        .into_iter()
        .next()
        .map(Json)
        .ok_or_else(|| ApiError::not_found(format!("no handler namespace `{namespace}`")))
}

/// One handler (workflow) with its versions.
#[utoipa::path(
    get, path = "/handlers/{namespace}/{name}", tag = "handlers",
    params(
        ("namespace" = String, Path, description = "The namespace"),
        ("name" = String, Path, description = "The name"),
    ),
    responses(
        (status = 200, description = "The handler", body = HandlerView),
        ReadErrors,
    )
)]
pub(crate) async fn show_handler(
    State(shared): State<Arc<Shared>>,
    Path((namespace, name)): Path<(String, String)>,
) -> Result<Json<HandlerView>, ApiError> {
    handler_namespaces(&shared, Some(&namespace))
        .into_iter()
        .flat_map(|ns| ns.handlers)
        .find(|h| h.name == name)
        .map(Json)
        .ok_or_else(|| ApiError::not_found(format!("no handler `{namespace}/{name}`")))
}
