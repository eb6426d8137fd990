//! Blog post 05, production observability: `blog_examples/monitored_checkout@1.0.0`, the
//! checkout again with in-memory steps and no monitoring code in them. Business metrics come
//! from the engine's events: [`BusinessMetricsSubscriber`] turns them into conversions, revenue,
//! failures, retries and step durations.

use std::collections::HashMap;
use std::sync::Arc;

use serde_json::{Value, json};
use tasker_domain::{StepError, TaskRequest, TaskState};
use tasker_engine::tasker_events::names::step;
use tasker_engine::tasker_events::{Category, Event, EventStream, Interest, Payload};
use tasker_engine::{Clock, Engine, StepContext, StepHandler, TaskHooks};

use crate::money::Cents;
use crate::{Registration, parent, permanent};

/// The template's `task_handler_class`.
pub const TASK_HOOKS: &str = "blog_examples::post_05::monitored_checkout";

/// Post 05 calls no outside service; its steps need only a clock.
#[derive(Clone)]
pub struct Services {
    /// Timestamps.
    pub clock: Arc<dyn Clock>,
}

impl Services {
    /// Services on `clock`.
    pub fn new(clock: Arc<dyn Clock>) -> Self {
        Self { clock }
    }
}

/// 16 random hex digits.
fn hex16() -> String {
    uuid::Uuid::new_v4().simple().to_string()[..16].to_owned()
}

/// A cart line of the monitored checkout.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CartLine {
    /// Stock-keeping unit.
    pub sku: String,
    /// Unit price.
    pub price: Cents,
    /// Units.
    pub quantity: i64,
}

impl CartLine {
    /// The cart in `context.cart_items`; lines without a price or a positive quantity are
    /// rejected by name.
    pub fn cart(context: &Value) -> Result<Vec<Self>, StepError> {
        let items = context["cart_items"]
            .as_array()
            .map_or(&[][..], Vec::as_slice);
        if items.is_empty() {
            return Err(permanent("Cart is empty", "EMPTY_CART"));
        }
        items
            .iter()
            .enumerate()
            .map(|(i, item)| {
                let sku = item["sku"]
                    .as_str()
                    .map_or_else(|| format!("item-{i}"), str::to_owned);
                let price = item["price"].as_f64().and_then(Cents::from_amount);
                let quantity = item["quantity"].as_i64().filter(|q| *q > 0);
                match (price, quantity) {
                    (Some(price), Some(quantity)) => Ok(Self {
                        sku,
                        price,
                        quantity,
                    }),
                    _ => Err(permanent(
                        format!("cart item {sku} needs a price and a positive quantity"),
                        "INVALID_CART_ITEM",
                    )),
                }
            })
            .collect()
    }
}

fn flag(results: &Value, key: &str, step: &str) -> Result<(), StepError> {
    if results[key] == json!(true) {
        Ok(())
    } else {
        Err(permanent(
            format!("{step} has not succeeded"),
            "PRECONDITION_FAILED",
        ))
    }
}

struct ValidateCart;
struct ProcessPayment;
struct UpdateInventory;
struct CreateOrder;
struct SendConfirmation(Arc<dyn Clock>);

#[async_trait::async_trait]
impl StepHandler for ValidateCart {
    async fn handle(&self, step: StepContext) -> Result<Value, StepError> {
        let cart = CartLine::cart(&step.task_context)?;
        let total: Cents = cart.iter().map(|l| l.price * l.quantity).sum();
        Ok(json!({"validated": true, "cart_total": total.as_amount(), "item_count": cart.len()}))
    }
}

#[async_trait::async_trait]
impl StepHandler for ProcessPayment {
    async fn handle(&self, step: StepContext) -> Result<Value, StepError> {
        let cart = parent(&step, "validate_cart")?;
        flag(cart, "validated", "validate_cart")?;
        Ok(json!({
            "payment_successful": true,
            "payment_id": format!("pay_{}", hex16()),
            "amount": cart["cart_total"],
            "payment_method": step.task_context["payment_method"].as_str().unwrap_or("credit_card"),
        }))
    }
}

#[async_trait::async_trait]
impl StepHandler for UpdateInventory {
    async fn handle(&self, step: StepContext) -> Result<Value, StepError> {
        flag(
            parent(&step, "process_payment")?,
            "payment_successful",
            "process_payment",
        )?;
        let items: Vec<Value> = CartLine::cart(&step.task_context)?
            .into_iter()
            .map(|l| json!({"sku": l.sku, "quantity_deducted": l.quantity, "new_stock_level": 100 - l.quantity}))
            .collect();
        Ok(json!({"inventory_updated": true, "items": items}))
    }
}

#[async_trait::async_trait]
impl StepHandler for CreateOrder {
    async fn handle(&self, step: StepContext) -> Result<Value, StepError> {
        flag(
            parent(&step, "update_inventory")?,
            "inventory_updated",
            "update_inventory",
        )?;
        let payment = parent(&step, "process_payment")?;
        let cart = parent(&step, "validate_cart")?;
        let context = &*step.task_context;
        Ok(json!({
            "order_created": true,
            "order_id": format!("order_{}", hex16()),
            "payment_id": payment["payment_id"],
            "customer_id": context["customer_id"],
            "customer_tier": context["customer_tier"].as_str().unwrap_or("standard"),
            "order_value": cart["cart_total"],
            "items_count": cart["item_count"],
        }))
    }
}

#[async_trait::async_trait]
impl StepHandler for SendConfirmation {
    async fn handle(&self, step: StepContext) -> Result<Value, StepError> {
        let order = parent(&step, "create_order")?;
        flag(order, "order_created", "create_order")?;
        let email = step.task_context["customer_email"]
            .as_str()
            .ok_or_else(|| permanent("customer_email is required", "MISSING_EMAIL"))?;
        Ok(json!({
            "email_sent": true,
            "email_id": format!("email_{}", hex16()),
            "sent_to": email,
            "template": "order_confirmation",
            "order_id": order["order_id"],
            "sent_at": self.0.now(),
        }))
    }
}

/// Tags the task with its business context before creation: impact and SLA by customer tier,
/// the monitoring target, and a `checkout_<hex>` correlation id when none is given.
struct MonitoredCheckoutHooks;

#[async_trait::async_trait]
impl TaskHooks for MonitoredCheckoutHooks {
    async fn establish_step_dependencies_and_defaults(
        &self,
        request: &mut TaskRequest,
    ) -> Result<(), StepError> {
        let Some(context) = request.context.as_object_mut() else {
            return Ok(());
        };
        let premium = context.get("customer_tier").and_then(Value::as_str) == Some("premium");
        context.insert(
            "business_context".into(),
            json!({"domain": "ecommerce",
                   "impact_level": if premium { "high" } else { "standard" },
                   "sla_tier": if premium { "premium" } else { "standard" }}),
        );
        context.insert("monitoring_target".into(), json!("checkout_workflow"));
        if !context.get("correlation_id").is_some_and(Value::is_string) {
            context.insert(
                "correlation_id".into(),
                json!(format!("checkout_{}", hex16())),
            );
        }
        Ok(())
    }
}

pub(crate) fn registration(services: &Services) -> Registration {
    Registration {
        handlers: vec![
            (
                "blog_examples::post_05::validate_cart",
                Arc::new(ValidateCart),
            ),
            (
                "blog_examples::post_05::process_payment",
                Arc::new(ProcessPayment),
            ),
            (
                "blog_examples::post_05::update_inventory",
                Arc::new(UpdateInventory),
            ),
            (
                "blog_examples::post_05::create_order",
                Arc::new(CreateOrder),
            ),
            (
                "blog_examples::post_05::send_confirmation",
                Arc::new(SendConfirmation(services.clock.clone())),
            ),
        ],
        hooks: vec![(TASK_HOOKS, Arc::new(MonitoredCheckoutHooks))],
    }
}

// ---------------------------------------------------------------------------------------------
// Observing

/// What the business cares about, derived from events only.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct BusinessMetrics {
    /// Monitored checkouts that completed.
    pub checkout_conversions_total: u64,
    /// Monitored checkouts that ended in error.
    pub checkout_failures_total: u64,
    /// Money taken by completed checkouts.
    pub revenue_processed: Cents,
    /// Failed step attempts, by step name.
    pub step_failures_total: HashMap<String, u64>,
    /// Attempts after the first, by step name.
    pub step_retries_total: HashMap<String, u64>,
    /// One sample per completed step attempt: `(step, seconds)`.
    pub step_execution_duration_seconds: Vec<(String, f64)>,
    /// Failures of `update_inventory` after payment: the blog's critical "oversell risk".
    pub oversell_risk_alerts: u64,
}

/// Reads an engine's task and step events and keeps [`BusinessMetrics`] for its monitored
/// checkouts (recognised by the template names every event carries).
///
/// Call [`catch_up`](Self::catch_up) to process what has arrived (tests do this after the task
/// finishes), or [`run`](Self::run) to process events until the engine goes away.
pub struct BusinessMetricsSubscriber {
    engine: Engine,
    events: EventStream,
    metrics: BusinessMetrics,
    log: Vec<String>,
}

impl BusinessMetricsSubscriber {
    /// Subscribes now: events from here on are observed.
    pub fn new(engine: &Engine) -> Self {
        Self {
            events: engine.events().stream(
                vec![
                    Interest::Category(Category::Task),
                    Interest::Category(Category::Step),
                ],
                65_536,
            ),
            engine: engine.clone(),
            metrics: BusinessMetrics::default(),
            log: Vec::new(),
        }
    }

    /// The metrics so far.
    pub fn metrics(&self) -> &BusinessMetrics {
        &self.metrics
    }

    /// Every observed event of a monitored checkout, as `name[ step#attempt]`.
    pub fn event_log(&self) -> &[String] {
        &self.log
    }

    /// Processes every event received so far.
    pub async fn catch_up(&mut self) -> &BusinessMetrics {
        while let Some(event) = self.events.try_recv() {
            self.observe(&event).await;
        }
        if self.events.dropped() > 0 {
            tracing::warn!(
                missed = self.events.dropped(),
                "business metrics fell behind the event stream"
            );
        }
        &self.metrics
    }

    /// Processes events until the engine's bus goes away.
    pub async fn run(mut self) -> BusinessMetrics {
        while let Some(event) = self.events.recv().await {
            self.observe(&event).await;
        }
        self.metrics
    }

    async fn observe(&mut self, event: &Event) {
        let Some(labels) = event.labels() else {
            return;
        };
        if &*labels.namespace != "blog_examples" || &*labels.task_name != "monitored_checkout" {
            return;
        }
        let m = &mut self.metrics;
        match &event.payload {
            Payload::Step(p) => {
                let name = p.step_name.to_string();
                match &*event.name {
                    step::RETRY_REQUESTED => {
                        *m.step_retries_total.entry(name).or_default() += 1;
                    }
                    step::COMPLETED => m
                        .step_execution_duration_seconds
                        .push((name, p.duration_ms.unwrap_or_default() / 1000.0)),
                    step::FAILED => {
                        if name == "update_inventory" {
                            m.oversell_risk_alerts += 1;
                        }
                        *m.step_failures_total.entry(name).or_default() += 1;
                    }
                    _ => {}
                }
            }
            Payload::Task(p) => match p.state {
                TaskState::Complete => {
                    m.checkout_conversions_total += 1;
                    let paid = self
                        .engine
                        .store()
                        .steps(p.task_id)
                        .await
                        .ok()
                        .and_then(|steps| {
                            steps
                                .into_iter()
                                .find(|s| s.name == "process_payment")
                                .and_then(|s| s.results?["amount"].as_f64())
                                .and_then(Cents::from_amount)
                        });
                    m.revenue_processed = m.revenue_processed + paid.unwrap_or_default();
                }
                TaskState::Error => m.checkout_failures_total += 1,
                _ => {}
            },
            _ => return,
        }
        self.log.push(event.summary());
    }
}
