//! tasker-auth's suite: the attack cases, accepted tokens and key sources, the permission
//! matrix and parsing properties, applications' own authenticators and coordinators, and
//! configuration. No clock is read and nothing sleeps: "now" is `support::t0()` plus offsets.

mod attacks;
mod config;
mod custom;
mod jwt;
mod permissions;
mod support;
