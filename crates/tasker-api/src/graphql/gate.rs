//! The gate every GraphQL request passes before it runs: size, aliases, the method, then each
//! root field of the selected operation looked up in the permission table and authorized for
//! the caller. Nothing here reads the query as text: it walks the parsed document.

use std::collections::HashSet;
use std::sync::Arc;
use std::time::Duration;

use async_graphql::extensions::{Extension, ExtensionContext, ExtensionFactory, NextValidation};
use async_graphql::parser::types::{
    DocumentOperations, ExecutableDocument, OperationDefinition, OperationType, Selection,
    SelectionSet,
};
use async_graphql::{
    Data, ErrorExtensionValues, Response, ServerError, ValidationResult, Variables,
};
use futures::StreamExt as _;
use futures::stream::BoxStream;
use tasker_auth::{AuthorizationContext, Operation, Principal};

use super::TaskerSchema;
use super::loaders::Loaders;
use crate::error::ErrorCode;
use crate::state::Shared;

/// The correlation id of the HTTP request a GraphQL operation came in (empty over WebSocket:
/// the engine makes one per task).
#[derive(Debug, Clone)]
pub(crate) struct RequestCorrelation(pub(crate) String);

/// Whose side an error is on, in the classification Spring for GraphQL (and the tools that
/// read it) use: `BAD_REQUEST` for what the caller can fix (REST's 4xx other than 401 and
/// 403), `UNAUTHORIZED`, `FORBIDDEN`, or `INTERNAL_ERROR` for the server's own failures (5xx).
pub(crate) fn classification(code: ErrorCode, status: u16) -> Option<&'static str> {
    match (code, status) {
        (ErrorCode::Timeout, _) => None,
        (_, 401) => Some("UNAUTHORIZED"),
        (_, 403) => Some("FORBIDDEN"),
        (_, 400..=499) => Some("BAD_REQUEST"),
        (_, 500..=599) => Some("INTERNAL_ERROR"),
        _ => None,
    }
}

/// An error with a stable code in `extensions.code`, as REST puts it in `error.code`, the
/// status REST would answer with, and its classification.
pub(crate) fn error(code: ErrorCode, message: impl Into<String>) -> ServerError {
    let mut error = ServerError::new(message, None);
    let mut extensions = ErrorExtensionValues::default();
    let status = code.status().as_u16();
    extensions.set("code", code.as_str());
    extensions.set("status", status);
    if let Some(classification) = classification(code, status) {
        extensions.set("classification", classification);
    }
    error.extensions = Some(extensions);
    error
}

/// A response that is one such error.
pub(crate) fn refusal(code: ErrorCode, message: impl Into<String>) -> Response {
    Response::from_errors(vec![error(code, message)])
}

/// The gate, with the limits of `[graphql]`.
#[derive(Clone)]
pub(crate) struct Gate {
    shared: Arc<Shared>,
    max_query_bytes: usize,
    max_aliases: usize,
    max_batch: usize,
    max_depth: usize,
    max_complexity: usize,
    introspection: bool,
    timeout: Duration,
}

impl Gate {
    pub(crate) fn new(shared: Arc<Shared>, settings: &super::GraphqlSettings) -> Self {
        Self {
            shared,
            max_query_bytes: settings.max_query_bytes,
            max_aliases: settings.max_aliases,
            max_batch: settings.max_batch,
            max_depth: settings.max_depth,
            max_complexity: settings.max_complexity,
            introspection: settings.introspection.unwrap_or(false),
            timeout: settings.timeout().unwrap_or(Duration::from_secs(30)),
        }
    }

    pub(crate) fn max_batch(&self) -> usize {
        self.max_batch
    }

    /// Admits and runs one query or mutation (a subscription sent over HTTP is refused).
    pub(crate) async fn run(
        &self,
        schema: &TaskerSchema,
        principal: Principal,
        correlation: String,
        mut request: async_graphql::Request,
        get: bool,
    ) -> Response {
        let kind = match self.admit(&principal, &mut request, get).await {
            Ok(kind) => kind,
            Err(err) => return Response::from_errors(vec![err]),
        };
        if kind == OperationType::Subscription {
            return refusal(
                ErrorCode::BadRequest,
                "subscriptions run over the WebSocket at /graphql/ws",
            );
        }
        let request = request
            .data(principal)
            .data(Loaders::new(self.shared.clone()))
            .data(RequestCorrelation(correlation));
        match tokio::time::timeout(self.timeout, schema.execute(request)).await {
            Ok(response) => self.explain(response),
            Err(_) => refusal(
                ErrorCode::Timeout,
                format!(
                    "the operation took longer than {} s (graphql.timeout)",
                    self.timeout.as_secs_f64()
                ),
            ),
        }
    }

    /// Admits and runs an operation that arrived over WebSocket: a subscription streams, a
    /// query or mutation answers once.
    pub(crate) fn stream(
        &self,
        schema: TaskerSchema,
        principal: Principal,
        mut request: async_graphql::Request,
        session: Option<Arc<Data>>,
    ) -> BoxStream<'static, Response> {
        let gate = self.clone();
        futures::stream::once(async move {
            if let Err(err) = gate.admit(&principal, &mut request, false).await {
                return futures::stream::once(async { Response::from_errors(vec![err]) }).boxed();
            }
            let request = request
                .data(principal)
                .data(Loaders::new(gate.shared.clone()))
                .data(RequestCorrelation(String::new()));
            let explainer = gate.clone();
            schema
                .execute_stream_with_session_data(request, session.unwrap_or_default())
                .map(move |response| explainer.explain(response))
                .boxed()
        })
        .flatten()
        .boxed()
    }

    /// Gives the executor's depth and complexity refusals a code and the setting to change.
    fn explain(&self, mut response: Response) -> Response {
        for err in &mut response.errors {
            let (code, message) = if err.message.starts_with("Query is nested too deep")
                || err.message.starts_with("The recursion depth")
            {
                (
                    ErrorCode::TooDeep,
                    format!(
                        "the query nests deeper than {} levels (graphql.max_depth)",
                        self.max_depth
                    ),
                )
            } else if err.message.starts_with("Query is too complex") {
                (
                    ErrorCode::TooComplex,
                    format!(
                        "the query is more complex than {} (graphql.max_complexity): ask for fewer items or fewer fields",
                        self.max_complexity
                    ),
                )
            } else {
                continue;
            };
            *err = error(code, message);
        }
        response
    }

    /// Checks a request before it runs and answers which kind of operation it selects.
    pub(crate) async fn admit(
        &self,
        principal: &Principal,
        request: &mut async_graphql::Request,
        get: bool,
    ) -> Result<OperationType, ServerError> {
        if request.query.trim().is_empty() {
            return Err(error(
                ErrorCode::BadRequest,
                "the request has no `query` (a GraphQL request is `query`, `operationName` and `variables`)",
            ));
        }
        if request.query.len() > self.max_query_bytes {
            return Err(error(
                ErrorCode::PayloadTooLarge,
                format!(
                    "the query is {} bytes; at most {} are allowed (graphql.max_query_bytes)",
                    request.query.len(),
                    self.max_query_bytes
                ),
            ));
        }
        if !self.introspection {
            request.introspection_mode = async_graphql::IntrospectionMode::Disabled;
        }
        let operation_name = request.operation_name.clone();
        let variables = request.variables.clone();
        let document = request.parsed_query()?.clone();
        let aliases = count_aliases(&document);
        if aliases > self.max_aliases {
            return Err(error(
                ErrorCode::TooManyAliases,
                format!(
                    "the document has {aliases} aliased fields; at most {} are allowed (graphql.max_aliases)",
                    self.max_aliases
                ),
            ));
        }
        // An operation that cannot be selected is left to the executor, which names the
        // problem; it runs nothing.
        let Some(operation) = select(&document, operation_name.as_deref()) else {
            return Ok(OperationType::Query);
        };
        if get && operation.ty != OperationType::Query {
            return Err(error(
                ErrorCode::MethodNotAllowed,
                "GET runs queries only; send mutations with POST and subscriptions over /graphql/ws",
            ));
        }
        let mut fields = Vec::new();
        root_fields(
            &document,
            &operation.selection_set.node,
            &variables,
            &mut HashSet::new(),
            &mut fields,
        );
        for (field, resource) in fields {
            if field == "__typename" {
                continue;
            }
            if field == "__schema" || field == "__type" {
                if !self.introspection {
                    return Err(error(
                        ErrorCode::Forbidden,
                        format!(
                            "introspection (`{field}`) is switched off on this server (graphql.introspection)"
                        ),
                    ));
                }
                continue;
            }
            let Some(op) = Operation::for_graphql_field(&field) else {
                return Err(error(
                    ErrorCode::Forbidden,
                    format!("`{field}` is not in the permission table"),
                ));
            };
            let Some(permission) = op.permission() else {
                continue;
            };
            let mut context = AuthorizationContext::new().operation(op);
            if let Some(id) = resource {
                context = context.resource_id(id);
            }
            let decision = self.shared.access.authorize(principal, op, context).await;
            if !decision.is_allowed() {
                return Err(error(
                    ErrorCode::Forbidden,
                    format!("`{field}` needs the `{permission}` permission"),
                ));
            }
        }
        Ok(operation.ty)
    }
}

/// The operation a request runs, chosen as the executor chooses it.
fn select<'a>(
    document: &'a ExecutableDocument,
    name: Option<&str>,
) -> Option<&'a OperationDefinition> {
    match (&document.operations, name) {
        (DocumentOperations::Single(op), _) => Some(&op.node),
        (DocumentOperations::Multiple(ops), Some(name)) => ops.get(name).map(|op| &op.node),
        (DocumentOperations::Multiple(ops), None) if ops.len() == 1 => {
            ops.values().next().map(|op| &op.node)
        }
        (DocumentOperations::Multiple(_), None) => None,
    }
}

/// The root fields a selection set selects, through fragments, each with the id argument it
/// names (`id` or `taskId`, literal or variable) for the authorizer's context.
fn root_fields(
    document: &ExecutableDocument,
    set: &SelectionSet,
    variables: &Variables,
    seen: &mut HashSet<String>,
    out: &mut Vec<(String, Option<String>)>,
) {
    for item in &set.items {
        match &item.node {
            Selection::Field(field) => {
                let field = &field.node;
                let resource = field
                    .arguments
                    .iter()
                    .find(|(name, _)| matches!(name.node.as_str(), "id" | "taskId"))
                    .and_then(|(_, value)| {
                        value
                            .node
                            .clone()
                            .into_const_with(|name| variables.get(&name).cloned().ok_or(()))
                            .ok()
                    })
                    .and_then(|value| match value {
                        async_graphql::Value::String(s) => Some(s),
                        _ => None,
                    });
                out.push((field.name.node.to_string(), resource));
            }
            Selection::FragmentSpread(spread) => {
                let name = spread.node.fragment_name.node.to_string();
                if seen.insert(name.clone())
                    && let Some(fragment) = document.fragments.get(name.as_str())
                {
                    root_fields(
                        document,
                        &fragment.node.selection_set.node,
                        variables,
                        seen,
                        out,
                    );
                }
            }
            Selection::InlineFragment(inline) => root_fields(
                document,
                &inline.node.selection_set.node,
                variables,
                seen,
                out,
            ),
        }
    }
}

/// Aliased fields in every operation and fragment of a document.
fn count_aliases(document: &ExecutableDocument) -> usize {
    fn count(set: &SelectionSet) -> usize {
        set.items
            .iter()
            .map(|item| match &item.node {
                Selection::Field(field) => {
                    usize::from(field.node.alias.is_some()) + count(&field.node.selection_set.node)
                }
                Selection::FragmentSpread(_) => 0,
                Selection::InlineFragment(inline) => count(&inline.node.selection_set.node),
            })
            .sum()
    }
    let operations: usize = document
        .operations
        .iter()
        .map(|(_, op)| count(&op.node.selection_set.node))
        .sum();
    let fragments: usize = document
        .fragments
        .values()
        .map(|f| count(&f.node.selection_set.node))
        .sum();
    operations + fragments
}

/// An extension that stops every request right after validation with one error carrying its
/// message: documents are checked against the schema without running anything.
pub(crate) struct StopAfterValidation(pub(crate) &'static str);

impl ExtensionFactory for StopAfterValidation {
    fn create(&self) -> Arc<dyn Extension> {
        Arc::new(StopAfterValidation(self.0))
    }
}

#[async_trait::async_trait]
impl Extension for StopAfterValidation {
    async fn validation(
        &self,
        ctx: &ExtensionContext<'_>,
        next: NextValidation<'_>,
    ) -> Result<ValidationResult, Vec<ServerError>> {
        next.run(ctx).await?;
        Err(vec![ServerError::new(self.0, None)])
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(query: &str) -> ExecutableDocument {
        async_graphql::parser::parse_query(query).unwrap()
    }

    fn fields(query: &str, name: Option<&str>) -> Vec<(String, Option<String>)> {
        let document = parse(query);
        let operation = select(&document, name).unwrap();
        let mut out = Vec::new();
        let variables = Variables::from_json(serde_json::json!({"t": "abc"}));
        root_fields(
            &document,
            &operation.selection_set.node,
            &variables,
            &mut HashSet::new(),
            &mut out,
        );
        out
    }

    #[test]
    fn root_fields_come_through_fragments_with_their_ids() {
        let found = fields(
            "query Q($t: UUID!) { a: task(id: $t) { id } ...F ... on Query { handlers { namespace } } }
             fragment F on Query { templates { name } ...F }",
            None,
        );
        let names: Vec<&str> = found.iter().map(|(n, _)| n.as_str()).collect();
        assert_eq!(names, ["task", "templates", "handlers"]);
        assert_eq!(found[0].1.as_deref(), Some("abc"));
    }

    #[test]
    fn the_named_operation_is_the_one_checked() {
        let query = "query A { tasks { totalCount } } mutation B { cancelTask(id: \"x\") { id } }";
        assert_eq!(fields(query, Some("B"))[0].0, "cancelTask");
        assert_eq!(fields(query, Some("A"))[0].0, "tasks");
        assert!(select(&parse(query), None).is_none());
    }

    #[test]
    fn aliases_are_counted_everywhere() {
        let document = parse(
            "{ a: task(id: \"1\") { b: id } ...F } fragment F on Query { c: templates { name } }",
        );
        assert_eq!(count_aliases(&document), 3);
    }
}
