//! The permission matrix: every registered permission and every operation, against principals
//! holding exact, wildcard, role-derived, global and missing grants. Plus property tests of
//! permission parsing.

use std::collections::BTreeMap;

use expect_test::{Expect, expect};
use proptest::prelude::*;
use tasker_auth::{
    AuthMethod, AuthorizationContext, Authorizer, Grant, Operation, Permission, PermissionPolicy,
    Principal, Resource,
};

use crate::support::run;

fn grants(list: &[&str]) -> Vec<Grant> {
    list.iter().map(|g| g.parse().unwrap()).collect()
}

fn jwt(subject: &str, grants_held: &[&str], roles: &[&str]) -> Principal {
    Principal::new(subject, AuthMethod::Jwt)
        .with_permissions(grants(grants_held))
        .with_roles(roles.iter().copied())
}

/// The principals of the matrix, as columns.
fn principals() -> Vec<(&'static str, Principal)> {
    vec![
        (
            "exact",
            jwt(
                "reader",
                &[
                    "tasker.task:index",
                    "tasker.task:show",
                    "tasker.workflow_step:show",
                ],
                &[],
            ),
        ),
        (
            "wildcard",
            jwt("step-admin", &["tasker.workflow_step:*"], &[]),
        ),
        ("role", jwt("ops", &[], &["operator"])),
        ("none", jwt("nobody", &[], &[])),
        ("ghost-role", jwt("ghost", &[], &["ghost"])),
        ("star", jwt("root", &["*"], &[])),
        ("open", Principal::anonymous()),
    ]
}

fn roles() -> BTreeMap<String, Vec<Grant>> {
    BTreeMap::from([(
        "operator".to_owned(),
        grants(&["tasker.task:*", "tasker.health_status:index"]),
    )])
}

fn cell(allowed: bool) -> &'static str {
    if allowed { "Y" } else { "." }
}

fn matrix(allow_global_wildcard: bool) -> String {
    let policy = PermissionPolicy::new(roles(), allow_global_wildcard);
    let principals = principals();
    let header: String = principals
        .iter()
        .map(|(name, _)| format!("{name:<11}"))
        .collect();
    let mut out = format!("{:<32}{}\n", "", header.trim_end());
    for permission in Permission::all() {
        let row: String = principals
            .iter()
            .map(|(_, p)| format!("{:<11}", cell(policy.decide(p, permission).is_allowed())))
            .collect();
        out.push_str(&format!(
            "{:<32}{}\n",
            permission.to_string(),
            row.trim_end()
        ));
    }
    out
}

fn check(actual: String, expect: Expect) {
    expect.assert_eq(&actual);
}

#[test]
fn every_permission_against_every_kind_of_grant() {
    check(
        matrix(false),
        expect![[r#"
                                            exact      wildcard   role       none       ghost-role star       open
            tasker.task:index               Y          .          Y          .          .          .          Y
            tasker.task:show                Y          .          Y          .          .          .          Y
            tasker.task:create              .          .          Y          .          .          .          Y
            tasker.task:update              .          .          Y          .          .          .          Y
            tasker.task:destroy             .          .          Y          .          .          .          Y
            tasker.task:retry               .          .          Y          .          .          .          Y
            tasker.task:cancel              .          .          Y          .          .          .          Y
            tasker.task:resolve             .          .          Y          .          .          .          Y
            tasker.workflow_step:index      .          Y          .          .          .          .          Y
            tasker.workflow_step:show       Y          Y          .          .          .          .          Y
            tasker.workflow_step:update     .          Y          .          .          .          .          Y
            tasker.workflow_step:destroy    .          Y          .          .          .          .          Y
            tasker.workflow_step:retry      .          Y          .          .          .          .          Y
            tasker.workflow_step:cancel     .          Y          .          .          .          .          Y
            tasker.workflow_step:resolve    .          Y          .          .          .          .          Y
            tasker.task_diagram:show        .          .          .          .          .          .          Y
            tasker.health_status:index      .          .          Y          .          .          .          Y
            tasker.handler:index            .          .          .          .          .          .          Y
            tasker.handler:show             .          .          .          .          .          .          Y
            tasker.metrics:index            .          .          .          .          .          .          Y
            tasker.analytics:index          .          .          .          .          .          .          Y
            tasker.template:index           .          .          .          .          .          .          Y
            tasker.template:show            .          .          .          .          .          .          Y
            tasker.template:create          .          .          .          .          .          .          Y
            tasker.event_stream:index       .          .          .          .          .          .          Y
            tasker.event_stream:subscribe   .          .          .          .          .          .          Y
            tasker.runtime_switch:index     .          .          .          .          .          .          Y
            tasker.runtime_switch:update    .          .          .          .          .          .          Y
            tasker.api_key:index            .          .          .          .          .          .          Y
            tasker.api_key:create           .          .          .          .          .          .          Y
            tasker.api_key:revoke           .          .          .          .          .          .          Y
        "#]],
    );
}

#[test]
fn the_global_wildcard_counts_only_when_enabled() {
    let policy = PermissionPolicy::new(roles(), true);
    let root = jwt("root", &["*"], &[]);
    assert!(Permission::all().all(|p| policy.decide(&root, p).is_allowed()));
    let off = PermissionPolicy::new(roles(), false);
    let decision = off.decide(&root, "tasker.metrics:index".parse().unwrap());
    assert_eq!(
        decision.reason(),
        "`root` holds no grant for `tasker.metrics:index` (`*` is ignored: the global wildcard is not enabled)"
    );
}

#[test]
fn an_independent_oracle_agrees_with_the_policy() {
    // The rule written out again by hand, for every principal and permission.
    let policy = PermissionPolicy::new(roles(), false);
    for (name, principal) in principals() {
        for permission in Permission::all() {
            let resource = permission.resource();
            let expected = match name {
                "exact" => [
                    "tasker.task:index",
                    "tasker.task:show",
                    "tasker.workflow_step:show",
                ]
                .contains(&permission.to_string().as_str()),
                "wildcard" => resource == Resource::WorkflowStep,
                "role" => {
                    resource == Resource::Task
                        || permission.to_string() == "tasker.health_status:index"
                }
                "open" => true,
                _ => false,
            };
            assert_eq!(
                policy.decide(&principal, permission).is_allowed(),
                expected,
                "{name} / {permission}"
            );
        }
    }
}

#[test]
fn decisions_give_their_reason() {
    let policy = PermissionPolicy::new(roles(), false);
    let cancel: Permission = "tasker.task:cancel".parse().unwrap();
    let show: Permission = "tasker.workflow_step:show".parse().unwrap();
    let cases = [
        (
            jwt("a", &["tasker.task:cancel"], &[]),
            cancel,
            "allowed: granted by `tasker.task:cancel`",
        ),
        (
            jwt("b", &["tasker.task:*"], &[]),
            cancel,
            "allowed: granted by `tasker.task:*`",
        ),
        (
            jwt("c", &[], &["operator"]),
            cancel,
            "allowed: granted by role `operator` (`tasker.task:*`)",
        ),
        (
            jwt("d", &[], &["operator", "ghost"]),
            show,
            "denied: `d` holds no grant for `tasker.workflow_step:show` (unknown roles: ghost)",
        ),
        (
            Principal::anonymous(),
            show,
            "allowed: open access: authentication is off",
        ),
    ];
    for (principal, permission, expect) in cases {
        assert_eq!(policy.decide(&principal, permission).to_string(), expect);
    }
}

#[test]
fn every_operation_against_the_principals() {
    let authorizer = Authorizer::new(PermissionPolicy::new(roles(), false));
    let principals = principals();
    let mut out = String::new();
    for spec in Operation::TABLE {
        let row: String = principals
            .iter()
            .map(|(_, principal)| {
                let decision = run(authorizer.authorize(
                    principal,
                    spec.operation,
                    AuthorizationContext::new(),
                ));
                format!("{:<2}", cell(decision.is_allowed()))
            })
            .collect();
        out.push_str(&format!(
            "{:<24}{}\n",
            spec.operation.to_string(),
            row.trim_end()
        ));
    }
    check(
        out,
        expect![[r#"
            ListTasks               Y . Y . . . Y
            CreateTask              . . Y . . . Y
            ShowTask                Y . Y . . . Y
            UpdateTask              . . Y . . . Y
            CancelTask              . . Y . . . Y
            RetryTask               . . Y . . . Y
            ResolveTask             . . Y . . . Y
            ShowTaskDiagram         . . . . . . Y
            ShowTaskHistory         Y . Y . . . Y
            StreamTaskEvents        . . . . . . Y
            ListSteps               . Y . . . . Y
            ShowStep                Y Y . . . . Y
            UpdateStep              . Y . . . . Y
            CancelStep              . Y . . . . Y
            ResolveStep             . Y . . . . Y
            RetryStep               . Y . . . . Y
            ListAnnotationTypes     Y . Y . . . Y
            ListHandlerNamespaces   . . . . . . Y
            ShowHandlerNamespace    . . . . . . Y
            ShowHandler             . . . . . . Y
            ListTemplates           . . . . . . Y
            ShowTemplate            . . . . . . Y
            RegisterTemplate        . . . . . . Y
            ValidateTemplate        . . . . . . Y
            ListEvents              . . . . . . Y
            SubscribeEvents         . . . . . . Y
            ListRuntimeSwitches     . . . . . . Y
            UpdateRuntimeSwitch     . . . . . . Y
            HealthLive              Y Y Y Y Y Y Y
            HealthReady             Y Y Y Y Y Y Y
            HealthStatus            . . Y . . . Y
            Metrics                 . . . . . . Y
            AnalyticsPerformance    . . . . . . Y
            AnalyticsBottlenecks    . . . . . . Y
            ListApiKeys             . . . . . . Y
            CreateApiKey            . . . . . . Y
            RevokeApiKey            . . . . . . Y
            SignIn                  Y Y Y Y Y Y Y
            ShowSession             Y Y Y Y Y Y Y
            SignOut                 Y Y Y Y Y Y Y
        "#]],
    );
}

fn any_grant() -> impl Strategy<Value = Grant> {
    let permissions: Vec<Permission> = Permission::all().collect();
    prop_oneof![
        proptest::sample::select(permissions).prop_map(Grant::Permission),
        proptest::sample::select(Resource::ALL.to_vec()).prop_map(Grant::Resource),
        Just(Grant::All),
    ]
}

/// Strings close to valid ones: registry words, separators and noise, glued together.
fn near_miss() -> impl Strategy<Value = String> {
    let words: Vec<String> = Resource::ALL
        .iter()
        .map(|r| r.as_str().to_owned())
        .chain(
            tasker_auth::Action::ALL
                .iter()
                .map(|a| a.as_str().to_owned()),
        )
        .chain([":", "*", ".", " ", "", "tasker", "\u{0}", "é", "::"].map(str::to_owned))
        .collect();
    proptest::collection::vec(proptest::sample::select(words), 0..5)
        .prop_map(|parts| parts.concat())
}

proptest! {
    #[test]
    fn parsing_any_string_never_panics_and_what_parses_prints_back(input in any::<String>()) {
        if let Ok(grant) = input.parse::<Grant>() {
            prop_assert_eq!(grant.to_string(), input.clone());
        }
        if let Ok(permission) = input.parse::<Permission>() {
            prop_assert_eq!(permission.to_string(), input);
        }
    }

    #[test]
    fn near_misses_never_panic_and_what_parses_prints_back(input in near_miss()) {
        match input.parse::<Grant>() {
            Ok(grant) => prop_assert_eq!(grant.to_string(), input),
            Err(err) => prop_assert!(!err.to_string().is_empty()),
        }
    }

    #[test]
    fn every_grant_round_trips(grant in any_grant()) {
        prop_assert_eq!(grant.to_string().parse::<Grant>(), Ok(grant));
        let json = serde_json::to_string(&grant).unwrap();
        prop_assert_eq!(serde_json::from_str::<Grant>(&json).unwrap(), grant);
    }
}
