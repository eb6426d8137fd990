//! Tasker's REST and GraphQL APIs, health and metrics endpoints, returned as an axum `Router`.
//!
//! Who depends on it: `tasker-server` and custom servers built from the parts.
//!
//! Architecture Invariant: the only library crate that knows HTTP status codes; every error
//! type maps to a status in exactly one place.
//!
//! Status: holds the layer's place; the REST and GraphQL routes are not written yet.
