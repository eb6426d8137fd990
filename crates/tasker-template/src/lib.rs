//! Task templates for Tasker: the YAML (or JSON) workflow format parsed strictly, with every
//! error located by file line and step; semantic validation; the dependency graph (cycles,
//! levels, topological order, Mermaid/DOT/text exports); and task-context validation against a
//! template's JSON Schema.
//!
//! Who depends on it: the persistence catalogue, the engine, the `tasker` binary, and
//! applications that load and check templates without a database or a runtime.
//!
//! API boundary: applications depend on this crate directly; its public types are stable
//! within a release line.
//!
//! Architecture Invariants:
//! - No I/O and no async runtime: parsing works on strings, validation on values.
//! - Depends only on `tasker-domain` among Tasker's crates. This is where YAML parsing, JSON
//!   Schema and string similarity live, so crates that need only ids, states and requests
//!   (`tasker-domain`) never compile them.
//! - Graph algorithms are iterative, so a 20,000-step chain cannot overflow the stack.

pub mod context;
pub mod graph;
pub mod template;

pub use context::{ContextError, ContextSchema, ContextSchemaError};
pub use graph::{DependencyGraph, GraphFormat};
#[cfg(feature = "schema")]
pub use template::json_schema;
pub use template::{
    CustomEventDecl, DEFAULT_VERSION, StepTemplate, TaskTemplate, TemplateError, TemplateErrorKind,
    TemplateErrors,
};
