//! The engine's suite: every test runs on SQLite, and on PostgreSQL when
//! `TASKER_TEST_DATABASE_URL` is set. Time is a ManualClock; nothing sleeps.

mod bad_input;
mod claim_filter;
mod control;
mod creation;
mod drain;
mod events;
mod handoff;
mod isolation;
mod leases;
mod limits;
mod recording;
mod recovery;
mod relay;
mod retries;
mod shapes;
mod support;
mod switches;
