//! Blog post 03, microservices coordination: `blog_examples/user_registration@1.0.0` registers a
//! user across the user, billing, preferences and notification services. Every step is an
//! HTTP-style call (here to in-memory mocks answering status, headers and body) whose response
//! is classified into success, retryable or permanent; 409 Conflict means "already done", which
//! makes every step idempotent. The "circuit breaker" is the step state the engine persists.

use std::collections::{BTreeMap, HashMap};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use serde_json::{Value, json};
use tasker_domain::{StepError, TaskId, TaskRequest, TaskState};
use tasker_engine::{Clock, HttpResponse, StepContext, StepHandler, TaskHooks};

use crate::mock::{MockService, ServiceFailure, mock_base};
use crate::post_01_ecommerce_reliability::is_email;
use crate::{Registration, parent, permanent};

/// The template's `task_handler_class`.
pub const TASK_HOOKS: &str = "blog_examples::post_03::user_registration";

// ---------------------------------------------------------------------------------------------
// Models

/// A subscription plan.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Plan {
    /// No payment method needed.
    Free,
    /// Paid.
    Pro,
    /// Paid, with onboarding.
    Enterprise,
}

impl Plan {
    /// `free`, `pro` or `enterprise`; anything else is `free`.
    pub fn parse(value: Option<&str>) -> Self {
        match value {
            Some("pro") => Self::Pro,
            Some("enterprise") => Self::Enterprise,
            _ => Self::Free,
        }
    }

    /// Its name in contexts and payloads.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Free => "free",
            Self::Pro => "pro",
            Self::Enterprise => "enterprise",
        }
    }

    /// The features the welcome sequence announces.
    pub fn features(self) -> &'static [&'static str] {
        match self {
            Self::Enterprise => &[
                "advanced_analytics",
                "priority_support",
                "custom_integrations",
                "dedicated_account_manager",
            ],
            Self::Pro => &["analytics", "priority_support", "integrations"],
            Self::Free => &["basic_features", "community_support"],
        }
    }

    /// Onboarding steps: the common three, then the plan's own.
    pub fn onboarding_steps(self) -> Vec<&'static str> {
        let mut steps = vec!["complete_profile", "verify_email", "tour_dashboard"];
        steps.extend_from_slice(match self {
            Self::Enterprise => &["schedule_onboarding_call", "configure_sso"][..],
            Self::Pro => &["connect_integrations"][..],
            Self::Free => &[][..],
        });
        steps
    }
}

/// Why a registration request is unusable.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum RegistrationError {
    /// No `user_info.email`.
    #[error("user_info.email is required")]
    MissingEmail,
    /// No `user_info.name`.
    #[error("user_info.name is required")]
    MissingName,
    /// The email is not an address.
    #[error("user_info.email `{0}` is not a valid address")]
    InvalidEmail(String),
}

/// The user to register, as read from the task context.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NewUser {
    /// Email (unique in the user service).
    pub email: String,
    /// Full name.
    pub name: String,
    /// Plan.
    pub plan: Plan,
    /// Where they signed up (`web` by default).
    pub source: String,
}

impl NewUser {
    /// Reads and checks `context.user_info`.
    pub fn from_context(context: &Value) -> Result<Self, RegistrationError> {
        let info = &context["user_info"];
        let email = info["email"]
            .as_str()
            .ok_or(RegistrationError::MissingEmail)?;
        let name = info["name"]
            .as_str()
            .filter(|n| !n.trim().is_empty())
            .ok_or(RegistrationError::MissingName)?;
        if !is_email(email) {
            return Err(RegistrationError::InvalidEmail(email.to_owned()));
        }
        Ok(Self {
            email: email.to_owned(),
            name: name.to_owned(),
            plan: Plan::parse(info["plan"].as_str()),
            source: info["source"].as_str().unwrap_or("web").to_owned(),
        })
    }
}

// ---------------------------------------------------------------------------------------------
// Services: HTTP-style answers (status, headers, body), no network.

/// The user service.
pub trait UserService: Send + Sync {
    /// `POST /users`: 201 with the new user, or 409 with the existing one.
    fn create_user(&self, user: &NewUser) -> Result<HttpResponse, ServiceFailure>;
    /// `PATCH /users/{id}`: 200, or 404 for an unknown id.
    fn update_user_status(
        &self,
        user_id: i64,
        status: &str,
        completed_steps: &[String],
    ) -> Result<HttpResponse, ServiceFailure>;
}

/// The billing service.
pub trait BillingService: Send + Sync {
    /// `POST /billing_profiles`: 201, 409 when one exists, 402 for a paid plan with no payment
    /// method.
    fn create_billing_profile(
        &self,
        user_id: i64,
        plan: Plan,
        payment_method: Option<&str>,
    ) -> Result<HttpResponse, ServiceFailure>;
}

/// The preferences service.
pub trait PreferencesService: Send + Sync {
    /// `POST /preferences`: 201, or 409 when they exist.
    fn create_preferences(
        &self,
        user_id: i64,
        preferences: &Value,
    ) -> Result<HttpResponse, ServiceFailure>;
}

/// The notification service.
pub trait NotificationService: Send + Sync {
    /// `POST /welcome_sequences`: 200, or 429 with `retry-after` when the user was sent too many.
    fn send_welcome_sequence(
        &self,
        user_id: i64,
        email: &str,
        plan: Plan,
    ) -> Result<HttpResponse, ServiceFailure>;
}

fn response(status: u16, body: Value) -> HttpResponse {
    HttpResponse {
        status,
        headers: BTreeMap::from([("x-response-time".to_owned(), "12ms".to_owned())]),
        body,
    }
}

/// A stub is `{status, body, headers?}`.
fn stubbed(stub: Value) -> HttpResponse {
    let mut answer = response(
        stub["status"].as_u64().unwrap_or(200) as u16,
        stub["body"].clone(),
    );
    if let Some(headers) = stub["headers"].as_object() {
        for (name, value) in headers {
            answer.headers.insert(
                name.to_ascii_lowercase(),
                value.as_str().unwrap_or_default().to_owned(),
            );
        }
    }
    answer
}

/// Mock user service: users get sequential ids from 1; emails are unique.
#[derive(Debug)]
pub struct MockUserService {
    base: MockService,
    users: Mutex<Vec<Value>>,
}

/// Mock billing service.
#[derive(Debug)]
pub struct MockBillingService {
    base: MockService,
    profiles: Mutex<HashMap<i64, Value>>,
}

/// Mock preferences service.
#[derive(Debug)]
pub struct MockPreferencesService {
    base: MockService,
    saved: Mutex<HashMap<i64, Value>>,
}

/// Mock notification service: at most [`MockNotificationService::PER_USER_LIMIT`] sequences a
/// user, then 429.
#[derive(Debug)]
pub struct MockNotificationService {
    base: MockService,
    sent: Mutex<HashMap<i64, u32>>,
}

mock_base!(
    MockUserService,
    MockBillingService,
    MockPreferencesService,
    MockNotificationService
);

impl MockUserService {
    /// A fresh mock with no users.
    pub fn new(clock: Arc<dyn Clock>) -> Self {
        Self {
            base: MockService::new("user_service", clock),
            users: Mutex::new(Vec::new()),
        }
    }

    /// The users it holds.
    pub fn users(&self) -> Vec<Value> {
        self.users.lock().unwrap_or_else(|e| e.into_inner()).clone()
    }
}

impl UserService for MockUserService {
    fn create_user(&self, user: &NewUser) -> Result<HttpResponse, ServiceFailure> {
        let arguments = json!({"email": user.email, "name": user.name, "plan": user.plan.as_str()});
        if let Some(stub) = self.base.call("create_user", arguments)? {
            return Ok(stubbed(stub));
        }
        let mut users = self.users.lock().unwrap_or_else(|e| e.into_inner());
        if let Some(existing) = users.iter().find(|u| u["email"] == user.email.as_str()) {
            return Ok(response(
                409,
                json!({"error": "user already exists", "existing_user": existing}),
            ));
        }
        let created = json!({"id": users.len() + 1, "email": user.email, "name": user.name,
                             "plan": user.plan.as_str(), "status": "pending",
                             "created_at": self.base.now()});
        users.push(created.clone());
        Ok(response(201, created))
    }

    fn update_user_status(
        &self,
        user_id: i64,
        status: &str,
        completed_steps: &[String],
    ) -> Result<HttpResponse, ServiceFailure> {
        let arguments =
            json!({"user_id": user_id, "status": status, "completed_steps": completed_steps});
        if let Some(stub) = self.base.call("update_user_status", arguments)? {
            return Ok(stubbed(stub));
        }
        let mut users = self.users.lock().unwrap_or_else(|e| e.into_inner());
        match users.iter_mut().find(|u| u["id"] == user_id) {
            Some(user) => {
                user["status"] = json!(status);
                Ok(response(200, user.clone()))
            }
            None => Ok(response(
                404,
                json!({"error": format!("user {user_id} not found")}),
            )),
        }
    }
}

impl MockBillingService {
    /// A fresh mock.
    pub fn new(clock: Arc<dyn Clock>) -> Self {
        Self {
            base: MockService::new("billing_service", clock),
            profiles: Mutex::new(HashMap::new()),
        }
    }
}

impl BillingService for MockBillingService {
    fn create_billing_profile(
        &self,
        user_id: i64,
        plan: Plan,
        payment_method: Option<&str>,
    ) -> Result<HttpResponse, ServiceFailure> {
        let arguments =
            json!({"user_id": user_id, "plan": plan.as_str(), "payment_method": payment_method});
        if let Some(stub) = self.base.call("create_billing_profile", arguments)? {
            return Ok(stubbed(stub));
        }
        let mut profiles = self.profiles.lock().unwrap_or_else(|e| e.into_inner());
        if let Some(existing) = profiles.get(&user_id) {
            return Ok(response(
                409,
                json!({"error": "profile exists", "existing_profile": existing}),
            ));
        }
        if plan != Plan::Free && payment_method.is_none() {
            return Ok(response(
                402,
                json!({"error": format!("plan {} needs a payment method", plan.as_str())}),
            ));
        }
        let profile = json!({"id": format!("billing_{user_id}"), "user_id": user_id,
                             "plan": plan.as_str(), "status": "active"});
        profiles.insert(user_id, profile.clone());
        Ok(response(201, profile))
    }
}

impl MockPreferencesService {
    /// A fresh mock.
    pub fn new(clock: Arc<dyn Clock>) -> Self {
        Self {
            base: MockService::new("preferences_service", clock),
            saved: Mutex::new(HashMap::new()),
        }
    }
}

impl PreferencesService for MockPreferencesService {
    fn create_preferences(
        &self,
        user_id: i64,
        preferences: &Value,
    ) -> Result<HttpResponse, ServiceFailure> {
        let arguments = json!({"user_id": user_id, "preferences": preferences});
        if let Some(stub) = self.base.call("create_preferences", arguments)? {
            return Ok(stubbed(stub));
        }
        let mut saved = self.saved.lock().unwrap_or_else(|e| e.into_inner());
        if let Some(existing) = saved.get(&user_id) {
            return Ok(response(
                409,
                json!({"error": "preferences exist", "existing_preferences": existing}),
            ));
        }
        let created = json!({"id": format!("prefs_{user_id}"), "user_id": user_id, "preferences": preferences});
        saved.insert(user_id, created.clone());
        Ok(response(201, created))
    }
}

impl MockNotificationService {
    /// Welcome sequences one user may receive before the service answers 429.
    pub const PER_USER_LIMIT: u32 = 3;

    /// A fresh mock.
    pub fn new(clock: Arc<dyn Clock>) -> Self {
        Self {
            base: MockService::new("notification_service", clock),
            sent: Mutex::new(HashMap::new()),
        }
    }
}

impl NotificationService for MockNotificationService {
    fn send_welcome_sequence(
        &self,
        user_id: i64,
        email: &str,
        plan: Plan,
    ) -> Result<HttpResponse, ServiceFailure> {
        let arguments = json!({"user_id": user_id, "email": email, "plan": plan.as_str()});
        if let Some(stub) = self.base.call("send_welcome_sequence", arguments)? {
            return Ok(stubbed(stub));
        }
        let mut sent = self.sent.lock().unwrap_or_else(|e| e.into_inner());
        let count = sent.entry(user_id).or_default();
        if *count >= Self::PER_USER_LIMIT {
            let mut limited = response(429, json!({"error": "rate limited"}));
            limited.headers.insert("retry-after".into(), "30".into());
            return Ok(limited);
        }
        *count += 1;
        let template = match plan {
            Plan::Free => "welcome_standard",
            Plan::Pro => "welcome_pro",
            Plan::Enterprise => "welcome_enterprise",
        };
        let mut messages = vec![json!({"template": template, "to": email})];
        if plan == Plan::Enterprise {
            messages.push(json!({"template": "enterprise_onboarding", "to": email}));
        }
        Ok(response(
            200,
            json!({"messages": messages, "status": "sent"}),
        ))
    }
}

/// The outside services of post 03.
#[derive(Clone)]
pub struct Services {
    /// Users.
    pub users: Arc<MockUserService>,
    /// Billing.
    pub billing: Arc<MockBillingService>,
    /// Preferences.
    pub preferences: Arc<MockPreferencesService>,
    /// Notifications.
    pub notifications: Arc<MockNotificationService>,
    /// Timestamps and generated correlation ids.
    pub clock: Arc<dyn Clock>,
}

impl Services {
    /// Fresh mocks on `clock`.
    pub fn new(clock: Arc<dyn Clock>) -> Self {
        Self {
            users: Arc::new(MockUserService::new(clock.clone())),
            billing: Arc::new(MockBillingService::new(clock.clone())),
            preferences: Arc::new(MockPreferencesService::new(clock.clone())),
            notifications: Arc::new(MockNotificationService::new(clock.clone())),
            clock,
        }
    }
}

// ---------------------------------------------------------------------------------------------
// Step handlers

/// The blog's classification of a non-2xx answer. 409 never reaches it: each step decides what
/// "already exists" means for its resource.
pub fn classify(service: &str, response: &HttpResponse) -> StepError {
    let status = response.status;
    let message = format!(
        "{service} answered {status}: {}",
        response.body["error"].as_str().unwrap_or("no details")
    );
    let context = json!({"response_status": status, "response_body": response.body});
    match status {
        400 | 422 => permanent(message, "CLIENT_VALIDATION_ERROR").with_context(context),
        401 | 403 => permanent(message, "AUTH_ERROR").with_context(context),
        // A paid plan without a payment method: retrying cannot add one.
        402 => permanent(message, "PAYMENT_REQUIRED").with_context(context),
        404 => permanent(message, "RESOURCE_NOT_FOUND").with_context(context),
        429 => {
            let wait = response
                .headers
                .get("retry-after")
                .and_then(|v| v.parse().ok())
                .unwrap_or(60);
            StepError::retryable(message)
                .with_code("RATE_LIMITED")
                .with_retry_after(Duration::from_secs(wait))
                .with_context(context)
        }
        _ => StepError::retryable(message)
            .with_code(format!("HTTP_{status}"))
            .with_context(context),
    }
}

fn unavailable(failure: ServiceFailure) -> StepError {
    StepError::retryable(failure.to_string()).with_code("SERVICE_UNAVAILABLE")
}

fn user_id(results: &Value) -> Result<i64, StepError> {
    results["user_id"].as_i64().ok_or_else(|| {
        permanent(
            "user_id is missing from upstream results",
            "MISSING_USER_ID",
        )
    })
}

fn new_user(step: &StepContext) -> Result<NewUser, StepError> {
    NewUser::from_context(&step.task_context)
        .map_err(|e| permanent(e.to_string(), "CLIENT_VALIDATION_ERROR"))
}

struct CreateUserAccount(Arc<dyn UserService>);
struct SetupBillingProfile(Arc<dyn BillingService>);
struct InitializePreferences(Arc<dyn PreferencesService>);
struct SendWelcomeSequence(Arc<dyn NotificationService>);
struct UpdateUserStatus(Arc<dyn UserService>, Arc<dyn Clock>);

#[async_trait::async_trait]
impl StepHandler for CreateUserAccount {
    async fn handle(&self, step: StepContext) -> Result<Value, StepError> {
        let user = new_user(&step)?;
        let answer = self.0.create_user(&user).map_err(unavailable)?;
        let (body, status) = match answer.status {
            201 => (&answer.body, "created"),
            409 => {
                let existing = &answer.body["existing_user"];
                let same = existing["email"] == user.email.as_str()
                    && existing["name"] == user.name.as_str()
                    && existing["plan"] == user.plan.as_str();
                if !same {
                    return Err(permanent(
                        format!("{} is registered with different details", user.email),
                        "USER_CONFLICT",
                    ));
                }
                (existing, "already_exists")
            }
            _ => return Err(classify("user service", &answer)),
        };
        Ok(json!({
            "user_id": body["id"],
            "email": body["email"],
            "created_at": body["created_at"],
            "correlation_id": step.correlation_id,
            "service_response_time": answer.headers.get("x-response-time"),
            "status": status,
        }))
    }
}

#[async_trait::async_trait]
impl StepHandler for SetupBillingProfile {
    async fn handle(&self, step: StepContext) -> Result<Value, StepError> {
        let id = user_id(parent(&step, "create_user_account")?)?;
        let user = new_user(&step)?;
        let method = step.task_context["billing_info"]["payment_method"].as_str();
        let answer = self
            .0
            .create_billing_profile(id, user.plan, method)
            .map_err(unavailable)?;
        let (profile, status) = match answer.status {
            201 => (&answer.body, "created"),
            409 => (&answer.body["existing_profile"], "already_exists"),
            _ => return Err(classify("billing service", &answer)),
        };
        Ok(
            json!({"profile_id": profile["id"], "user_id": id, "plan": user.plan.as_str(), "status": status}),
        )
    }
}

#[async_trait::async_trait]
impl StepHandler for InitializePreferences {
    async fn handle(&self, step: StepContext) -> Result<Value, StepError> {
        let id = user_id(parent(&step, "create_user_account")?)?;
        let preferences = match &step.task_context["preferences"] {
            Value::Null => {
                json!({"marketing_emails": false, "product_updates": true, "newsletter": false})
            }
            given => given.clone(),
        };
        let answer = self
            .0
            .create_preferences(id, &preferences)
            .map_err(unavailable)?;
        let (saved, status) = match answer.status {
            201 => (&answer.body, "created"),
            409 => (&answer.body["existing_preferences"], "already_exists"),
            _ => return Err(classify("preferences service", &answer)),
        };
        Ok(
            json!({"preferences_id": saved["id"], "user_id": id, "preferences": saved["preferences"], "status": status}),
        )
    }
}

#[async_trait::async_trait]
impl StepHandler for SendWelcomeSequence {
    async fn handle(&self, step: StepContext) -> Result<Value, StepError> {
        let id = user_id(parent(&step, "setup_billing_profile")?)?;
        if user_id(parent(&step, "initialize_preferences")?)? != id {
            return Err(permanent(
                "billing and preferences disagree on the user",
                "USER_MISMATCH",
            ));
        }
        let user = new_user(&step)?;
        let answer = self
            .0
            .send_welcome_sequence(id, &user.email, user.plan)
            .map_err(unavailable)?;
        if answer.status != 200 {
            // The blog's notification service asks for 30 s when it gives no Retry-After.
            let mut error = classify("notification service", &answer);
            if answer.status == 429 && !answer.headers.contains_key("retry-after") {
                error.retry_after = Some(Duration::from_secs(30));
            }
            return Err(error);
        }
        Ok(json!({
            "user_id": id,
            "plan": user.plan.as_str(),
            "messages_sent": answer.body["messages"].as_array().map_or(0, Vec::len),
            "plan_features": user.plan.features(),
            "onboarding_steps": user.plan.onboarding_steps(),
            "status": "sent",
        }))
    }
}

#[async_trait::async_trait]
impl StepHandler for UpdateUserStatus {
    async fn handle(&self, step: StepContext) -> Result<Value, StepError> {
        let id = user_id(parent(&step, "send_welcome_sequence")?)?;
        let completed: Vec<String> = [
            "create_user_account",
            "setup_billing_profile",
            "initialize_preferences",
            "send_welcome_sequence",
        ]
        .map(str::to_owned)
        .to_vec();
        let answer = self
            .0
            .update_user_status(id, "registration_complete", &completed)
            .map_err(unavailable)?;
        match answer.status {
            200 => Ok(json!({
                "user_id": id,
                "status": "registration_complete",
                "completed_steps": completed,
                "updated_at": self.1.now(),
            })),
            404 => Err(permanent(format!("user {id} not found"), "USER_NOT_FOUND")),
            _ => Err(classify("user service", &answer)),
        }
    }
}

/// Fills in `correlation_id` (kept when given), `registration_source` and `plan_type` before the
/// task is created, and records the outcome when it finishes.
struct RegistrationHooks(Arc<dyn Clock>);

#[async_trait::async_trait]
impl TaskHooks for RegistrationHooks {
    async fn establish_step_dependencies_and_defaults(
        &self,
        request: &mut TaskRequest,
    ) -> Result<(), StepError> {
        let Some(context) = request.context.as_object_mut() else {
            return Ok(());
        };
        let info = context.get("user_info").cloned().unwrap_or(Value::Null);
        let plan = info["plan"].as_str().unwrap_or("free").to_owned();
        let source = info["source"].as_str().unwrap_or("web").to_owned();
        if !context.get("correlation_id").is_some_and(Value::is_string) {
            let suffix = uuid::Uuid::new_v4().simple().to_string();
            let id = format!("reg_{}_{}", self.0.now().timestamp(), &suffix[..8]);
            context.insert("correlation_id".into(), json!(id));
        }
        context.insert("plan_type".into(), json!(plan));
        context.insert("registration_source".into(), json!(source));
        Ok(())
    }

    async fn update_annotations(&self, _task_id: TaskId, state: TaskState) -> Vec<(String, Value)> {
        vec![("registration_outcome".into(), json!({"state": state}))]
    }
}

pub(crate) fn registration(services: &Services) -> Registration {
    let s = services;
    Registration {
        handlers: vec![
            (
                "blog_examples::post_03::create_user_account",
                Arc::new(CreateUserAccount(s.users.clone())),
            ),
            (
                "blog_examples::post_03::setup_billing_profile",
                Arc::new(SetupBillingProfile(s.billing.clone())),
            ),
            (
                "blog_examples::post_03::initialize_preferences",
                Arc::new(InitializePreferences(s.preferences.clone())),
            ),
            (
                "blog_examples::post_03::send_welcome_sequence",
                Arc::new(SendWelcomeSequence(s.notifications.clone())),
            ),
            (
                "blog_examples::post_03::update_user_status",
                Arc::new(UpdateUserStatus(s.users.clone(), s.clock.clone())),
            ),
        ],
        hooks: vec![(TASK_HOOKS, Arc::new(RegistrationHooks(s.clock.clone())))],
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn answer(status: u16, headers: &[(&str, &str)]) -> HttpResponse {
        let mut r = response(status, json!({"error": "nope"}));
        for (k, v) in headers {
            r.headers.insert((*k).into(), (*v).into());
        }
        r
    }

    #[test]
    fn status_codes_are_classified_as_the_blog_says() {
        let code = |status, headers: &[(&str, &str)]| {
            let e = classify("svc", &answer(status, headers));
            (
                e.is_permanent(),
                e.error_code.unwrap(),
                e.retry_after.map(|d| d.as_secs()),
            )
        };
        assert_eq!(
            code(400, &[]),
            (true, "CLIENT_VALIDATION_ERROR".into(), None)
        );
        assert_eq!(
            code(422, &[]),
            (true, "CLIENT_VALIDATION_ERROR".into(), None)
        );
        assert_eq!(code(401, &[]), (true, "AUTH_ERROR".into(), None));
        assert_eq!(code(403, &[]), (true, "AUTH_ERROR".into(), None));
        assert_eq!(code(404, &[]), (true, "RESOURCE_NOT_FOUND".into(), None));
        assert_eq!(code(402, &[]), (true, "PAYMENT_REQUIRED".into(), None));
        assert_eq!(code(429, &[]), (false, "RATE_LIMITED".into(), Some(60)));
        assert_eq!(
            code(429, &[("retry-after", "7")]),
            (false, "RATE_LIMITED".into(), Some(7))
        );
        assert_eq!(code(503, &[]), (false, "HTTP_503".into(), None));
        assert_eq!(code(302, &[]), (false, "HTTP_302".into(), None));
    }

    #[test]
    fn plans_shape_the_welcome_sequence() {
        assert_eq!(Plan::parse(Some("enterprise")).features().len(), 4);
        assert_eq!(Plan::parse(None), Plan::Free);
        assert_eq!(
            Plan::Pro.onboarding_steps(),
            [
                "complete_profile",
                "verify_email",
                "tour_dashboard",
                "connect_integrations"
            ]
        );
        let err = NewUser::from_context(&json!({"user_info": {"email": "nope", "name": "N"}}));
        assert_eq!(err, Err(RegistrationError::InvalidEmail("nope".into())));
    }
}
