//! Tasker's REST and GraphQL APIs, health and metrics endpoints, returned as an axum `Router`.
//!
//! Who depends on it: `tasker-server` and custom servers built from the parts.
//!
//! Architecture Invariant: the only library crate that knows HTTP status codes; every error
//! type maps to a status in exactly one place.
//!
//! Status: filled in by the API issue; this crate holds the layer's place.
