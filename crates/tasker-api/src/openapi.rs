//! The OpenAPI document's frame: title, security schemes and tags. The paths come from the
//! handlers' annotations.

use utoipa::openapi::security::{ApiKey, ApiKeyValue, HttpAuthScheme, HttpBuilder, SecurityScheme};
use utoipa::{Modify, OpenApi};

#[derive(OpenApi)]
#[openapi(
    info(
        title = "Tasker API",
        description = "Tasks, steps, templates, operator actions and live events of a Tasker workflow engine. Every error is `{\"error\": {\"code\", \"message\", \"details\", \"correlation_id\"}}`.",
        license(name = "MIT", identifier = "MIT"),
    ),
    servers((url = "/v1", description = "Where `tasker serve` mounts the API")),
    modifiers(&Security),
    security(("bearer" = []), ("api_key" = [])),
    components(schemas(crate::error::ErrorEnvelope)),
    tags(
        (name = "tasks", description = "Create, list and act on tasks"),
        (name = "steps", description = "The steps of a task"),
        (name = "templates", description = "Workflow templates"),
        (name = "handlers", description = "Handler discovery"),
        (name = "events", description = "Live events (Server-Sent Events)"),
        (name = "runtime", description = "Runtime switches: pause, resume and namespace limits"),
        (name = "health", description = "Probes; never authenticated"),
        (name = "analytics", description = "Performance and bottlenecks over a time window"),
    )
)]
pub(crate) struct ApiDoc;

struct Security;

impl Modify for Security {
    fn modify(&self, openapi: &mut utoipa::openapi::OpenApi) {
        let components = openapi.components.get_or_insert_with(Default::default);
        components.add_security_scheme(
            "bearer",
            SecurityScheme::Http(
                HttpBuilder::new()
                    .scheme(HttpAuthScheme::Bearer)
                    .bearer_format("JWT")
                    .build(),
            ),
        );
        components.add_security_scheme(
            "api_key",
            SecurityScheme::ApiKey(ApiKey::Header(ApiKeyValue::new(
                tasker_auth::API_KEY_HEADER,
            ))),
        );
    }
}
