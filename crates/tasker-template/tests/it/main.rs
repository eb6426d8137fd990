//! Integration tests for `tasker-template`: properties of template parsing and the dependency
//! graph over random workflows and random input, and parser messages as authors read them.

mod template_messages;
mod template_props;
