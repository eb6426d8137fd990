//! Authentication and authorization for Tasker: the authenticator trait, a JWT authenticator,
//! and the authorization coordinator that evaluates `resource:action` permissions.
//!
//! Who depends on it: `tasker-api` and custom servers.
//!
//! Architecture Invariant: depends only on `tasker-domain`; no tokio, no HTTP types; a deny is a
//! value, not an error.
//!
//! Status: filled in by the API and auth issue; this crate holds the layer's place.
