//! Blog post 04, team scaling: two teams own a workflow called `process_refund`. The payments
//! team's `payments/process_refund@2.1.0` moves the money through the gateway; the customer
//! success team's `customer_success/process_refund@1.3.0` checks the ticket, the policy and a
//! manager's approval, then delegates to the payments workflow through the Tasker REST API
//! (here a mock that records the request it would send).

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

use serde_json::{Value, json};
use tasker_domain::StepError;
use tasker_engine::{Clock, HttpResponse, StepContext, StepHandler};

use crate::mock::{MockService, ServiceFailure, mock_base, sequential_id};
use crate::{Registration, parent, permanent};

/// Refunds above this many cents need a manager's approval.
pub const APPROVAL_THRESHOLD_CENTS: i64 = 10_000;

// ---------------------------------------------------------------------------------------------
// Models

/// Why a refund request is unusable.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum RefundRequestError {
    /// A required identifier is missing or empty.
    #[error("{0} is required")]
    Missing(&'static str),
    /// The amount is not a positive whole number of cents.
    #[error("refund_amount must be a positive number of cents, got {0}")]
    InvalidAmount(String),
}

/// A customer's refund request, as the customer success team receives it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RefundRequest {
    /// Support ticket.
    pub ticket_id: String,
    /// Customer.
    pub customer_id: String,
    /// Amount in cents.
    pub refund_amount: i64,
    /// Free-text reason.
    pub refund_reason: Option<String>,
    /// The payment to refund.
    pub payment_id: Option<String>,
    /// Whether a manager must approve (default true).
    pub requires_approval: bool,
}

impl RefundRequest {
    /// Reads and checks the customer success task context.
    pub fn from_context(context: &Value) -> Result<Self, RefundRequestError> {
        let text = |key: &'static str| {
            context[key]
                .as_str()
                .filter(|s| !s.trim().is_empty())
                .map(str::to_owned)
                .ok_or(RefundRequestError::Missing(key))
        };
        let refund_amount = context["refund_amount"]
            .as_i64()
            .filter(|a| *a > 0)
            .ok_or_else(|| {
                RefundRequestError::InvalidAmount(context["refund_amount"].to_string())
            })?;
        Ok(Self {
            ticket_id: text("ticket_id")?,
            customer_id: text("customer_id")?,
            refund_amount,
            refund_reason: text("refund_reason").ok(),
            payment_id: text("payment_id").ok(),
            requires_approval: context["requires_approval"].as_bool().unwrap_or(true),
        })
    }

    /// The payments team's reason code for this request's free-text reason.
    pub fn payments_reason(&self) -> &'static str {
        match self.refund_reason.as_deref() {
            Some("fraud") => "fraud",
            Some("system_error") => "system_error",
            Some("chargeback") => "chargeback",
            _ => "customer_request",
        }
    }
}

// ---------------------------------------------------------------------------------------------
// Services

/// The payment gateway (payments team).
pub trait PaymentGateway: Send + Sync {
    /// Whether `payment_id` can be refunded by `refund_amount` cents; `status` is `eligible`
    /// when it can.
    fn validate_payment_eligibility(
        &self,
        payment_id: &str,
        refund_amount: i64,
        refund_reason: &str,
        partial_refund: bool,
    ) -> Result<Value, ServiceFailure>;
    /// Moves the money back; `status` is `completed` when done.
    fn process_refund(
        &self,
        payment_id: &str,
        refund_amount: i64,
        idempotency_key: &str,
    ) -> Result<Value, ServiceFailure>;
    /// Records the refund against the payment.
    fn update_payment_record(
        &self,
        payment_id: &str,
        refund_id: &str,
    ) -> Result<Value, ServiceFailure>;
    /// Emails the card holder that the refund is on its way.
    fn send_refund_notice(
        &self,
        payment_id: &str,
        refund_id: &str,
    ) -> Result<Value, ServiceFailure>;
}

/// The customer success team's systems: tickets, policy, approvals.
pub trait CustomerServiceSystem: Send + Sync {
    /// The ticket; `status` is `open`, `in_progress`, `closed`, `cancelled` or `duplicate`.
    fn get_ticket(&self, ticket_id: &str) -> Result<Value, ServiceFailure>;
    /// Sets the ticket's status.
    fn update_ticket(
        &self,
        ticket_id: &str,
        status: &str,
        note: &str,
    ) -> Result<Value, ServiceFailure>;
    /// The refund policy's verdict: `approved`, `conditional_approval`, `denied` or
    /// `requires_review`, and whether a manager must approve.
    fn check_refund_policy(
        &self,
        customer_id: &str,
        refund_amount: i64,
    ) -> Result<Value, ServiceFailure>;
    /// Asks a manager: `approved` (with an `approval_id`), `pending`, `denied` or `expired`.
    fn request_manager_approval(
        &self,
        ticket_id: &str,
        refund_amount: i64,
    ) -> Result<Value, ServiceFailure>;
}

/// The Tasker REST API as the customer success team calls it.
pub trait TaskerApi: Send + Sync {
    /// `POST /tasker/tasks` with `payload`.
    fn create_task(&self, payload: &Value) -> Result<HttpResponse, ServiceFailure>;
}

/// Mock gateway: every payment eligible, every refund completed.
#[derive(Debug)]
pub struct MockPaymentGateway {
    base: MockService,
    next: AtomicU64,
}

/// Mock ticketing, policy and approval systems: tickets open, policy approved, managers
/// approve.
#[derive(Debug)]
pub struct MockCustomerServiceSystem {
    base: MockService,
    next: AtomicU64,
}

/// Mock Tasker API: accepts every task (201, `created`).
#[derive(Debug)]
pub struct MockTaskerApi {
    base: MockService,
    next: AtomicU64,
}

mock_base!(MockPaymentGateway, MockCustomerServiceSystem, MockTaskerApi);

impl MockPaymentGateway {
    /// A fresh mock.
    pub fn new(clock: Arc<dyn Clock>) -> Self {
        Self {
            base: MockService::new("payment_gateway", clock),
            next: AtomicU64::new(1),
        }
    }
}

impl PaymentGateway for MockPaymentGateway {
    fn validate_payment_eligibility(
        &self,
        payment_id: &str,
        refund_amount: i64,
        refund_reason: &str,
        partial_refund: bool,
    ) -> Result<Value, ServiceFailure> {
        let arguments = json!({"payment_id": payment_id, "refund_amount": refund_amount,
                               "refund_reason": refund_reason, "partial_refund": partial_refund});
        Ok(self
            .base
            .call("validate_payment_eligibility", arguments)?
            .unwrap_or_else(|| {
                json!({"status": "eligible", "payment_id": payment_id,
                       "refundable_amount": refund_amount, "original_amount": refund_amount})
            }))
    }

    fn process_refund(
        &self,
        payment_id: &str,
        refund_amount: i64,
        idempotency_key: &str,
    ) -> Result<Value, ServiceFailure> {
        let arguments = json!({"payment_id": payment_id, "refund_amount": refund_amount,
                               "idempotency_key": idempotency_key});
        if let Some(stub) = self.base.call("process_refund", arguments)? {
            return Ok(stub);
        }
        let n = self.next.fetch_add(1, Ordering::Relaxed);
        Ok(
            json!({"status": "completed", "refund_id": sequential_id("rfnd", n),
                  "refund_amount": refund_amount, "processed_at": self.base.now()}),
        )
    }

    fn update_payment_record(
        &self,
        payment_id: &str,
        refund_id: &str,
    ) -> Result<Value, ServiceFailure> {
        let arguments = json!({"payment_id": payment_id, "refund_id": refund_id});
        Ok(self
            .base
            .call("update_payment_record", arguments)?
            .unwrap_or_else(
                || json!({"status": "updated", "record_id": format!("rec_{payment_id}")}),
            ))
    }

    fn send_refund_notice(
        &self,
        payment_id: &str,
        refund_id: &str,
    ) -> Result<Value, ServiceFailure> {
        let arguments = json!({"payment_id": payment_id, "refund_id": refund_id});
        Ok(self
            .base
            .call("send_refund_notice", arguments)?
            .unwrap_or_else(|| json!({"status": "sent"})))
    }
}

impl MockCustomerServiceSystem {
    /// A fresh mock.
    pub fn new(clock: Arc<dyn Clock>) -> Self {
        Self {
            base: MockService::new("customer_service", clock),
            next: AtomicU64::new(1),
        }
    }
}

impl CustomerServiceSystem for MockCustomerServiceSystem {
    fn get_ticket(&self, ticket_id: &str) -> Result<Value, ServiceFailure> {
        Ok(self
            .base
            .call("get_ticket", json!({"ticket_id": ticket_id}))?
            .unwrap_or_else(|| json!({"ticket_id": ticket_id, "status": "open"})))
    }

    fn update_ticket(
        &self,
        ticket_id: &str,
        status: &str,
        note: &str,
    ) -> Result<Value, ServiceFailure> {
        let arguments = json!({"ticket_id": ticket_id, "status": status, "note": note});
        Ok(self
            .base
            .call("update_ticket", arguments)?
            .unwrap_or_else(|| json!({"ticket_id": ticket_id, "status": status})))
    }

    fn check_refund_policy(
        &self,
        customer_id: &str,
        refund_amount: i64,
    ) -> Result<Value, ServiceFailure> {
        let arguments = json!({"customer_id": customer_id, "refund_amount": refund_amount});
        Ok(self
            .base
            .call("check_refund_policy", arguments)?
            .unwrap_or_else(|| {
                json!({"status": "approved",
                       "requires_approval": refund_amount > APPROVAL_THRESHOLD_CENTS})
            }))
    }

    fn request_manager_approval(
        &self,
        ticket_id: &str,
        refund_amount: i64,
    ) -> Result<Value, ServiceFailure> {
        let arguments = json!({"ticket_id": ticket_id, "refund_amount": refund_amount});
        if let Some(stub) = self.base.call("request_manager_approval", arguments)? {
            return Ok(stub);
        }
        let n = self.next.fetch_add(1, Ordering::Relaxed);
        Ok(
            json!({"status": "approved", "approval_id": format!("APPR-{n:08X}"), "manager_id": "MGR-1"}),
        )
    }
}

impl MockTaskerApi {
    /// A fresh mock.
    pub fn new(clock: Arc<dyn Clock>) -> Self {
        Self {
            base: MockService::new("tasker_api", clock),
            next: AtomicU64::new(1),
        }
    }
}

impl TaskerApi for MockTaskerApi {
    fn create_task(&self, payload: &Value) -> Result<HttpResponse, ServiceFailure> {
        let stub = self.base.call("create_task", payload.clone())?;
        let (status, body) = match stub {
            Some(stub) => (
                stub["status"].as_u64().unwrap_or(201) as u16,
                stub["body"].clone(),
            ),
            None => {
                let n = self.next.fetch_add(1, Ordering::Relaxed);
                (
                    201,
                    json!({"task_id": sequential_id("task", n), "status": "created"}),
                )
            }
        };
        Ok(HttpResponse {
            status,
            headers: Default::default(),
            body,
        })
    }
}

/// The outside services of post 04.
#[derive(Clone)]
pub struct Services {
    /// Payments team: the gateway.
    pub gateway: Arc<MockPaymentGateway>,
    /// Customer success team: tickets, policy, approvals.
    pub customer_service: Arc<MockCustomerServiceSystem>,
    /// The Tasker API the delegation goes through.
    pub tasker_api: Arc<MockTaskerApi>,
    /// Timestamps.
    pub clock: Arc<dyn Clock>,
}

impl Services {
    /// Fresh mocks on `clock`.
    pub fn new(clock: Arc<dyn Clock>) -> Self {
        Self {
            gateway: Arc::new(MockPaymentGateway::new(clock.clone())),
            customer_service: Arc::new(MockCustomerServiceSystem::new(clock.clone())),
            tasker_api: Arc::new(MockTaskerApi::new(clock.clone())),
            clock,
        }
    }
}

// ---------------------------------------------------------------------------------------------
// Payments team's step handlers

/// A gateway failure: a refused connection or bad credentials will not fix themselves; an
/// outage or timeout may.
fn gateway_failure(failure: ServiceFailure) -> StepError {
    let message = failure.message.to_ascii_lowercase();
    if message.contains("connection failed") || message.contains("auth") {
        permanent(failure.to_string(), "GATEWAY_ERROR")
    } else {
        StepError::retryable(failure.to_string()).with_code("GATEWAY_UNAVAILABLE")
    }
}

/// `payments::validate_payment_eligibility`, public so tests can run it against a mockall
/// gateway.
pub struct ValidatePaymentEligibility(pub Arc<dyn PaymentGateway>, pub Arc<dyn Clock>);
struct ProcessGatewayRefund(Arc<dyn PaymentGateway>, Arc<dyn Clock>);
struct UpdatePaymentRecords(Arc<dyn PaymentGateway>, Arc<dyn Clock>);
struct NotifyCustomer(Arc<dyn PaymentGateway>, Arc<dyn Clock>);

#[async_trait::async_trait]
impl StepHandler for ValidatePaymentEligibility {
    async fn handle(&self, step: StepContext) -> Result<Value, StepError> {
        let context = &*step.task_context;
        let payment_id = context["payment_id"]
            .as_str()
            .ok_or_else(|| permanent("payment_id is required", "MISSING_PAYMENT_ID"))?;
        let amount = context["refund_amount"]
            .as_i64()
            .filter(|a| *a > 0)
            .ok_or_else(|| {
                permanent(
                    "refund_amount must be positive cents",
                    "INVALID_REFUND_AMOUNT",
                )
            })?;
        let reason = context["refund_reason"]
            .as_str()
            .unwrap_or("customer_request");
        let partial = context["partial_refund"].as_bool().unwrap_or(false);
        let answer = self
            .0
            .validate_payment_eligibility(payment_id, amount, reason, partial)
            .map_err(gateway_failure)?;
        match answer["status"].as_str().unwrap_or_default() {
            "eligible" => Ok(json!({
                "payment_validated": true,
                "payment_id": payment_id,
                "refund_amount": amount,
                "refund_reason": reason,
                "partial_refund": partial,
                "eligibility_status": "eligible",
                "original_amount": answer["original_amount"],
                "validation_timestamp": self.1.now(),
            })),
            status @ ("ineligible" | "insufficient_funds") => Err(permanent(
                format!("payment {payment_id} cannot be refunded: {status}"),
                "PAYMENT_INELIGIBLE",
            )),
            other => Err(StepError::retryable(format!(
                "eligibility of {payment_id} is `{other}`; asking again"
            ))),
        }
    }
}

#[async_trait::async_trait]
impl StepHandler for ProcessGatewayRefund {
    async fn handle(&self, step: StepContext) -> Result<Value, StepError> {
        let validated = parent(&step, "validate_payment_eligibility")?;
        let payment_id = validated["payment_id"].as_str().unwrap_or_default();
        let amount = validated["refund_amount"].as_i64().unwrap_or_default();
        if step.task_context["refund_amount"].as_i64() != Some(amount) {
            return Err(permanent(
                "refund amount changed since validation",
                "REFUND_AMOUNT_MISMATCH",
            ));
        }
        let answer = self
            .0
            .process_refund(payment_id, amount, &step.idempotency_key)
            .map_err(gateway_failure)?;
        match answer["status"].as_str().unwrap_or_default() {
            "completed" => Ok(json!({
                "refund_processed": true,
                "refund_id": answer["refund_id"],
                "payment_id": payment_id,
                "refund_amount": amount,
                "refund_status": "completed",
                "processed_at": self.1.now(),
            })),
            status @ ("pending" | "rate_limited") => {
                Err(StepError::retryable(format!("gateway refund is {status}")))
            }
            status => Err(permanent(
                format!("gateway refund failed: {status}"),
                "REFUND_FAILED",
            )),
        }
    }
}

#[async_trait::async_trait]
impl StepHandler for UpdatePaymentRecords {
    async fn handle(&self, step: StepContext) -> Result<Value, StepError> {
        let refund = parent(&step, "process_gateway_refund")?;
        let (payment_id, refund_id) = (
            refund["payment_id"].as_str().unwrap_or_default(),
            refund["refund_id"].as_str().unwrap_or_default(),
        );
        let answer = self
            .0
            .update_payment_record(payment_id, refund_id)
            .map_err(gateway_failure)?;
        Ok(
            json!({"records_updated": true, "payment_id": payment_id, "refund_id": refund_id,
                  "record_id": answer["record_id"], "updated_at": self.1.now()}),
        )
    }
}

#[async_trait::async_trait]
impl StepHandler for NotifyCustomer {
    async fn handle(&self, step: StepContext) -> Result<Value, StepError> {
        let records = parent(&step, "update_payment_records")?;
        let (payment_id, refund_id) = (
            records["payment_id"].as_str().unwrap_or_default(),
            records["refund_id"].as_str().unwrap_or_default(),
        );
        self.0
            .send_refund_notice(payment_id, refund_id)
            .map_err(gateway_failure)?;
        Ok(json!({"customer_notified": true, "refund_id": refund_id, "notified_at": self.1.now()}))
    }
}

// ---------------------------------------------------------------------------------------------
// Customer success team's step handlers

fn request(step: &StepContext) -> Result<RefundRequest, StepError> {
    RefundRequest::from_context(&step.task_context)
        .map_err(|e| permanent(e.to_string(), "INVALID_REFUND_REQUEST"))
}

fn customer_service_failure(failure: ServiceFailure) -> StepError {
    StepError::retryable(failure.to_string()).with_code("CUSTOMER_SERVICE_UNAVAILABLE")
}

struct ValidateRefundRequest(Arc<dyn CustomerServiceSystem>, Arc<dyn Clock>);
struct CheckRefundPolicy(Arc<dyn CustomerServiceSystem>);
struct GetManagerApproval(Arc<dyn CustomerServiceSystem>);
struct ExecuteRefundWorkflow(Arc<dyn TaskerApi>, Arc<dyn Clock>);
struct UpdateTicketStatus(Arc<dyn CustomerServiceSystem>);

#[async_trait::async_trait]
impl StepHandler for ValidateRefundRequest {
    async fn handle(&self, step: StepContext) -> Result<Value, StepError> {
        let refund = request(&step)?;
        let ticket = self
            .0
            .get_ticket(&refund.ticket_id)
            .map_err(customer_service_failure)?;
        match ticket["status"].as_str().unwrap_or_default() {
            status @ ("open" | "in_progress") => Ok(json!({
                "request_validated": true,
                "ticket_id": refund.ticket_id,
                "customer_id": refund.customer_id,
                "ticket_status": status,
                "refund_amount": refund.refund_amount,
                "validation_timestamp": self.1.now(),
            })),
            status => Err(permanent(
                format!("ticket {} is {status}", refund.ticket_id),
                "TICKET_NOT_REFUNDABLE",
            )),
        }
    }
}

#[async_trait::async_trait]
impl StepHandler for CheckRefundPolicy {
    async fn handle(&self, step: StepContext) -> Result<Value, StepError> {
        let refund = request(&step)?;
        parent(&step, "validate_refund_request")?;
        let verdict = self
            .0
            .check_refund_policy(&refund.customer_id, refund.refund_amount)
            .map_err(customer_service_failure)?;
        match verdict["status"].as_str().unwrap_or_default() {
            status @ ("approved" | "conditional_approval") => Ok(json!({
                "policy_checked": true,
                "policy_status": status,
                "requires_approval": verdict["requires_approval"].as_bool().unwrap_or(true),
                "refund_amount": refund.refund_amount,
            })),
            "denied" => Err(permanent(
                "the refund policy denies this refund",
                "POLICY_DENIED",
            )),
            other => Err(StepError::retryable(format!(
                "refund policy says `{other}`"
            ))),
        }
    }
}

#[async_trait::async_trait]
impl StepHandler for GetManagerApproval {
    async fn handle(&self, step: StepContext) -> Result<Value, StepError> {
        let refund = request(&step)?;
        let policy = parent(&step, "check_refund_policy")?;
        let needed = refund.requires_approval && policy["requires_approval"] == json!(true);
        if !needed {
            return Ok(
                json!({"approval_obtained": true, "approval_required": false, "auto_approved": true, "approval_id": null}),
            );
        }
        let answer = self
            .0
            .request_manager_approval(&refund.ticket_id, refund.refund_amount)
            .map_err(customer_service_failure)?;
        match answer["status"].as_str().unwrap_or_default() {
            "approved" => Ok(json!({
                "approval_obtained": true,
                "approval_required": true,
                "auto_approved": false,
                "approval_id": answer["approval_id"],
                "manager_id": answer["manager_id"],
            })),
            "pending" => {
                Err(StepError::retryable("manager approval pending").with_code("APPROVAL_PENDING"))
            }
            status => Err(permanent(
                format!("manager approval {status}"),
                "APPROVAL_DENIED",
            )),
        }
    }
}

#[async_trait::async_trait]
impl StepHandler for ExecuteRefundWorkflow {
    async fn handle(&self, step: StepContext) -> Result<Value, StepError> {
        let refund = request(&step)?;
        let approval = parent(&step, "get_manager_approval")?;
        let payment_id = refund
            .payment_id
            .clone()
            .ok_or_else(|| permanent("payment_id is required to delegate", "MISSING_PAYMENT_ID"))?;
        let correlation_id = step.task_context["correlation_id"]
            .as_str()
            .map(str::to_owned)
            .unwrap_or_else(|| format!("cs-{}", &uuid::Uuid::new_v4().simple().to_string()[..8]));
        let payload = json!({
            "namespace": "payments",
            "workflow_name": "process_refund",
            "workflow_version": "2.1.0",
            "context": {
                "payment_id": payment_id,
                "refund_amount": refund.refund_amount,
                "refund_reason": refund.payments_reason(),
                "partial_refund": false,
                "correlation_id": correlation_id,
            },
            "initiator": "customer_success",
            "reason": format!("ticket {} approval {}", refund.ticket_id, approval["approval_id"]),
        });
        let answer = self
            .0
            .create_task(&payload)
            .map_err(|e| StepError::retryable(e.to_string()).with_code("TASKER_API_UNAVAILABLE"))?;
        let context = json!({"response_status": answer.status, "response_body": answer.body});
        match answer.status {
            200 | 201 => {
                let status = answer.body["status"].as_str().unwrap_or_default();
                let task_id = answer.body["task_id"].as_str();
                match (status, task_id) {
                    ("created" | "queued", Some(task_id)) => Ok(json!({
                        "task_delegated": true,
                        "target_namespace": "payments",
                        "target_workflow": "process_refund",
                        "delegated_task_id": task_id,
                        "delegated_task_status": status,
                        "delegation_timestamp": self.1.now(),
                        "correlation_id": correlation_id,
                    })),
                    _ => Err(permanent(
                        format!("payments refused the delegated task (status `{status}`)"),
                        "DELEGATION_REJECTED",
                    )
                    .with_context(context)),
                }
            }
            400 | 403 | 404 => Err(permanent(
                format!("the Tasker API answered {}", answer.status),
                format!("HTTP_{}", answer.status),
            )
            .with_context(context)),
            status => Err(
                StepError::retryable(format!("the Tasker API answered {status}"))
                    .with_code(format!("HTTP_{status}"))
                    .with_context(context),
            ),
        }
    }
}

#[async_trait::async_trait]
impl StepHandler for UpdateTicketStatus {
    async fn handle(&self, step: StepContext) -> Result<Value, StepError> {
        let refund = request(&step)?;
        let delegated = parent(&step, "execute_refund_workflow")?;
        let task_id = delegated["delegated_task_id"].as_str().unwrap_or_default();
        let note = format!("refund delegated to payments as task {task_id}");
        self.0
            .update_ticket(&refund.ticket_id, "resolved", &note)
            .map_err(customer_service_failure)?;
        Ok(
            json!({"ticket_updated": true, "ticket_id": refund.ticket_id, "new_status": "resolved",
                  "delegated_task_id": task_id}),
        )
    }
}

pub(crate) fn registration(services: &Services) -> Registration {
    let (gateway, cs, clock) = (
        &services.gateway,
        &services.customer_service,
        &services.clock,
    );
    Registration {
        handlers: vec![
            (
                "payments::validate_payment_eligibility",
                Arc::new(ValidatePaymentEligibility(gateway.clone(), clock.clone())),
            ),
            (
                "payments::process_gateway_refund",
                Arc::new(ProcessGatewayRefund(gateway.clone(), clock.clone())),
            ),
            (
                "payments::update_payment_records",
                Arc::new(UpdatePaymentRecords(gateway.clone(), clock.clone())),
            ),
            (
                "payments::notify_customer",
                Arc::new(NotifyCustomer(gateway.clone(), clock.clone())),
            ),
            (
                "customer_success::validate_refund_request",
                Arc::new(ValidateRefundRequest(cs.clone(), clock.clone())),
            ),
            (
                "customer_success::check_refund_policy",
                Arc::new(CheckRefundPolicy(cs.clone())),
            ),
            (
                "customer_success::get_manager_approval",
                Arc::new(GetManagerApproval(cs.clone())),
            ),
            (
                "customer_success::execute_refund_workflow",
                Arc::new(ExecuteRefundWorkflow(
                    services.tasker_api.clone(),
                    clock.clone(),
                )),
            ),
            (
                "customer_success::update_ticket_status",
                Arc::new(UpdateTicketStatus(cs.clone())),
            ),
        ],
        hooks: Vec::new(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_refund_request_needs_ids_and_positive_cents() {
        let ok = RefundRequest::from_context(&json!({"ticket_id": "T-1", "customer_id": "C-1",
            "refund_amount": 12000, "refund_reason": "Product defective"}))
        .unwrap();
        assert!(ok.requires_approval);
        assert_eq!(ok.payments_reason(), "customer_request");
        let err = RefundRequest::from_context(
            &json!({"ticket_id": "", "customer_id": "C", "refund_amount": 1}),
        );
        assert_eq!(err, Err(RefundRequestError::Missing("ticket_id")));
        let err = RefundRequest::from_context(
            &json!({"ticket_id": "T", "customer_id": "C", "refund_amount": 0}),
        );
        assert_eq!(
            err.unwrap_err().to_string(),
            "refund_amount must be a positive number of cents, got 0"
        );
    }
}
