//! Task context validation against a template's JSON Schema, with standard semantics:
//! only `required` is required, and `default`s are applied to the context that gets stored.

use serde_json::{Map, Value};

/// A template's `schema` that is not a usable JSON Schema.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("invalid context schema: {message}")]
pub struct ContextSchemaError {
    /// What the schema compiler said.
    pub message: String,
}

/// One reason a context does not match its schema.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("context{path}: {message}", path = display_path(.path))]
pub struct ContextError {
    /// JSON Pointer to the failing value (`/customer_info/email`); empty for the root.
    pub path: String,
    /// What is wrong there.
    pub message: String,
}

fn display_path(path: &str) -> String {
    if path.is_empty() {
        String::new()
    } else {
        format!(" at {path}")
    }
}

/// A compiled context schema.
pub struct ContextSchema {
    schema: Value,
    validator: jsonschema::Validator,
}

impl std::fmt::Debug for ContextSchema {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ContextSchema")
            .field("schema", &self.schema)
            .finish_non_exhaustive()
    }
}

impl ContextSchema {
    /// Compiles `schema` (the draft is taken from `$schema`, defaulting to the latest).
    pub fn compile(schema: &Value) -> Result<Self, ContextSchemaError> {
        let validator = jsonschema::validator_for(schema).map_err(|err| ContextSchemaError {
            message: err.to_string(),
        })?;
        Ok(Self {
            schema: schema.clone(),
            validator,
        })
    }

    /// The schema as written.
    pub fn schema(&self) -> &Value {
        &self.schema
    }

    /// Applies the schema's defaults to `context`, then validates it. On success `context` holds
    /// the defaults and is what gets stored; on failure it is left as it was, and every error is
    /// returned with its path.
    pub fn validate(&self, context: &mut Value) -> Result<(), Vec<ContextError>> {
        let mut with_defaults = context.clone();
        apply_defaults(&self.schema, &mut with_defaults);
        let errors: Vec<ContextError> = self
            .validator
            .iter_errors(&with_defaults)
            .map(|err| ContextError {
                path: err.instance_path().to_string(),
                message: err.to_string(),
            })
            .collect();
        if errors.is_empty() {
            *context = with_defaults;
            Ok(())
        } else {
            Err(errors)
        }
    }
}

/// Fills in `default`s for absent object properties, at every level the schema describes
/// through `properties` and `items`. Present values are never replaced.
pub fn apply_defaults(schema: &Value, instance: &mut Value) {
    let Some(schema) = schema.as_object() else {
        return;
    };
    match instance {
        Value::Object(object) => {
            if let Some(Value::Object(properties)) = schema.get("properties") {
                fill_properties(properties, object);
            }
        }
        Value::Array(items) => {
            if let Some(item_schema) = schema.get("items") {
                for item in items {
                    apply_defaults(item_schema, item);
                }
            }
        }
        _ => {}
    }
}

fn fill_properties(properties: &Map<String, Value>, object: &mut Map<String, Value>) {
    for (name, property_schema) in properties {
        match object.get_mut(name) {
            Some(present) => apply_defaults(property_schema, present),
            None => {
                if let Some(default) = property_schema.get("default") {
                    let mut value = default.clone();
                    apply_defaults(property_schema, &mut value);
                    object.insert(name.clone(), value);
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn order_schema() -> Value {
        json!({
            "type": "object",
            "required": ["customer_info"],
            "properties": {
                "priority": {"type": "string", "enum": ["standard", "express"], "default": "standard"},
                "customer_info": {
                    "type": "object",
                    "required": ["email"],
                    "properties": {
                        "email": {"type": "string", "minLength": 3},
                        "phone": {"type": "string"},
                        "tier": {"type": "string", "default": "standard"}
                    }
                },
                "items": {"type": "array", "items": {
                    "type": "object",
                    "properties": {"quantity": {"type": "integer", "default": 1}}
                }}
            }
        })
    }

    #[test]
    fn only_required_is_required_and_defaults_are_saved() {
        let schema = ContextSchema::compile(&order_schema()).unwrap();
        let mut context =
            json!({"customer_info": {"email": "a@b.co"}, "items": [{}, {"quantity": 3}]});
        schema.validate(&mut context).unwrap();
        assert_eq!(
            context,
            json!({
                "priority": "standard",
                "customer_info": {"email": "a@b.co", "tier": "standard"},
                "items": [{"quantity": 1}, {"quantity": 3}]
            })
        );
    }

    #[test]
    fn errors_name_the_failing_path_and_leave_the_context_alone() {
        let schema = ContextSchema::compile(&order_schema()).unwrap();
        let original = json!({"priority": "whenever", "customer_info": {"email": 5}});
        let mut context = original.clone();
        let errors = schema.validate(&mut context).unwrap_err();
        let paths: Vec<&str> = errors.iter().map(|e| e.path.as_str()).collect();
        assert!(paths.contains(&"/priority"), "{errors:?}");
        assert!(paths.contains(&"/customer_info/email"), "{errors:?}");
        assert_eq!(context, original);

        let mut missing = json!({});
        let errors = schema.validate(&mut missing).unwrap_err();
        assert_eq!(errors.len(), 1);
        assert!(errors[0].message.contains("customer_info"), "{}", errors[0]);
        assert_eq!(
            errors[0].to_string(),
            format!("context: {}", errors[0].message)
        );
    }

    #[test]
    fn a_broken_schema_is_reported() {
        let err = ContextSchema::compile(&json!({"type": "no-such-type"})).unwrap_err();
        assert!(
            err.to_string().starts_with("invalid context schema"),
            "{err}"
        );
    }
}
