//! Property tests: arbitrary request bodies and query strings never produce a server error,
//! and every error they produce is the envelope.

use proptest::prelude::*;
use proptest::test_runner::{Config, TestRunner};
use reqwest::Method;
use serde_json::Value;
use tasker_persistence::testing::TestDatabase;

use crate::support::{open_access, serve};

fn json_value() -> impl Strategy<Value = Value> {
    let leaf = prop_oneof![
        Just(Value::Null),
        any::<bool>().prop_map(Value::Bool),
        any::<i64>().prop_map(Value::from),
        any::<f64>()
            .prop_filter("finite", |f| f.is_finite())
            .prop_map(Value::from),
        ".{0,12}".prop_map(Value::String),
        prop_oneof![
            Just("order"),
            Just("shop"),
            Just("name"),
            Just("context"),
            Just("order_id")
        ]
        .prop_map(|s| Value::String(s.to_owned())),
    ];
    leaf.prop_recursive(3, 24, 4, |inner| {
        prop_oneof![
            prop::collection::vec(inner.clone(), 0..4).prop_map(Value::Array),
            prop::collection::btree_map(
                prop_oneof![
                    Just("name".to_owned()),
                    Just("namespace".to_owned()),
                    Just("context".to_owned()),
                    Just("version".to_owned()),
                    Just("tags".to_owned()),
                    Just("bypass_steps".to_owned()),
                    "[a-z_]{1,8}",
                ],
                inner,
                0..5
            )
            .prop_map(|m| Value::Object(m.into_iter().collect())),
        ]
    })
}

fn query_string() -> impl Strategy<Value = String> {
    let key = prop_oneof![
        Just("state"),
        Just("limit"),
        Just("cursor"),
        Just("sort"),
        Just("namespace"),
        Just("created_after"),
        Just("annotation"),
        Just("include"),
        Just("x"),
    ];
    prop::collection::vec((key, "[ -~]{0,12}"), 0..4).prop_map(|pairs| {
        pairs
            .into_iter()
            .map(|(k, v)| format!("{k}={}", url_escape(&v)))
            .collect::<Vec<_>>()
            .join("&")
    })
}

fn url_escape(value: &str) -> String {
    value
        .bytes()
        .map(|b| {
            if b.is_ascii_alphanumeric() {
                (b as char).to_string()
            } else {
                format!("%{b:02X}")
            }
        })
        .collect()
}

#[test]
fn arbitrary_bodies_and_queries_never_produce_a_server_error() {
    let runtime = tokio::runtime::Runtime::new().unwrap();
    let server =
        runtime.block_on(async { serve(TestDatabase::sqlite().await, open_access()).await });
    let mut runner = TestRunner::new(Config {
        cases: 96,
        ..Config::default()
    });
    runner
        .run(&(json_value(), query_string()), |(body, query)| {
            runtime.block_on(async {
                for (method, path, body) in [
                    (Method::POST, "/tasks".to_owned(), Some(body.clone())),
                    (Method::GET, format!("/tasks?{query}"), None),
                    (
                        Method::GET,
                        format!("/tasks/{}?{query}", uuid::Uuid::now_v7()),
                        None,
                    ),
                    (
                        Method::PATCH,
                        format!("/tasks/{}", uuid::Uuid::now_v7()),
                        Some(body.clone()),
                    ),
                ] {
                    let reply = server.call(method.clone(), &path, body, &[]).await;
                    prop_assert!(
                        !reply.status.is_server_error(),
                        "{method} {path}: {} {}",
                        reply.status,
                        reply.body
                    );
                    if reply.status.is_client_error() {
                        prop_assert!(
                            reply.body["error"]["code"].is_string(),
                            "{method} {path}: {}",
                            reply.body
                        );
                    }
                }
                Ok(())
            })
        })
        .unwrap();
}
