//! Cross-crate end-to-end tests for Tasker: the server over HTTP, several engine processes on one
//! PostgreSQL, crash recovery. The tests live in `tests/it/`; this library is empty.
