//! The store's suite: every test runs on SQLite, and again on PostgreSQL when
//! `TASKER_TEST_DATABASE_URL` is set, each on its own fresh database.

mod analytics;
mod api_keys;
mod bad_input;
mod claims;
mod connection;
mod counters;
mod create_many;
mod eager;
mod handoff;
mod history;
mod lease_clock;
mod lifecycle;
mod queries;
mod recording;
mod schema;
mod support;
mod switches;
mod transactions;
