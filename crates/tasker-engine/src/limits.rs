//! Size limits and storability of the JSON the engine writes: pure checks, so the decisions are
//! tested without a database. Sizes are the bytes of compact JSON, as stored.

use serde_json::Value;
use tasker_domain::{StepError, codes};

/// The bytes of `value` as compact JSON.
pub(crate) fn json_size(value: &Value) -> usize {
    struct Count(usize);
    impl std::io::Write for Count {
        fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
            self.0 += buf.len();
            Ok(buf.len())
        }
        fn flush(&mut self) -> std::io::Result<()> {
            Ok(())
        }
    }
    let mut count = Count(0);
    // Writing a `Value` to a writer that never fails cannot fail.
    let _ = serde_json::to_writer(&mut count, value);
    count.0
}

/// The JSON Pointer of the first string or key in `value` holding a NUL character (`\u0000`),
/// which PostgreSQL's `jsonb` refuses; `None` when there is none. Iterative, so depth is no
/// danger.
pub(crate) fn find_nul(value: &Value) -> Option<String> {
    let mut stack: Vec<(String, &Value)> = vec![(String::new(), value)];
    while let Some((path, value)) = stack.pop() {
        match value {
            Value::String(s) if s.contains('\0') => return Some(path_or_root(path)),
            Value::Array(items) => {
                for (index, item) in items.iter().enumerate().rev() {
                    stack.push((format!("{path}/{index}"), item));
                }
            }
            Value::Object(map) => {
                let mut children = Vec::with_capacity(map.len());
                for (key, item) in map {
                    let child = format!("{path}/{}", key.replace('~', "~0").replace('/', "~1"));
                    if key.contains('\0') {
                        return Some(child);
                    }
                    children.push((child, item));
                }
                stack.extend(children.into_iter().rev());
            }
            _ => {}
        }
    }
    None
}

fn path_or_root(path: String) -> String {
    if path.is_empty() { "/".into() } else { path }
}

/// Replaces NUL characters in every string and key of `value` with U+FFFD, so an error's details
/// can always be stored.
pub(crate) fn scrub_nul(value: &mut Value) {
    let mut stack = vec![value];
    while let Some(value) = stack.pop() {
        match value {
            Value::String(s) if s.contains('\0') => *s = s.replace('\0', "\u{FFFD}"),
            Value::Array(items) => stack.extend(items.iter_mut()),
            Value::Object(map) => {
                if map.keys().any(|k| k.contains('\0')) {
                    let old = std::mem::take(map);
                    for (key, item) in old {
                        map.insert(key.replace('\0', "\u{FFFD}"), item);
                    }
                }
                stack.extend(map.values_mut());
            }
            _ => {}
        }
    }
}

/// Why an attempt's results cannot be stored as they are: the permanent error that fails the
/// step instead (`RESULT_TOO_LARGE` or `UNSTORABLE_RESULT`). `None` when they can.
pub(crate) fn unstorable_results(results: &Value, max_bytes: usize) -> Option<StepError> {
    let size = json_size(results);
    if size > max_bytes {
        return Some(StepError::permanent(
            format!(
                "the step's results are {size} bytes, over the limit of {max_bytes} bytes (engine.max_result_bytes)"
            ),
            codes::RESULT_TOO_LARGE,
        ));
    }
    find_nul(results).map(|path| {
        StepError::permanent(
            format!(
                "the step's results hold a NUL character (\\u0000) at {path}, which the database cannot store"
            ),
            codes::UNSTORABLE_RESULT,
        )
    })
}

/// A failure's error made storable: NUL characters in its message, code and details replaced.
pub(crate) fn storable_error(mut error: StepError) -> StepError {
    if error.message.contains('\0') {
        error.message = error.message.replace('\0', "\u{FFFD}");
    }
    if let Some(code) = &mut error.error_code
        && code.contains('\0')
    {
        *code = code.replace('\0', "\u{FFFD}");
    }
    scrub_nul(&mut error.context);
    error
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn sizes_are_compact_json_bytes() {
        assert_eq!(json_size(&json!({"a": [1, "é"]})), r#"{"a":[1,"é"]}"#.len());
        assert_eq!(json_size(&Value::Null), 4);
    }

    #[test]
    fn nul_characters_are_found_by_path_and_scrubbed() {
        assert_eq!(find_nul(&json!({"a": [1, "ok"], "b": "x"})), None);
        assert_eq!(
            find_nul(&json!({"a": [1, "o\u{0}k"]})).as_deref(),
            Some("/a/1")
        );
        assert_eq!(find_nul(&json!("\u{0}")).as_deref(), Some("/"));
        assert_eq!(
            find_nul(&json!({"k/\u{0}": 1})).as_deref(),
            Some("/k~1\u{0}")
        );
        let mut value = json!({"a\u{0}": ["b\u{0}c"]});
        scrub_nul(&mut value);
        assert_eq!(value, json!({"a\u{FFFD}": ["b\u{FFFD}c"]}));
        assert_eq!(find_nul(&value), None);
    }

    #[test]
    fn unstorable_results_become_permanent_errors_with_codes() {
        let too_big = unstorable_results(&json!({"text": "x".repeat(100)}), 50).unwrap();
        assert!(too_big.is_permanent());
        assert_eq!(too_big.error_code.as_deref(), Some(codes::RESULT_TOO_LARGE));
        assert!(
            too_big
                .message
                .contains("111 bytes, over the limit of 50 bytes"),
            "{}",
            too_big.message
        );
        let nul = unstorable_results(&json!({"text": "a\u{0}b"}), 1_000).unwrap();
        assert_eq!(nul.error_code.as_deref(), Some(codes::UNSTORABLE_RESULT));
        assert!(nul.message.contains("at /text"), "{}", nul.message);
        assert!(unstorable_results(&json!({"ok": true}), 1_000).is_none());
        let error = storable_error(
            StepError::retryable("bad\u{0}byte").with_context(json!({"raw": "\u{0}"})),
        );
        assert_eq!(error.message, "bad\u{FFFD}byte");
        assert_eq!(error.context, json!({"raw": "\u{FFFD}"}));
    }
}
