//! Blog post 01, e-commerce checkout reliability: `blog_examples/process_order@1.0.0`, a linear
//! checkout (validate cart → charge → reserve stock → create order → email) that survives flaky
//! payment, inventory and email services by returning typed errors the engine retries.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

use chrono::{DateTime, Utc};
use serde::Deserialize;
use serde_json::{Value, json};
use tasker_domain::{StepError, TaskRequest};
use tasker_engine::{Clock, StepContext, StepHandler, TaskHooks};

use crate::mock::{MockService, ServiceFailure, mock_base, sequential_id};
use crate::money::Cents;
use crate::{Registration, parent, permanent};

/// The template's `task_handler_class`.
pub const TASK_HOOKS: &str = "blog_examples::post_01::order_processing";

// ---------------------------------------------------------------------------------------------
// Models

/// A product in the catalogue.
#[derive(Debug, Clone, PartialEq)]
pub struct Product {
    /// Catalogue id.
    pub id: i64,
    /// Display name.
    pub name: String,
    /// Unit price.
    pub price: Cents,
    /// Units in stock.
    pub stock: u32,
    /// Whether it can be sold.
    pub active: bool,
}

/// The product catalogue the cart is validated against.
#[derive(Debug, Clone)]
pub struct ProductCatalogue {
    products: BTreeMap<i64, Product>,
    /// Unknown ids resolve to `Mock Product <id>` at 29.99 (the blog's demo catalogue).
    open: bool,
}

impl Default for ProductCatalogue {
    /// The blog's catalogue: Widget A (29.99) and Widget B (49.99), 10 of each, and any other id
    /// as `Mock Product <id>` at 29.99.
    fn default() -> Self {
        let mut catalogue = Self::new([
            Product::new(1, "Widget A", Cents(2999), 10),
            Product::new(2, "Widget B", Cents(4999), 10),
        ]);
        catalogue.open = true;
        catalogue
    }
}

impl Product {
    /// An active product.
    pub fn new(id: i64, name: &str, price: Cents, stock: u32) -> Self {
        Self {
            id,
            name: name.into(),
            price,
            stock,
            active: true,
        }
    }
}

impl ProductCatalogue {
    /// A catalogue of exactly `products`.
    pub fn new(products: impl IntoIterator<Item = Product>) -> Self {
        Self {
            products: products.into_iter().map(|p| (p.id, p)).collect(),
            open: false,
        }
    }

    /// The product with `id`.
    pub fn find(&self, id: i64) -> Option<Product> {
        self.products.get(&id).cloned().or_else(|| {
            self.open
                .then(|| Product::new(id, &format!("Mock Product {id}"), Cents(2999), 10))
        })
    }
}

/// A cart line once validated against the catalogue.
#[derive(Debug, Clone, PartialEq)]
pub struct ValidatedItem {
    /// The product.
    pub product_id: i64,
    /// Its name.
    pub name: String,
    /// Catalogue unit price.
    pub price: Cents,
    /// Units ordered.
    pub quantity: u32,
}

impl ValidatedItem {
    /// Price × quantity.
    pub fn line_total(&self) -> Cents {
        self.price * i64::from(self.quantity)
    }
}

/// A cart's totals: 8 % tax, and shipping by weight (0.5 lb a unit: up to 2 lb 5.99, up to
/// 10 lb 9.99, else 14.99).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct CartTotals {
    /// Sum of line totals.
    pub subtotal: Cents,
    /// 8 % of the subtotal.
    pub tax: Cents,
    /// Shipping.
    pub shipping: Cents,
    /// Everything.
    pub total: Cents,
}

impl CartTotals {
    /// The totals of `items`.
    pub fn of(items: &[ValidatedItem]) -> Self {
        let subtotal: Cents = items.iter().map(ValidatedItem::line_total).sum();
        let tax = subtotal.percent(8);
        let units: u32 = items.iter().map(|i| i.quantity).sum();
        // Half a pound a unit, compared in half-pounds to stay in integers.
        let shipping = match units {
            0..=4 => Cents(599),
            5..=20 => Cents(999),
            _ => Cents(1499),
        };
        Self {
            subtotal,
            tax,
            shipping,
            total: subtotal + tax + shipping,
        }
    }
}

/// An order's lifecycle state.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum OrderStatus {
    /// Created, not yet confirmed.
    Pending,
    /// Paid and confirmed.
    Confirmed,
}

/// Why an [`Order`] is invalid.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum OrderError {
    /// The customer's email is not an address.
    #[error("customer email `{0}` is not a valid address")]
    InvalidEmail(String),
    /// The customer has no name.
    #[error("customer name is empty")]
    MissingName,
    /// The order total is zero or negative.
    #[error("order total must be positive, got {0}")]
    NonPositiveTotal(Cents),
}

/// An order, as the `create_order` step builds it.
#[derive(Debug, Clone, PartialEq)]
pub struct Order {
    /// `ORD-<YYYYMMDD>-<8 hex upper>`.
    pub order_number: String,
    /// Who placed it.
    pub customer_email: String,
    /// Their name.
    pub customer_name: String,
    /// What they paid.
    pub total_amount: Cents,
    /// Its state.
    pub status: OrderStatus,
}

impl Order {
    /// Checks the email's shape, the name and the total.
    pub fn validate(&self) -> Result<(), OrderError> {
        if !is_email(&self.customer_email) {
            return Err(OrderError::InvalidEmail(self.customer_email.clone()));
        }
        if self.customer_name.trim().is_empty() {
            return Err(OrderError::MissingName);
        }
        if self.total_amount <= Cents(0) {
            return Err(OrderError::NonPositiveTotal(self.total_amount));
        }
        Ok(())
    }
}

/// A plausible email address: one `@`, a non-empty local part, a dotted domain, no spaces.
pub fn is_email(value: &str) -> bool {
    let Some((local, domain)) = value.split_once('@') else {
        return false;
    };
    !local.is_empty()
        && !domain.contains('@')
        && !value.chars().any(char::is_whitespace)
        && domain
            .split_once('.')
            .is_some_and(|(host, tld)| !host.is_empty() && !tld.is_empty() && !tld.ends_with('.'))
}

/// The task context's cart line, before validation.
#[derive(Debug, Clone, Deserialize)]
struct CartLine {
    product_id: Option<i64>,
    quantity: Option<i64>,
}

/// The cart as validated and stored in `validate_cart`'s results.
fn validated_from(results: &Value) -> Result<(Vec<ValidatedItem>, CartTotals), StepError> {
    let items = results["validated_items"]
        .as_array()
        .ok_or_else(|| permanent("validated cart items are missing", "MISSING_VALIDATED_CART"))?
        .iter()
        .map(|item| ValidatedItem {
            product_id: item["product_id"].as_i64().unwrap_or_default(),
            name: item["name"].as_str().unwrap_or_default().to_owned(),
            price: Cents::from_amount(item["price"].as_f64().unwrap_or_default())
                .unwrap_or_default(),
            quantity: item["quantity"].as_u64().unwrap_or_default() as u32,
        })
        .collect::<Vec<_>>();
    let totals = CartTotals::of(&items);
    Ok((items, totals))
}

// ---------------------------------------------------------------------------------------------
// Services

/// A charge request.
#[derive(Debug, Clone, PartialEq)]
pub struct PaymentCharge {
    /// Amount to charge.
    pub amount: Cents,
    /// `credit_card`, `debit_card`, `paypal` or `bank_transfer`.
    pub method: String,
    /// Payment token.
    pub token: String,
    /// Currency code.
    pub currency: String,
    /// Makes retries safe.
    pub idempotency_key: String,
}

/// The payment processor.
pub trait PaymentService: Send + Sync {
    /// Charges a payment method; the response's `status` says how it went.
    fn process_payment(&self, charge: &PaymentCharge) -> Result<Value, ServiceFailure>;
}

/// The inventory system.
pub trait InventoryService: Send + Sync {
    /// Whether `quantity` units of `product_id` are available.
    fn check_availability(&self, product_id: i64, quantity: u32) -> Result<Value, ServiceFailure>;
    /// Reserves stock; the response's `status` is `reserved` on success.
    fn reserve_inventory(&self, product_id: i64, quantity: u32) -> Result<Value, ServiceFailure>;
}

/// The email provider.
pub trait EmailService: Send + Sync {
    /// Sends the order confirmation; the response's `status` is `sent` or `delivered`.
    fn send_confirmation(&self, to: &str, order_number: &str) -> Result<Value, ServiceFailure>;
}

/// Mock payment processor: succeeds with `pay_<hex>` ids and fees of 2.9 % + 0.30.
#[derive(Debug)]
pub struct MockPaymentService {
    base: MockService,
    next: AtomicU64,
}

/// Mock inventory: every product available, reservations `reserved`.
#[derive(Debug)]
pub struct MockInventoryService {
    base: MockService,
    next: AtomicU64,
}

/// Mock email provider: every message `sent`.
#[derive(Debug)]
pub struct MockEmailService {
    base: MockService,
    next: AtomicU64,
}

mock_base!(MockPaymentService, MockInventoryService, MockEmailService);

impl MockPaymentService {
    /// A fresh mock.
    pub fn new(clock: Arc<dyn Clock>) -> Self {
        Self {
            base: MockService::new("payment", clock),
            next: AtomicU64::new(1),
        }
    }
}

impl PaymentService for MockPaymentService {
    fn process_payment(&self, charge: &PaymentCharge) -> Result<Value, ServiceFailure> {
        let arguments = json!({
            "amount": charge.amount.as_amount(),
            "method": charge.method,
            "currency": charge.currency,
            "idempotency_key": charge.idempotency_key,
        });
        if let Some(stub) = self.base.call("process_payment", arguments)? {
            return Ok(stub);
        }
        let n = self.next.fetch_add(1, Ordering::Relaxed);
        // 2.9 % + 0.30, rounded to the cent.
        let fees = Cents((charge.amount.0 * 29 + 500) / 1000) + Cents(30);
        Ok(json!({
            "payment_id": sequential_id("pay", n),
            "status": "succeeded",
            "amount_charged": charge.amount.as_amount(),
            "currency": charge.currency,
            "payment_method_type": charge.method,
            "transaction_id": sequential_id("txn", n),
            "processed_at": self.base.now(),
            "fees": fees.as_amount(),
        }))
    }
}

impl MockInventoryService {
    /// A fresh mock.
    pub fn new(clock: Arc<dyn Clock>) -> Self {
        Self {
            base: MockService::new("inventory", clock),
            next: AtomicU64::new(1),
        }
    }
}

impl InventoryService for MockInventoryService {
    fn check_availability(&self, product_id: i64, quantity: u32) -> Result<Value, ServiceFailure> {
        let arguments = json!({"product_id": product_id, "quantity": quantity});
        Ok(self
            .base
            .call("check_availability", arguments)?
            .unwrap_or_else(|| json!({"available": true, "stock_level": 10})))
    }

    fn reserve_inventory(&self, product_id: i64, quantity: u32) -> Result<Value, ServiceFailure> {
        let arguments = json!({"product_id": product_id, "quantity": quantity});
        if let Some(stub) = self.base.call("reserve_inventory", arguments)? {
            return Ok(stub);
        }
        let n = self.next.fetch_add(1, Ordering::Relaxed);
        Ok(json!({"status": "reserved", "reservation_id": sequential_id("res", n)}))
    }
}

impl MockEmailService {
    /// A fresh mock.
    pub fn new(clock: Arc<dyn Clock>) -> Self {
        Self {
            base: MockService::new("email", clock),
            next: AtomicU64::new(1),
        }
    }
}

impl EmailService for MockEmailService {
    fn send_confirmation(&self, to: &str, order_number: &str) -> Result<Value, ServiceFailure> {
        let arguments = json!({"to": to, "order_number": order_number});
        if let Some(stub) = self.base.call("send_confirmation", arguments)? {
            return Ok(stub);
        }
        let n = self.next.fetch_add(1, Ordering::Relaxed);
        Ok(json!({"status": "sent", "message_id": sequential_id("msg", n)}))
    }
}

/// The outside services of post 01.
#[derive(Clone)]
pub struct Services {
    /// Products.
    pub catalogue: Arc<ProductCatalogue>,
    /// Payments.
    pub payment: Arc<MockPaymentService>,
    /// Stock.
    pub inventory: Arc<MockInventoryService>,
    /// Email.
    pub email: Arc<MockEmailService>,
    /// Timestamps in results.
    pub clock: Arc<dyn Clock>,
}

impl Services {
    /// Fresh mocks on `clock`, with the blog's catalogue.
    pub fn new(clock: Arc<dyn Clock>) -> Self {
        Self {
            catalogue: Arc::new(ProductCatalogue::default()),
            payment: Arc::new(MockPaymentService::new(clock.clone())),
            inventory: Arc::new(MockInventoryService::new(clock.clone())),
            email: Arc::new(MockEmailService::new(clock.clone())),
            clock,
        }
    }
}

// ---------------------------------------------------------------------------------------------
// Step handlers

struct ValidateCart(Arc<ProductCatalogue>, Arc<dyn Clock>);
struct ProcessPayment(Arc<dyn PaymentService>);
struct UpdateInventory(
    Arc<dyn InventoryService>,
    Arc<ProductCatalogue>,
    Arc<dyn Clock>,
);
struct CreateOrder(Arc<dyn Clock>);
struct SendConfirmation(Arc<dyn EmailService>, Arc<dyn Clock>);

#[async_trait::async_trait]
impl StepHandler for ValidateCart {
    async fn handle(&self, step: StepContext) -> Result<Value, StepError> {
        let lines: Vec<CartLine> = step.task_context["cart_items"]
            .as_array()
            .filter(|items| !items.is_empty())
            .ok_or_else(|| permanent("cart items are required", "MISSING_CART_ITEMS"))?
            .iter()
            .map(|item| {
                serde_json::from_value(item.clone()).unwrap_or(CartLine {
                    product_id: None,
                    quantity: None,
                })
            })
            .collect();
        let mut items = Vec::with_capacity(lines.len());
        for line in lines {
            let product_id = line
                .product_id
                .ok_or_else(|| permanent("a cart item has no product_id", "MISSING_PRODUCT_ID"))?;
            let quantity = line
                .quantity
                .filter(|q| *q > 0)
                .and_then(|q| u32::try_from(q).ok())
                .ok_or_else(|| {
                    permanent(
                        format!("product {product_id}: quantity must be positive"),
                        "INVALID_QUANTITY",
                    )
                })?;
            let product = self.0.find(product_id).ok_or_else(|| {
                permanent(
                    format!("product {product_id} not found"),
                    "PRODUCT_NOT_FOUND",
                )
            })?;
            if !product.active {
                return Err(permanent(
                    format!("{} is no longer available", product.name),
                    "PRODUCT_INACTIVE",
                ));
            }
            if product.stock < quantity {
                return Err(StepError::retryable(format!(
                    "insufficient stock for {}: {} available, {quantity} requested",
                    product.name, product.stock
                ))
                .with_code("INSUFFICIENT_STOCK"));
            }
            items.push(ValidatedItem {
                product_id,
                name: product.name,
                price: product.price,
                quantity,
            });
        }
        let totals = CartTotals::of(&items);
        Ok(json!({
            "validated_items": items.iter().map(|i| json!({
                "product_id": i.product_id,
                "name": i.name,
                "price": i.price.as_amount(),
                "quantity": i.quantity,
                "line_total": i.line_total().as_amount(),
            })).collect::<Vec<_>>(),
            "subtotal": totals.subtotal.as_amount(),
            "tax": totals.tax.as_amount(),
            "shipping": totals.shipping.as_amount(),
            "total": totals.total.as_amount(),
            "item_count": items.len(),
            "validated_at": self.1.now(),
        }))
    }
}

#[async_trait::async_trait]
impl StepHandler for ProcessPayment {
    async fn handle(&self, step: StepContext) -> Result<Value, StepError> {
        let info = &step.task_context["payment_info"];
        let method = info["method"]
            .as_str()
            .ok_or_else(|| permanent("payment method is required", "MISSING_PAYMENT_METHOD"))?;
        let token = info["token"]
            .as_str()
            .ok_or_else(|| permanent("payment token is required", "MISSING_PAYMENT_TOKEN"))?;
        let total = parent(&step, "validate_cart")?["total"]
            .as_f64()
            .and_then(Cents::from_amount)
            .ok_or_else(|| permanent("cart total is missing", "MISSING_CART_TOTAL"))?;
        let amount = info["amount"].as_f64().and_then(Cents::from_amount);
        if amount != Some(total) {
            return Err(permanent(
                format!(
                    "payment amount {} does not match the cart total {total}",
                    info["amount"]
                ),
                "PAYMENT_AMOUNT_MISMATCH",
            ));
        }
        let charge = PaymentCharge {
            amount: total,
            method: method.to_owned(),
            token: token.to_owned(),
            currency: info["currency"].as_str().unwrap_or("USD").to_owned(),
            idempotency_key: step.idempotency_key.clone(),
        };
        let response = self
            .0
            .process_payment(&charge)
            .map_err(|e| StepError::retryable(format!("payment service error: {}", e.message)))?;
        match response["status"].as_str().unwrap_or_default() {
            "succeeded" => Ok(json!({
                "payment_id": response["payment_id"],
                "amount_charged": response["amount_charged"],
                "currency": response["currency"],
                "payment_method_type": response["payment_method_type"],
                "transaction_id": response["transaction_id"],
                "processed_at": response["processed_at"],
                "status": "completed",
            })),
            status @ ("insufficient_funds" | "card_declined" | "invalid_card") => Err(permanent(
                format!("payment declined: {status}"),
                "PAYMENT_DECLINED",
            )),
            "rate_limited" => Err(StepError::retryable("payment service rate limited")
                .with_retry_after(std::time::Duration::from_secs(30))),
            other => Err(StepError::retryable(format!(
                "payment service returned `{other}`"
            ))),
        }
    }
}

#[async_trait::async_trait]
impl StepHandler for UpdateInventory {
    async fn handle(&self, step: StepContext) -> Result<Value, StepError> {
        let (items, _) = validated_from(parent(&step, "validate_cart")?)?;
        if !step.task_context["customer_info"].is_object() {
            return Err(permanent(
                "customer info is required",
                "MISSING_CUSTOMER_INFO",
            ));
        }
        let mut updated = Vec::with_capacity(items.len());
        for item in &items {
            let check = self
                .0
                .check_availability(item.product_id, item.quantity)
                .map_err(|e| {
                    StepError::retryable(format!("inventory check failed: {}", e.message))
                })?;
            if check["available"] != json!(true) {
                return Err(StepError::retryable(format!(
                    "{} is not available",
                    item.name
                )));
            }
            let reservation = self
                .0
                .reserve_inventory(item.product_id, item.quantity)
                .map_err(|e| StepError::retryable(format!("reservation failed: {}", e.message)))?;
            if reservation["status"] != "reserved" {
                return Err(StepError::retryable(format!(
                    "reservation of {} returned {}",
                    item.name, reservation["status"]
                )));
            }
            let previous = self.1.find(item.product_id).map_or(0, |p| p.stock);
            updated.push(json!({
                "product_id": item.product_id,
                "name": item.name,
                "previous_stock": previous,
                "new_stock": previous.saturating_sub(item.quantity),
                "quantity_reserved": item.quantity,
                "reservation_id": reservation["reservation_id"],
            }));
        }
        Ok(json!({
            "total_items_reserved": items.iter().map(|i| i.quantity).sum::<u32>(),
            "inventory_changes": updated.len(),
            "updated_products": updated,
            "updated_at": self.2.now(),
        }))
    }
}

/// `ORD-<YYYYMMDD>-<8 hex upper>`, the hex taken from the step's idempotency key so a retried
/// attempt builds the same number.
fn order_number(now: DateTime<Utc>, idempotency_key: &str) -> String {
    let hex: String = idempotency_key
        .chars()
        .filter(char::is_ascii_hexdigit)
        .take(8)
        .collect::<String>()
        .to_ascii_uppercase();
    format!("ORD-{}-{hex:0>8}", now.format("%Y%m%d"))
}

#[async_trait::async_trait]
impl StepHandler for CreateOrder {
    async fn handle(&self, step: StepContext) -> Result<Value, StepError> {
        let customer = &step.task_context["customer_info"];
        if !customer.is_object() {
            return Err(permanent(
                "customer info is required",
                "MISSING_CUSTOMER_INFO",
            ));
        }
        let (_, totals) = validated_from(parent(&step, "validate_cart")?)?;
        let payment_id = parent(&step, "process_payment")?["payment_id"]
            .as_str()
            .ok_or_else(|| permanent("payment id is missing", "MISSING_PAYMENT_ID"))?
            .to_owned();
        let inventory = parent(&step, "update_inventory")?;
        if !inventory["updated_products"].is_array() {
            return Err(permanent(
                "inventory changes are missing",
                "MISSING_INVENTORY",
            ));
        }
        let now = self.0.now();
        let order = Order {
            order_number: order_number(now, &step.idempotency_key),
            customer_email: customer["email"].as_str().unwrap_or_default().to_owned(),
            customer_name: customer["name"].as_str().unwrap_or_default().to_owned(),
            total_amount: totals.total,
            status: OrderStatus::Confirmed,
        };
        order
            .validate()
            .map_err(|e| permanent(e.to_string(), "INVALID_ORDER"))?;
        let delivery = now + chrono::Duration::days(7);
        Ok(json!({
            "order_id": step.idempotency_key,
            "order_number": order.order_number,
            "status": "confirmed",
            "total_amount": order.total_amount.as_amount(),
            "customer_email": order.customer_email,
            "payment_id": payment_id,
            "created_at": now,
            "estimated_delivery": delivery.format("%B %-d, %Y").to_string(),
        }))
    }
}

#[async_trait::async_trait]
impl StepHandler for SendConfirmation {
    async fn handle(&self, step: StepContext) -> Result<Value, StepError> {
        let email = step.task_context["customer_info"]["email"]
            .as_str()
            .ok_or_else(|| permanent("customer email is required", "MISSING_EMAIL"))?;
        let order = parent(&step, "create_order")?;
        let order_number = order["order_number"]
            .as_str()
            .ok_or_else(|| permanent("order is missing", "MISSING_ORDER"))?;
        let response = self
            .0
            .send_confirmation(email, order_number)
            .map_err(|e| StepError::retryable(format!("email service error: {}", e.message)))?;
        match response["status"].as_str().unwrap_or_default() {
            "sent" | "delivered" => Ok(json!({
                "email_sent": true,
                "recipient": email,
                "email_type": "order_confirmation",
                "sent_at": self.1.now(),
                "message_id": response["message_id"],
            })),
            "rate_limited" => Err(StepError::retryable("email service rate limited")
                .with_retry_after(std::time::Duration::from_secs(60))),
            "invalid_email" => Err(permanent(
                format!("cannot deliver to {email}"),
                "INVALID_EMAIL",
            )),
            other => Err(StepError::retryable(format!(
                "email service returned `{other}`"
            ))),
        }
    }
}

/// Express orders get tighter payment and email settings; premium customers faster handling.
struct OrderProcessingHooks;

#[async_trait::async_trait]
impl TaskHooks for OrderProcessingHooks {
    async fn establish_step_dependencies_and_defaults(
        &self,
        request: &mut TaskRequest,
    ) -> Result<(), StepError> {
        let Some(context) = request.context.as_object_mut() else {
            return Ok(());
        };
        if context.get("priority").and_then(Value::as_str) == Some("express") {
            context.insert(
                "express_processing".into(),
                json!({"payment_timeout_ms": 15000, "payment_retries": 1, "email_retries": 2}),
            );
        }
        let tier = context
            .get("customer_info")
            .and_then(|c| c.get("tier"))
            .and_then(Value::as_str);
        if tier == Some("premium") {
            context.insert(
                "premium_processing".into(),
                json!({"priority": "high", "faster_processing": true}),
            );
        }
        Ok(())
    }
}

pub(crate) fn registration(services: &Services) -> Registration {
    let s = services;
    Registration {
        handlers: vec![
            (
                "blog_examples::post_01::validate_cart",
                Arc::new(ValidateCart(s.catalogue.clone(), s.clock.clone())),
            ),
            (
                "blog_examples::post_01::process_payment",
                Arc::new(ProcessPayment(s.payment.clone())),
            ),
            (
                "blog_examples::post_01::update_inventory",
                Arc::new(UpdateInventory(
                    s.inventory.clone(),
                    s.catalogue.clone(),
                    s.clock.clone(),
                )),
            ),
            (
                "blog_examples::post_01::create_order",
                Arc::new(CreateOrder(s.clock.clone())),
            ),
            (
                "blog_examples::post_01::send_confirmation",
                Arc::new(SendConfirmation(s.email.clone(), s.clock.clone())),
            ),
        ],
        hooks: vec![(TASK_HOOKS, Arc::new(OrderProcessingHooks))],
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn order(email: &str, total: i64) -> Order {
        Order {
            order_number: "ORD-20260101-0000ABCD".into(),
            customer_email: email.into(),
            customer_name: "John Doe".into(),
            total_amount: Cents(total),
            status: OrderStatus::Pending,
        }
    }

    #[test]
    fn an_order_needs_an_email_a_name_and_a_positive_total() {
        assert_eq!(order("customer@example.com", 12476).validate(), Ok(()));
        for bad in [
            "not-an-email",
            "a@b",
            "two@@example.com",
            "sp ace@example.com",
            "@x.io",
        ] {
            assert_eq!(
                order(bad, 12476).validate(),
                Err(OrderError::InvalidEmail(bad.into())),
                "{bad}"
            );
        }
        assert_eq!(
            order("customer@example.com", 0)
                .validate()
                .unwrap_err()
                .to_string(),
            "order total must be positive, got 0.00"
        );
        let mut nameless = order("customer@example.com", 1);
        nameless.customer_name = " ".into();
        assert_eq!(nameless.validate(), Err(OrderError::MissingName));
    }

    #[test]
    fn totals_follow_the_blog_rules() {
        let catalogue = ProductCatalogue::default();
        let item = |id, quantity| {
            let p = catalogue.find(id).unwrap();
            ValidatedItem {
                product_id: id,
                name: p.name,
                price: p.price,
                quantity,
            }
        };
        let blog = CartTotals::of(&[item(1, 2), item(2, 1)]);
        assert_eq!(
            [blog.subtotal, blog.tax, blog.shipping, blog.total],
            [Cents(10997), Cents(880), Cents(599), Cents(12476)]
        );
        assert_eq!(CartTotals::of(&[item(7, 5)]).shipping, Cents(999));
        assert_eq!(CartTotals::of(&[item(7, 21)]).shipping, Cents(1499));
        assert_eq!(catalogue.find(7).unwrap().name, "Mock Product 7");
        assert_eq!(ProductCatalogue::new([]).find(1), None);
    }

    #[test]
    fn order_numbers_are_dated_and_stable() {
        let now = "2026-01-01T12:00:00Z".parse().unwrap();
        assert_eq!(
            order_number(now, "0190a1b2-c3d4-7000-8000-000000000000"),
            "ORD-20260101-0190A1B2"
        );
    }
}
