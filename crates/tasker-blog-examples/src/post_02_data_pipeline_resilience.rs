//! Blog post 02, data pipeline resilience: `blog_examples/customer_analytics@1.0.0`, a nightly
//! ETL with three parallel extracts, two transforms that fan in, insights, a dashboard update and
//! notifications. A failing branch stops only what depends on it.

use std::collections::BTreeMap;
use std::sync::Arc;

use chrono::NaiveDate;
use serde_json::{Value, json};
use tasker_domain::StepError;
use tasker_engine::{Clock, StepContext, StepHandler};

use crate::mock::{MockService, ServiceFailure, mock_base};
use crate::{Registration, parent, permanent};

// ---------------------------------------------------------------------------------------------
// Models

/// The reporting window, both ends included.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct DateRange {
    /// First day.
    pub start: NaiveDate,
    /// Last day.
    pub end: NaiveDate,
}

/// Why a context's `date_range` is unusable; each maps to one error code.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum DateRangeError {
    /// No `date_range` object.
    #[error("date_range is required")]
    Missing,
    /// No `date_range.start_date`.
    #[error("date_range.start_date is required")]
    MissingStart,
    /// No `date_range.end_date`.
    #[error("date_range.end_date is required")]
    MissingEnd,
    /// A date is not `YYYY-MM-DD`.
    #[error("date_range: `{0}` is not a YYYY-MM-DD date")]
    InvalidFormat(String),
    /// The range runs backwards.
    #[error("date_range: start {start} is after end {end}")]
    StartAfterEnd {
        /// The start given.
        start: NaiveDate,
        /// The end given.
        end: NaiveDate,
    },
}

impl DateRangeError {
    /// The step error code the blog uses.
    pub fn code(&self) -> &'static str {
        match self {
            Self::Missing => "MISSING_DATE_RANGE",
            Self::MissingStart => "MISSING_START_DATE",
            Self::MissingEnd => "MISSING_END_DATE",
            Self::InvalidFormat(_) => "INVALID_DATE_FORMAT",
            Self::StartAfterEnd { .. } => "INVALID_DATE_RANGE",
        }
    }
}

impl DateRange {
    /// Reads and checks `context.date_range`.
    pub fn from_context(context: &Value) -> Result<Self, DateRangeError> {
        let range = context
            .get("date_range")
            .filter(|r| r.is_object())
            .ok_or(DateRangeError::Missing)?;
        let date = |key: &str, missing: DateRangeError| {
            let text = range.get(key).and_then(Value::as_str).ok_or(missing)?;
            NaiveDate::parse_from_str(text, "%Y-%m-%d")
                .map_err(|_| DateRangeError::InvalidFormat(text.to_owned()))
        };
        let start = date("start_date", DateRangeError::MissingStart)?;
        let end = date("end_date", DateRangeError::MissingEnd)?;
        if start > end {
            return Err(DateRangeError::StartAfterEnd { start, end });
        }
        Ok(Self { start, end })
    }
}

// ---------------------------------------------------------------------------------------------
// Services

/// The data warehouse: extracts and the heavy transforms.
pub trait DataWarehouse: Send + Sync {
    /// Orders placed in `range`.
    fn extract_orders(&self, range: DateRange) -> Result<Value, ServiceFailure>;
    /// Customers active in `range`.
    fn extract_users(&self, range: DateRange) -> Result<Value, ServiceFailure>;
    /// The product catalogue.
    fn extract_products(&self) -> Result<Value, ServiceFailure>;
    /// Spend and order counts per customer.
    fn transform_customer_metrics(
        &self,
        orders: &Value,
        users: &Value,
    ) -> Result<Value, ServiceFailure>;
    /// Units and revenue per product.
    fn transform_product_metrics(
        &self,
        orders: &Value,
        products: &Value,
    ) -> Result<Value, ServiceFailure>;
    /// Headline insights from both metric sets.
    fn generate_insights(
        &self,
        customer_metrics: &Value,
        product_metrics: &Value,
    ) -> Result<Value, ServiceFailure>;
}

/// The BI dashboard and the team chat.
pub trait DashboardService: Send + Sync {
    /// Publishes the insights.
    fn update_dashboard(&self, insights: &Value) -> Result<Value, ServiceFailure>;
    /// Tells the channels the report is ready.
    fn send_notifications(
        &self,
        channels: &[String],
        summary: &Value,
    ) -> Result<Value, ServiceFailure>;
}

/// Mock warehouse over the blog's fixture data: six January-2024 orders, four customers, five
/// products. Every answer is `{status: success, data, metadata}`.
#[derive(Debug)]
pub struct MockDataWarehouse {
    base: MockService,
}

/// Mock dashboard and chat.
#[derive(Debug)]
pub struct MockDashboardService {
    base: MockService,
}

mock_base!(MockDataWarehouse, MockDashboardService);

/// `(order_id, customer_id, product_id, quantity, amount in cents, date)`.
const ORDERS: [(i64, i64, i64, i64, i64, &str); 6] = [
    (1001, 1, 101, 2, 5998, "2024-01-03"),
    (1002, 2, 102, 1, 4999, "2024-01-07"),
    (1003, 1, 103, 3, 2997, "2024-01-11"),
    (1004, 3, 101, 1, 2999, "2024-01-15"),
    (1005, 4, 104, 1, 19999, "2024-01-22"),
    (1006, 2, 105, 4, 3996, "2024-01-28"),
];
const USERS: [(i64, &str, &str); 4] = [
    (1, "Alice Johnson", "premium"),
    (2, "Bob Smith", "standard"),
    (3, "Carol White", "standard"),
    (4, "Dan Brown", "enterprise"),
];
const PRODUCTS: [(i64, &str, &str); 5] = [
    (101, "Widget A", "widgets"),
    (102, "Widget B", "widgets"),
    (103, "Gadget", "gadgets"),
    (104, "Pro Suite", "software"),
    (105, "Cable Pack", "accessories"),
];

fn success(data: Value, records: usize) -> Value {
    json!({"status": "success", "data": data, "metadata": {"record_count": records}})
}

fn records(value: &Value) -> &[Value] {
    value.as_array().map_or(&[], Vec::as_slice)
}

impl MockDataWarehouse {
    /// A fresh mock.
    pub fn new(clock: Arc<dyn Clock>) -> Self {
        Self {
            base: MockService::new("data_warehouse", clock),
        }
    }

    fn answer(
        &self,
        method: &str,
        arguments: Value,
        data: impl FnOnce() -> Value,
    ) -> Result<Value, ServiceFailure> {
        if let Some(stub) = self.base.call(method, arguments)? {
            return Ok(stub);
        }
        let data = data();
        let count = data.as_array().map_or(1, Vec::len);
        Ok(success(data, count))
    }
}

impl DataWarehouse for MockDataWarehouse {
    fn extract_orders(&self, range: DateRange) -> Result<Value, ServiceFailure> {
        let arguments = json!({"start_date": range.start, "end_date": range.end});
        self.answer("extract_orders", arguments, || {
            ORDERS
                .iter()
                .filter(|o| {
                    let day: NaiveDate = o.5.parse().expect("fixture dates are valid");
                    range.start <= day && day <= range.end
                })
                .map(|&(id, customer, product, quantity, cents, date)| {
                    json!({"order_id": id, "customer_id": customer, "product_id": product,
                           "quantity": quantity, "amount_cents": cents, "order_date": date})
                })
                .collect()
        })
    }

    fn extract_users(&self, range: DateRange) -> Result<Value, ServiceFailure> {
        let arguments = json!({"start_date": range.start, "end_date": range.end});
        self.answer("extract_users", arguments, || {
            USERS
                .iter()
                .map(|&(id, name, tier)| json!({"customer_id": id, "name": name, "tier": tier}))
                .collect()
        })
    }

    fn extract_products(&self) -> Result<Value, ServiceFailure> {
        self.answer("extract_products", json!({}), || {
            PRODUCTS
                .iter()
                .map(|&(id, name, category)| {
                    json!({"product_id": id, "name": name, "category": category})
                })
                .collect()
        })
    }

    fn transform_customer_metrics(
        &self,
        orders: &Value,
        users: &Value,
    ) -> Result<Value, ServiceFailure> {
        let arguments = json!({"orders": records(orders).len(), "users": records(users).len()});
        self.answer("transform_customer_metrics", arguments, || {
            records(users)
                .iter()
                .map(|user| {
                    let mine: Vec<&Value> = records(orders)
                        .iter()
                        .filter(|o| o["customer_id"] == user["customer_id"])
                        .collect();
                    let spent: i64 = mine.iter().filter_map(|o| o["amount_cents"].as_i64()).sum();
                    json!({"customer_id": user["customer_id"], "name": user["name"],
                           "tier": user["tier"], "order_count": mine.len(),
                           "total_spent_cents": spent})
                })
                .collect()
        })
    }

    fn transform_product_metrics(
        &self,
        orders: &Value,
        products: &Value,
    ) -> Result<Value, ServiceFailure> {
        let arguments =
            json!({"orders": records(orders).len(), "products": records(products).len()});
        self.answer("transform_product_metrics", arguments, || {
            records(products)
                .iter()
                .map(|product| {
                    let sold: Vec<&Value> = records(orders)
                        .iter()
                        .filter(|o| o["product_id"] == product["product_id"])
                        .collect();
                    json!({"product_id": product["product_id"], "name": product["name"],
                           "units_sold": sold.iter().filter_map(|o| o["quantity"].as_i64()).sum::<i64>(),
                           "revenue_cents": sold.iter().filter_map(|o| o["amount_cents"].as_i64()).sum::<i64>()})
                })
                .collect()
        })
    }

    fn generate_insights(
        &self,
        customer_metrics: &Value,
        product_metrics: &Value,
    ) -> Result<Value, ServiceFailure> {
        let arguments = json!({"customers": records(customer_metrics).len(),
                               "products": records(product_metrics).len()});
        self.answer("generate_insights", arguments, || {
            let top = |rows: &Value, key: &str| {
                records(rows)
                    .iter()
                    .max_by_key(|r| r[key].as_i64().unwrap_or_default())
                    .map(|r| r["name"].clone())
                    .unwrap_or(Value::Null)
            };
            let revenue: i64 = records(product_metrics)
                .iter()
                .filter_map(|p| p["revenue_cents"].as_i64())
                .sum();
            json!({"top_customer": top(customer_metrics, "total_spent_cents"),
                   "top_product": top(product_metrics, "revenue_cents"),
                   "total_revenue_cents": revenue})
        })
    }
}

impl MockDashboardService {
    /// A fresh mock.
    pub fn new(clock: Arc<dyn Clock>) -> Self {
        Self {
            base: MockService::new("dashboard", clock),
        }
    }
}

impl DashboardService for MockDashboardService {
    fn update_dashboard(&self, insights: &Value) -> Result<Value, ServiceFailure> {
        let arguments = json!({"insights": insights});
        Ok(self.base.call("update_dashboard", arguments)?.unwrap_or_else(|| {
            json!({"status": "success", "dashboard_url": "https://dashboards.example.com/customer-analytics", "widgets_updated": 3})
        }))
    }

    fn send_notifications(
        &self,
        channels: &[String],
        summary: &Value,
    ) -> Result<Value, ServiceFailure> {
        let arguments = json!({"channels": channels, "summary": summary});
        Ok(self
            .base
            .call("send_notifications", arguments)?
            .unwrap_or_else(|| json!({"status": "success", "notifications_sent": channels.len()})))
    }
}

/// The outside services of post 02.
#[derive(Clone)]
pub struct Services {
    /// The warehouse.
    pub warehouse: Arc<MockDataWarehouse>,
    /// Dashboard and chat.
    pub dashboard: Arc<MockDashboardService>,
}

impl Services {
    /// Fresh mocks on `clock`.
    pub fn new(clock: Arc<dyn Clock>) -> Self {
        Self {
            warehouse: Arc::new(MockDataWarehouse::new(clock.clone())),
            dashboard: Arc::new(MockDashboardService::new(clock)),
        }
    }
}

// ---------------------------------------------------------------------------------------------
// Step handlers

/// The blog's mapping of a warehouse failure: timeouts and lost connections are worth a retry,
/// a bad query or too little data is not, and anything unknown is retried.
fn classify(failure: &ServiceFailure) -> StepError {
    let message = failure.message.to_ascii_lowercase();
    if message.contains("invalid query") {
        permanent(failure.message.clone(), "INVALID_QUERY")
    } else if message.contains("insufficient data") {
        permanent(failure.message.clone(), "INSUFFICIENT_DATA")
    } else if message.contains("invalid channel") {
        permanent(failure.message.clone(), "INVALID_CHANNEL")
    } else if message.contains("rate limit") {
        StepError::retryable(failure.message.clone())
            .with_code("RATE_LIMITED")
            .with_retry_after(std::time::Duration::from_secs(60))
    } else {
        StepError::retryable(failure.message.clone()).with_code("SERVICE_UNAVAILABLE")
    }
}

/// Published (declared in the template's `custom_events`) when an extract step starts reading.
pub const EXTRACTION_STARTED: &str = "data_pipeline.extraction_started";
/// Published when an extract step has its rows.
pub const EXTRACTION_COMPLETED: &str = "data_pipeline.extraction_completed";
/// Published when the pipeline passes a milestone (insights generated).
pub const MILESTONE_REACHED: &str = "data_pipeline.milestone_reached";

/// Events are observability: a refused publication is logged, never a failed step.
fn publish(step: &StepContext, name: &str, data: Value) {
    if let Err(err) = step.events.publish(name, data) {
        tracing::warn!(error = %err, "publishing a pipeline event failed");
    }
}

/// Which pipeline step a handler instance runs.
#[derive(Debug, Clone, Copy)]
enum Stage {
    ExtractOrders,
    ExtractUsers,
    ExtractProducts,
    TransformCustomers,
    TransformProducts,
    Insights,
    Dashboard,
    Notify,
}

struct PipelineStep {
    stage: Stage,
    warehouse: Arc<dyn DataWarehouse>,
    dashboard: Arc<dyn DashboardService>,
}

fn data<'a>(step: &'a StepContext, parent_step: &str, key: &str) -> Result<&'a Value, StepError> {
    Ok(&parent(step, parent_step)?[key])
}

#[async_trait::async_trait]
impl StepHandler for PipelineStep {
    async fn handle(&self, step: StepContext) -> Result<Value, StepError> {
        let context = &*step.task_context;
        let range =
            || DateRange::from_context(context).map_err(|e| permanent(e.to_string(), e.code()));
        let w = &self.warehouse;
        if matches!(
            self.stage,
            Stage::ExtractOrders | Stage::ExtractUsers | Stage::ExtractProducts
        ) {
            publish(&step, EXTRACTION_STARTED, json!({"attempt": step.attempt}));
        }
        let (key, response) = match self.stage {
            Stage::ExtractOrders => {
                tracing::info!("Starting order extraction");
                ("orders_data", w.extract_orders(range()?))
            }
            Stage::ExtractUsers => {
                tracing::info!("Starting user extraction");
                ("users_data", w.extract_users(range()?))
            }
            Stage::ExtractProducts => {
                tracing::info!("Starting product extraction");
                ("products_data", w.extract_products())
            }
            Stage::TransformCustomers => {
                tracing::info!("Starting customer metrics transformation");
                let orders = data(&step, "extract_orders", "orders_data")?;
                let users = data(&step, "extract_users", "users_data")?;
                (
                    "customer_metrics",
                    w.transform_customer_metrics(orders, users),
                )
            }
            Stage::TransformProducts => {
                tracing::info!("Starting product metrics transformation");
                let orders = data(&step, "extract_orders", "orders_data")?;
                let products = data(&step, "extract_products", "products_data")?;
                (
                    "product_metrics",
                    w.transform_product_metrics(orders, products),
                )
            }
            Stage::Insights => {
                tracing::info!("Starting business insights generation");
                let customers = data(&step, "transform_customer_metrics", "customer_metrics")?;
                let products = data(&step, "transform_product_metrics", "product_metrics")?;
                ("insights", w.generate_insights(customers, products))
            }
            Stage::Dashboard => {
                tracing::info!("Starting dashboard update");
                let insights = data(&step, "generate_insights", "insights")?;
                ("dashboard", self.dashboard.update_dashboard(insights))
            }
            Stage::Notify => {
                tracing::info!("Starting notification delivery");
                let dashboard = data(&step, "update_dashboard", "dashboard")?;
                let channels: Vec<String> = context["notification_channels"]
                    .as_array()
                    .map(|c| {
                        c.iter()
                            .filter_map(|v| v.as_str().map(str::to_owned))
                            .collect()
                    })
                    .unwrap_or_else(|| vec!["#data-team".to_owned()]);
                let sent = self.dashboard.send_notifications(&channels, dashboard);
                ("notifications_sent", sent)
            }
        };
        let response = response.map_err(|failure| classify(&failure))?;
        match self.stage {
            Stage::ExtractOrders | Stage::ExtractUsers | Stage::ExtractProducts => publish(
                &step,
                EXTRACTION_COMPLETED,
                json!({"source": key, "records": response.as_array().map_or(0, Vec::len)}),
            ),
            Stage::Insights => publish(
                &step,
                MILESTONE_REACHED,
                json!({"milestone": "insights_generated"}),
            ),
            _ => {}
        }
        let payload = if matches!(self.stage, Stage::Dashboard | Stage::Notify) {
            response
        } else {
            response["data"].clone()
        };
        let mut results = BTreeMap::from([(key.to_owned(), payload)]);
        if matches!(self.stage, Stage::ExtractOrders) {
            results.insert(
                "extraction_metadata".into(),
                json!({"date_range": context["date_range"]}),
            );
        }
        Ok(json!(results))
    }
}

pub(crate) fn registration(services: &Services) -> Registration {
    let stages = [
        (
            "blog_examples::post_02::extract_orders",
            Stage::ExtractOrders,
        ),
        ("blog_examples::post_02::extract_users", Stage::ExtractUsers),
        (
            "blog_examples::post_02::extract_products",
            Stage::ExtractProducts,
        ),
        (
            "blog_examples::post_02::transform_customer_metrics",
            Stage::TransformCustomers,
        ),
        (
            "blog_examples::post_02::transform_product_metrics",
            Stage::TransformProducts,
        ),
        ("blog_examples::post_02::generate_insights", Stage::Insights),
        ("blog_examples::post_02::update_dashboard", Stage::Dashboard),
        ("blog_examples::post_02::send_notifications", Stage::Notify),
    ];
    Registration {
        handlers: stages
            .into_iter()
            .map(|(class, stage)| {
                let handler: Arc<dyn StepHandler> = Arc::new(PipelineStep {
                    stage,
                    warehouse: services.warehouse.clone(),
                    dashboard: services.dashboard.clone(),
                });
                (class, handler)
            })
            .collect(),
        hooks: Vec::new(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn date_ranges_are_checked_with_the_blog_codes() {
        let check = |context: Value| DateRange::from_context(&context).map_err(|e| e.code());
        let ok =
            check(json!({"date_range": {"start_date": "2024-01-01", "end_date": "2024-01-31"}}));
        assert_eq!(
            ok.unwrap().end,
            NaiveDate::from_ymd_opt(2024, 1, 31).unwrap()
        );
        assert_eq!(check(json!({})), Err("MISSING_DATE_RANGE"));
        assert_eq!(
            check(json!({"date_range": {"end_date": "2024-01-31"}})),
            Err("MISSING_START_DATE")
        );
        assert_eq!(
            check(json!({"date_range": {"start_date": "2024-01-31"}})),
            Err("MISSING_END_DATE")
        );
        assert_eq!(
            check(json!({"date_range": {"start_date": "2024-02-01", "end_date": "2024-01-31"}})),
            Err("INVALID_DATE_RANGE")
        );
        assert_eq!(
            check(json!({"date_range": {"start_date": "01/02/2024", "end_date": "2024-01-31"}})),
            Err("INVALID_DATE_FORMAT")
        );
    }
}
