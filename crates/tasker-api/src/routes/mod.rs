//! The route handlers, one module per resource.

pub(crate) mod analytics;
pub(crate) mod events;
pub(crate) mod health;
pub(crate) mod session;
pub(crate) mod steps;
pub(crate) mod switches;
pub(crate) mod tasks;
pub(crate) mod templates;
