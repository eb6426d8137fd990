//! Cross-crate end-to-end tests for Tasker, and the home of the documentation's doctests: every
//! Rust block in README.md and docs/*.md compiles and runs as a doctest of this crate
//! (`cargo test --doc -p tasker-tests`, part of `cargo xtask validate-docs`).

#[cfg(doctest)]
#[doc = include_str!("../../README.md")]
pub struct ReadmeDoctests;

#[cfg(doctest)]
#[doc = include_str!("../../docs/blog-examples.md")]
pub struct BlogExamplesDoctests;

#[cfg(doctest)]
#[doc = include_str!("../../docs/events.md")]
pub struct EventsDoctests;

#[cfg(doctest)]
#[doc = include_str!("../../docs/api.md")]
pub struct ApiDoctests;
