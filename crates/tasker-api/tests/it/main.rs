//! The REST API over real HTTP: a client against a bound port, on SQLite and, when
//! `TASKER_TEST_DATABASE_URL` is set, on PostgreSQL. The engine runs on a manual clock.

mod analytics;
mod auth;
mod events;
mod generated;
mod graphql;
mod health;
mod props;
mod session;
mod steps;
mod support;
mod switches;
mod tasks;
mod templates;
