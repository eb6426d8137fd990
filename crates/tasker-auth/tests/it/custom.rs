//! Applications' own authenticators and coordinators (mocked with mockall), the chain, and the
//! audit log.

use std::sync::{Arc, Mutex};

use chrono::{DateTime, Utc};
use http::HeaderMap;
use mockall::predicate::always;
use tasker_auth::{
    AccessControl, AuthError, AuthMethod, Authenticator, AuthenticatorChain, AuthorizationContext,
    AuthorizationCoordinator, Authorizer, Decision, OpenAuthenticator, Operation, Permission,
    PermissionPolicy, Principal, Rejection,
};

use crate::support::*;

mockall::mock! {
    pub Authn {}
    #[async_trait::async_trait]
    impl Authenticator for Authn {
        async fn authenticate(&self, headers: &HeaderMap, now: DateTime<Utc>) -> Result<Principal, AuthError>;
    }
}

mockall::mock! {
    pub Policy {}
    #[async_trait::async_trait]
    impl AuthorizationCoordinator for Policy {
        async fn authorize(
            &self,
            principal: &Principal,
            permission: Permission,
            context: &AuthorizationContext,
        ) -> Decision;
    }
}

fn service(name: &str, grants: &[&str]) -> Principal {
    Principal::new(name, AuthMethod::Custom("mtls".into()))
        .with_permissions(grants.iter().map(|g| g.parse().unwrap()))
}

#[test]
fn a_chain_skips_authenticators_without_credentials() {
    let mut first = MockAuthn::new();
    first
        .expect_authenticate()
        .times(1)
        .returning(|_, _| Err(AuthError::NoCredentials));
    let mut second = MockAuthn::new();
    second
        .expect_authenticate()
        .withf(|_, now| *now == t0())
        .times(1)
        .returning(|_, _| Ok(service("billing", &[])));
    let chain = AuthenticatorChain::new()
        .then(Arc::new(first))
        .then(Arc::new(second));
    let principal = run(chain.authenticate(&HeaderMap::new(), t0())).unwrap();
    assert_eq!(principal.subject, "billing");
}

#[test]
fn a_refused_credential_is_never_rescued_by_a_later_authenticator() {
    let mut first = MockAuthn::new();
    first
        .expect_authenticate()
        .times(1)
        .returning(|_, _| Err(Rejection::Custom("certificate revoked".into()).into()));
    let mut second = MockAuthn::new();
    second.expect_authenticate().times(0);
    let chain = AuthenticatorChain::new()
        .then(Arc::new(first))
        .then(Arc::new(second))
        .then(Arc::new(OpenAuthenticator));
    let err = run(chain.authenticate(&HeaderMap::new(), t0())).unwrap_err();
    assert_eq!(err.to_string(), "certificate revoked");
}

#[test]
fn an_exhausted_chain_has_no_credentials_and_open_catches_the_rest() {
    let none = AuthenticatorChain::new().then(Arc::new(verifier()));
    let err = run(none.authenticate(&HeaderMap::new(), t0())).unwrap_err();
    assert!(matches!(err, AuthError::NoCredentials));
    let open = none.then(Arc::new(OpenAuthenticator));
    let principal = run(open.authenticate(&HeaderMap::new(), t0())).unwrap();
    assert_eq!(principal, Principal::anonymous());
}

/// The doc's example rule: services act only on their own namespace.
fn namespace_rule() -> MockPolicy {
    let mut rule = MockPolicy::new();
    rule.expect_authorize()
        .returning(|principal, _, context| match context.namespace.as_deref() {
            Some(ns) if ns == principal.subject => Decision::allow("own namespace"),
            Some(ns) => Decision::deny(format!(
                "`{}` may not act on namespace `{ns}`",
                principal.subject
            )),
            None => Decision::deny("no namespace"),
        });
    rule
}

#[test]
fn a_coordinator_can_deny_what_permissions_allow() {
    let authorizer =
        Authorizer::new(PermissionPolicy::default()).with_coordinator(Arc::new(namespace_rule()));
    let payments = service("payments", &["tasker.task:*"]);
    let allowed = run(authorizer.authorize(
        &payments,
        Operation::CancelTask,
        AuthorizationContext::new()
            .namespace("payments")
            .resource_id("42"),
    ));
    assert_eq!(allowed, Decision::allow("granted by `tasker.task:*`"));
    let denied = run(authorizer.authorize(
        &payments,
        Operation::CancelTask,
        AuthorizationContext::new().namespace("shipping"),
    ));
    assert_eq!(
        denied,
        Decision::deny("`payments` may not act on namespace `shipping`")
    );
}

#[test]
fn coordinators_are_not_asked_when_permissions_deny_or_the_operation_is_public() {
    let mut never = MockPolicy::new();
    never.expect_authorize().times(0);
    let authorizer = Authorizer::new(PermissionPolicy::default()).with_coordinator(Arc::new(never));
    let nobody = service("nobody", &[]);
    let decision =
        run(authorizer.authorize(&nobody, Operation::ShowTask, AuthorizationContext::new()));
    assert_eq!(
        decision,
        Decision::deny("`nobody` holds no grant for `tasker.task:show`")
    );
    let decision =
        run(authorizer.authorize(&nobody, Operation::HealthLive, AuthorizationContext::new()));
    assert_eq!(decision, Decision::allow("HealthLive is public"));
}

#[test]
fn the_coordinator_sees_the_permission_and_context() {
    let mut rule = MockPolicy::new();
    rule.expect_authorize()
        .with(
            always(),
            mockall::predicate::eq(
                "tasker.workflow_step:resolve"
                    .parse::<Permission>()
                    .unwrap(),
            ),
            mockall::predicate::eq(
                AuthorizationContext::new()
                    .operation(Operation::ResolveStep)
                    .resource_id("7")
                    .parent_resource_id("3")
                    .namespace("payments"),
            ),
        )
        .times(1)
        .returning(|_, _, _| Decision::allow("checked"));
    let authorizer = Authorizer::new(PermissionPolicy::default()).with_coordinator(Arc::new(rule));
    let decision = run(authorizer.authorize(
        &service("payments", &["tasker.workflow_step:resolve"]),
        Operation::ResolveStep,
        AuthorizationContext::new()
            .resource_id("7")
            .parent_resource_id("3")
            .namespace("payments"),
    ));
    assert!(decision.is_allowed());
}

/// Captures the audit log's events as `field=value` lines.
#[derive(Clone, Default)]
struct Captured(Arc<Mutex<Vec<String>>>);

impl<S: tracing::Subscriber> tracing_subscriber::Layer<S> for Captured {
    fn on_event(&self, event: &tracing::Event<'_>, _: tracing_subscriber::layer::Context<'_, S>) {
        struct Fields(Vec<String>);
        impl tracing::field::Visit for Fields {
            fn record_debug(&mut self, field: &tracing::field::Field, value: &dyn std::fmt::Debug) {
                self.0.push(format!("{}={value:?}", field.name()));
            }
            fn record_str(&mut self, field: &tracing::field::Field, value: &str) {
                self.0.push(format!("{}={value}", field.name()));
            }
        }
        let mut fields = Fields(Vec::new());
        event.record(&mut fields);
        self.0.lock().unwrap().push(format!(
            "{} {}",
            event.metadata().target(),
            fields.0.join(" ")
        ));
    }
}

#[test]
fn decisions_and_rejections_reach_the_audit_log_without_secrets() {
    use tracing_subscriber::layer::SubscriberExt as _;
    let captured = Captured::default();
    let subscriber = tracing_subscriber::registry().with(captured.clone());
    let access = AccessControl::new(
        Arc::new(verifier()),
        Authorizer::new(PermissionPolicy::default()),
    )
    .with_coordinator(Arc::new(namespace_rule()));
    let token = hmac_signer(tasker_auth::JwtAlgorithm::HS256)
        .sign_claims(&claims_with(|c| {
            c.insert("exp".into(), serde_json::json!(t0().timestamp() - 3600));
        }))
        .unwrap();
    let act = || {
        let err = run(access.authenticate(&bearer(&token), t0())).unwrap_err();
        assert!(err.to_string().starts_with("token expired at"));
        let principal = service("payments", &["tasker.task:cancel"]);
        let decision = run(access.authorize(
            &principal,
            Operation::CancelTask,
            AuthorizationContext::new()
                .namespace("shipping")
                .resource_id("9"),
        ));
        assert!(!decision.is_allowed());
    };
    // Interest in a callsite is cached process-wide, and a callsite first reached on another
    // test's thread while this subscriber is the only one set is judged by that thread's
    // (absent) subscriber. Reached here first, the audit callsites are registered before this
    // subscriber is set, and setting it recomputes their interest.
    act();
    tracing::subscriber::with_default(subscriber, act);
    let lines = captured.0.lock().unwrap().clone();
    assert_eq!(
        lines,
        [
            "tasker::audit message=authentication rejected reason=token expired at 2026-01-01 11:00:00 UTC (now 2026-01-01 12:00:00 UTC)",
            "tasker::audit message=authorization subject=payments method=custom mtls permission=tasker.task:cancel operation=CancelTask resource_id=9 parent_resource_id= namespace=shipping allowed=false reason=`payments` may not act on namespace `shipping`",
        ]
    );
    assert!(
        lines
            .iter()
            .all(|line| !line.contains(&token) && !line.contains(SECRET))
    );
}
