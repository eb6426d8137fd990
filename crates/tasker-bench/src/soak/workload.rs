//! The soak's task templates: chains, diamonds, retries, permanent failures, timeouts and steps
//! that outlast the kill interval, each with the final state it plans. Steps named `call_*` are
//! `tasker::http` calls to the ledger, their query telling it how long to hold and what to
//! answer; the others are `tasker::fail` and `tasker::sleep`.

use anyhow::{Context, Result};
use tasker_template::TaskTemplate;

/// The namespace of every soak template.
pub(crate) const NAMESPACE: &str = "soak";

/// Attempts an HTTP step may use: kills and restarts spend attempts (an expired lease counts as
/// a failed attempt), so enough that none of them exhausts a step planned to succeed.
const RETRY_LIMIT: u32 = 40;

/// One template, and how its tasks must end.
pub(crate) struct Shape {
    pub name: &'static str,
    pub expected: &'static str,
    pub yaml: String,
}

/// Every shape, their HTTP steps calling the ledger at `url(query)`; the long step holds
/// `long_ms` (longer than the kill interval).
pub(crate) fn shapes(url: &dyn Fn(&str) -> String, long_ms: u64) -> Vec<Shape> {
    let http = |name: &str, query: &str, extra: &str| {
        format!(
            "  - name: {name}\n    handler_class: tasker::http\n    default_retryable: true\n    \
             default_retry_limit: {RETRY_LIMIT}\n    timeout: 60\n    handler_config:\n      url: \"{}\"\n{extra}",
            url(query)
        )
    };
    let after = |step: &str| format!("    depends_on_step: {step}\n");
    let after_all = |steps: &[&str]| format!("    depends_on_steps: [{}]\n", steps.join(", "));
    let template = |name: &str, steps: Vec<String>| {
        format!(
            "name: {name}\nnamespace_name: {NAMESPACE}\nversion: 1.0.0\nstep_templates:\n{}",
            steps.concat()
        )
    };
    vec![
        Shape {
            name: "soak_chain",
            expected: "complete",
            yaml: template(
                "soak_chain",
                vec![
                    http("call_a", "hold=100", ""),
                    http("call_b", "hold=200", &after("call_a")),
                    http("call_c", "hold=50", &after("call_b")),
                    http("call_d", "hold=300", &after("call_c")),
                ],
            ),
        },
        Shape {
            name: "soak_diamond",
            expected: "complete",
            yaml: template(
                "soak_diamond",
                vec![
                    http("call_root", "hold=50", ""),
                    http("call_left", "hold=300&fail=1", &after("call_root")),
                    http("call_right", "hold=150", &after("call_root")),
                    http(
                        "call_join",
                        "hold=100",
                        &after_all(&["call_left", "call_right"]),
                    ),
                ],
            ),
        },
        Shape {
            name: "soak_retry",
            expected: "complete",
            yaml: template(
                "soak_retry",
                vec![
                    http("call_flaky", "hold=100&fail=3", ""),
                    // tasker::fail: one planned retryable failure, then success.
                    format!(
                        "  - name: fail_once\n    handler_class: tasker::fail\n    default_retryable: true\n    \
                         default_retry_limit: {RETRY_LIMIT}\n    depends_on_step: call_flaky\n    handler_config:\n      times: 1\n"
                    ),
                ],
            ),
        },
        Shape {
            name: "soak_permanent",
            expected: "error",
            yaml: template(
                "soak_permanent",
                vec![
                    http("call_first", "hold=100", ""),
                    // 422: a permanent failure, never retried; call_never is never reached.
                    http("call_refused", "hold=100&status=422", &after("call_first")),
                    http("call_never", "hold=10", &after("call_refused")),
                ],
            ),
        },
        Shape {
            name: "soak_timeout",
            expected: "complete",
            yaml: template(
                "soak_timeout",
                vec![
                    // The first call outlasts the step's 1.5 s timeout; the retry is quick.
                    http("call_slow_once", "hold=100&slow=1&slow_ms=4000", "")
                        .replace("timeout: 60", "timeout: 1.5"),
                    http("call_after_timeout", "hold=50", &after("call_slow_once")),
                ],
            ),
        },
        Shape {
            name: "soak_sleep_timeout",
            expected: "error",
            yaml: template(
                "soak_sleep_timeout",
                vec![
                    // Sleeps 10 s with a 0.5 s timeout, twice: always times out.
                    "  - name: sleep_too_long\n    handler_class: tasker::sleep\n    default_retryable: true\n    \
                     default_retry_limit: 2\n    timeout: 0.5\n    handler_config:\n      millis: 10000\n"
                        .to_owned(),
                ],
            ),
        },
        Shape {
            name: "soak_long",
            expected: "complete",
            yaml: template(
                "soak_long",
                vec![
                    http("call_long", &format!("hold={long_ms}"), ""),
                    http("call_short", "hold=20", &after("call_long")),
                ],
            ),
        },
    ]
}

/// Parses a shape's template.
pub(crate) fn parse(shape: &Shape) -> Result<TaskTemplate> {
    TaskTemplate::from_yaml_str(&shape.yaml, None)
        .map_err(|e| anyhow::anyhow!("{e}"))
        .with_context(|| format!("the soak template {}", shape.name))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_shape_is_a_valid_template_of_the_soak_namespace() {
        let shapes = shapes(&|q| format!("http://127.0.0.1:9/call?{q}"), 7000);
        assert_eq!(shapes.len(), 7);
        for shape in &shapes {
            let template = parse(shape).unwrap();
            assert_eq!(template.name, shape.name);
            assert_eq!(template.namespace_name, NAMESPACE);
            assert!(["complete", "error"].contains(&shape.expected));
        }
        let long = parse(&shapes[6]).unwrap();
        assert_eq!(
            long.step_templates[0].handler_config["url"],
            "http://127.0.0.1:9/call?hold=7000"
        );
        let timeout = parse(&shapes[4]).unwrap();
        assert_eq!(
            timeout.step_templates[0].timeout,
            Some(std::time::Duration::from_millis(1500))
        );
    }
}
