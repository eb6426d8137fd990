//! sea-orm entities, one module per table: the schema as Rust types. Times are microseconds
//! since the Unix epoch.
//!
//! Crate-private: the store reads and writes with its own SQL, and these entities exist so
//! [`crate::schema_drift`] can hold every table and column the migrations create against a
//! description written by hand (`cargo xtask migrate check`, and a test on both databases).
//! Applications see the store's own types, never these.

/// The `tasker_task_namespaces` table.
pub(crate) mod task_namespace {
    use sea_orm::entity::prelude::*;

    /// One row of `tasker_task_namespaces`.
    #[derive(Clone, Debug, PartialEq, DeriveEntityModel)]
    #[sea_orm(table_name = "tasker_task_namespaces")]
    pub(crate) struct Model {
        #[sea_orm(primary_key)]
        #[allow(missing_docs)]
        pub task_namespace_id: i64,
        #[allow(missing_docs)]
        pub name: String,
        #[allow(missing_docs)]
        pub description: Option<String>,
        #[allow(missing_docs)]
        pub created_at: i64,
        #[allow(missing_docs)]
        pub updated_at: i64,
    }

    /// Relations are expressed in queries, not here.
    #[derive(Copy, Clone, Debug, EnumIter, DeriveRelation)]
    pub(crate) enum Relation {}

    impl ActiveModelBehavior for ActiveModel {}
}

/// The `tasker_named_tasks` table.
pub(crate) mod named_task {
    use sea_orm::entity::prelude::*;

    /// One row of `tasker_named_tasks`.
    #[derive(Clone, Debug, PartialEq, DeriveEntityModel)]
    #[sea_orm(table_name = "tasker_named_tasks")]
    pub(crate) struct Model {
        #[sea_orm(primary_key)]
        #[allow(missing_docs)]
        pub named_task_id: i64,
        #[allow(missing_docs)]
        pub task_namespace_id: i64,
        #[allow(missing_docs)]
        pub name: String,
        #[allow(missing_docs)]
        pub version: String,
        #[allow(missing_docs)]
        pub version_major: i64,
        #[allow(missing_docs)]
        pub version_minor: i64,
        #[allow(missing_docs)]
        pub version_patch: i64,
        #[allow(missing_docs)]
        pub description: Option<String>,
        #[sea_orm(column_type = "JsonBinary")]
        #[allow(missing_docs)]
        pub configuration: Json,
        #[allow(missing_docs)]
        pub created_at: i64,
        #[allow(missing_docs)]
        pub updated_at: i64,
    }

    /// Relations are expressed in queries, not here.
    #[derive(Copy, Clone, Debug, EnumIter, DeriveRelation)]
    pub(crate) enum Relation {}

    impl ActiveModelBehavior for ActiveModel {}
}

/// The `tasker_dependent_systems` table.
pub(crate) mod dependent_system {
    use sea_orm::entity::prelude::*;

    /// One row of `tasker_dependent_systems`.
    #[derive(Clone, Debug, PartialEq, DeriveEntityModel)]
    #[sea_orm(table_name = "tasker_dependent_systems")]
    pub(crate) struct Model {
        #[sea_orm(primary_key)]
        #[allow(missing_docs)]
        pub dependent_system_id: i64,
        #[allow(missing_docs)]
        pub name: String,
        #[allow(missing_docs)]
        pub description: Option<String>,
        #[allow(missing_docs)]
        pub created_at: i64,
        #[allow(missing_docs)]
        pub updated_at: i64,
    }

    /// Relations are expressed in queries, not here.
    #[derive(Copy, Clone, Debug, EnumIter, DeriveRelation)]
    pub(crate) enum Relation {}

    impl ActiveModelBehavior for ActiveModel {}
}

/// The `tasker_named_steps` table.
pub(crate) mod named_step {
    use sea_orm::entity::prelude::*;

    /// One row of `tasker_named_steps`.
    #[derive(Clone, Debug, PartialEq, DeriveEntityModel)]
    #[sea_orm(table_name = "tasker_named_steps")]
    pub(crate) struct Model {
        #[sea_orm(primary_key)]
        #[allow(missing_docs)]
        pub named_step_id: i64,
        #[allow(missing_docs)]
        pub dependent_system_id: i64,
        #[allow(missing_docs)]
        pub name: String,
        #[allow(missing_docs)]
        pub description: Option<String>,
        #[allow(missing_docs)]
        pub created_at: i64,
        #[allow(missing_docs)]
        pub updated_at: i64,
    }

    /// Relations are expressed in queries, not here.
    #[derive(Copy, Clone, Debug, EnumIter, DeriveRelation)]
    pub(crate) enum Relation {}

    impl ActiveModelBehavior for ActiveModel {}
}

/// The `tasker_named_tasks_named_steps` table.
pub(crate) mod named_task_named_step {
    use sea_orm::entity::prelude::*;

    /// One row of `tasker_named_tasks_named_steps`.
    #[derive(Clone, Debug, PartialEq, DeriveEntityModel)]
    #[sea_orm(table_name = "tasker_named_tasks_named_steps")]
    pub(crate) struct Model {
        #[sea_orm(primary_key)]
        #[allow(missing_docs)]
        pub id: i64,
        #[allow(missing_docs)]
        pub named_task_id: i64,
        #[allow(missing_docs)]
        pub named_step_id: i64,
        #[allow(missing_docs)]
        pub skippable: bool,
        #[allow(missing_docs)]
        pub default_retryable: bool,
        #[allow(missing_docs)]
        pub default_retry_limit: i32,
    }

    /// Relations are expressed in queries, not here.
    #[derive(Copy, Clone, Debug, EnumIter, DeriveRelation)]
    pub(crate) enum Relation {}

    impl ActiveModelBehavior for ActiveModel {}
}

/// The `tasker_annotation_types` table.
pub(crate) mod annotation_type {
    use sea_orm::entity::prelude::*;

    /// One row of `tasker_annotation_types`.
    #[derive(Clone, Debug, PartialEq, DeriveEntityModel)]
    #[sea_orm(table_name = "tasker_annotation_types")]
    pub(crate) struct Model {
        #[sea_orm(primary_key)]
        #[allow(missing_docs)]
        pub annotation_type_id: i64,
        #[allow(missing_docs)]
        pub name: String,
        #[allow(missing_docs)]
        pub description: Option<String>,
        #[allow(missing_docs)]
        pub created_at: i64,
        #[allow(missing_docs)]
        pub updated_at: i64,
    }

    /// Relations are expressed in queries, not here.
    #[derive(Copy, Clone, Debug, EnumIter, DeriveRelation)]
    pub(crate) enum Relation {}

    impl ActiveModelBehavior for ActiveModel {}
}

/// The `tasker_dependent_system_object_maps` table.
pub(crate) mod dependent_system_object_map {
    use sea_orm::entity::prelude::*;

    /// One row of `tasker_dependent_system_object_maps`.
    #[derive(Clone, Debug, PartialEq, DeriveEntityModel)]
    #[sea_orm(table_name = "tasker_dependent_system_object_maps")]
    pub(crate) struct Model {
        #[sea_orm(primary_key)]
        #[allow(missing_docs)]
        pub dependent_system_object_map_id: i64,
        #[allow(missing_docs)]
        pub dependent_system_one_id: i64,
        #[allow(missing_docs)]
        pub dependent_system_two_id: i64,
        #[allow(missing_docs)]
        pub remote_id_one: String,
        #[allow(missing_docs)]
        pub remote_id_two: String,
        #[allow(missing_docs)]
        pub created_at: i64,
        #[allow(missing_docs)]
        pub updated_at: i64,
    }

    /// Relations are expressed in queries, not here.
    #[derive(Copy, Clone, Debug, EnumIter, DeriveRelation)]
    pub(crate) enum Relation {}

    impl ActiveModelBehavior for ActiveModel {}
}

/// The `tasker_tasks` table.
pub(crate) mod task {
    use sea_orm::entity::prelude::*;

    /// One row of `tasker_tasks`.
    #[derive(Clone, Debug, PartialEq, DeriveEntityModel)]
    #[sea_orm(table_name = "tasker_tasks")]
    pub(crate) struct Model {
        #[sea_orm(primary_key, auto_increment = false)]
        #[allow(missing_docs)]
        pub task_id: Uuid,
        #[allow(missing_docs)]
        pub named_task_id: i64,
        #[allow(missing_docs)]
        pub state: String,
        #[allow(missing_docs)]
        pub complete: bool,
        #[allow(missing_docs)]
        pub requested_at: i64,
        #[allow(missing_docs)]
        pub initiator: String,
        #[allow(missing_docs)]
        pub source_system: String,
        #[allow(missing_docs)]
        pub reason: String,
        #[sea_orm(column_type = "JsonBinary")]
        #[allow(missing_docs)]
        pub bypass_steps: Json,
        #[sea_orm(column_type = "JsonBinary")]
        #[allow(missing_docs)]
        pub tags: Json,
        #[sea_orm(column_type = "JsonBinary")]
        #[allow(missing_docs)]
        pub context: Json,
        #[allow(missing_docs)]
        pub identity_hash: String,
        #[allow(missing_docs)]
        pub correlation_id: String,
        #[allow(missing_docs)]
        pub total_steps: i32,
        #[allow(missing_docs)]
        pub done_steps: i32,
        #[allow(missing_docs)]
        pub blocked_steps: i32,
        #[allow(missing_docs)]
        pub active_steps: i32,
        #[allow(missing_docs)]
        pub last_sort_key: i32,
        #[allow(missing_docs)]
        pub created_at: i64,
        #[allow(missing_docs)]
        pub updated_at: i64,
        #[allow(missing_docs)]
        pub completed_at: Option<i64>,
        /// The W3C `traceparent` the task was created under; attempts join that trace.
        pub trace_parent: Option<String>,
    }

    /// Relations are expressed in queries, not here.
    #[derive(Copy, Clone, Debug, EnumIter, DeriveRelation)]
    pub(crate) enum Relation {}

    impl ActiveModelBehavior for ActiveModel {}
}

/// The `tasker_workflow_steps` table.
pub(crate) mod workflow_step {
    use sea_orm::entity::prelude::*;

    /// One row of `tasker_workflow_steps`.
    #[derive(Clone, Debug, PartialEq, DeriveEntityModel)]
    #[sea_orm(table_name = "tasker_workflow_steps")]
    pub(crate) struct Model {
        #[sea_orm(primary_key, auto_increment = false)]
        #[allow(missing_docs)]
        pub workflow_step_id: Uuid,
        #[allow(missing_docs)]
        pub task_id: Uuid,
        #[allow(missing_docs)]
        pub named_step_id: i64,
        #[allow(missing_docs)]
        pub name: String,
        #[allow(missing_docs)]
        pub position: i32,
        #[allow(missing_docs)]
        pub state: String,
        #[allow(missing_docs)]
        pub retryable: bool,
        #[allow(missing_docs)]
        pub retry_limit: i32,
        #[allow(missing_docs)]
        pub attempts: i32,
        #[allow(missing_docs)]
        pub skippable: bool,
        #[allow(missing_docs)]
        pub processed: bool,
        #[allow(missing_docs)]
        pub processed_at: Option<i64>,
        #[allow(missing_docs)]
        pub in_process: bool,
        #[allow(missing_docs)]
        pub claim_owner: Option<String>,
        #[allow(missing_docs)]
        pub lease_expires_at: Option<i64>,
        #[allow(missing_docs)]
        pub next_attempt_at: Option<i64>,
        #[allow(missing_docs)]
        pub backoff_request_seconds: Option<f64>,
        #[allow(missing_docs)]
        pub last_attempted_at: Option<i64>,
        #[allow(missing_docs)]
        pub last_failure_at: Option<i64>,
        #[allow(missing_docs)]
        pub unfinished_parents: i32,
        #[allow(missing_docs)]
        pub total_parents: i32,
        #[sea_orm(column_type = "JsonBinary")]
        #[allow(missing_docs)]
        pub inputs: Json,
        #[sea_orm(column_type = "JsonBinary")]
        #[allow(missing_docs)]
        pub results: Option<Json>,
        #[sea_orm(column_type = "JsonBinary")]
        #[allow(missing_docs)]
        pub last_error: Option<Json>,
        #[allow(missing_docs)]
        pub last_sort_key: i32,
        #[allow(missing_docs)]
        pub created_at: i64,
        #[allow(missing_docs)]
        pub updated_at: i64,
    }

    /// Relations are expressed in queries, not here.
    #[derive(Copy, Clone, Debug, EnumIter, DeriveRelation)]
    pub(crate) enum Relation {}

    impl ActiveModelBehavior for ActiveModel {}
}

/// The `tasker_workflow_step_edges` table.
pub(crate) mod workflow_step_edge {
    use sea_orm::entity::prelude::*;

    /// One row of `tasker_workflow_step_edges`.
    #[derive(Clone, Debug, PartialEq, DeriveEntityModel)]
    #[sea_orm(table_name = "tasker_workflow_step_edges")]
    pub(crate) struct Model {
        #[sea_orm(primary_key)]
        #[allow(missing_docs)]
        pub id: i64,
        #[allow(missing_docs)]
        pub from_step_id: Uuid,
        #[allow(missing_docs)]
        pub to_step_id: Uuid,
        #[allow(missing_docs)]
        pub name: String,
    }

    /// Relations are expressed in queries, not here.
    #[derive(Copy, Clone, Debug, EnumIter, DeriveRelation)]
    pub(crate) enum Relation {}

    impl ActiveModelBehavior for ActiveModel {}
}

/// The `tasker_task_transitions` table.
pub(crate) mod task_transition {
    use sea_orm::entity::prelude::*;

    /// One row of `tasker_task_transitions`.
    #[derive(Clone, Debug, PartialEq, DeriveEntityModel)]
    #[sea_orm(table_name = "tasker_task_transitions")]
    pub(crate) struct Model {
        #[sea_orm(primary_key)]
        #[allow(missing_docs)]
        pub id: i64,
        #[allow(missing_docs)]
        pub task_id: Uuid,
        #[allow(missing_docs)]
        pub from_state: Option<String>,
        #[allow(missing_docs)]
        pub to_state: String,
        #[allow(missing_docs)]
        pub sort_key: i32,
        #[allow(missing_docs)]
        pub most_recent: bool,
        #[sea_orm(column_type = "JsonBinary")]
        #[allow(missing_docs)]
        pub metadata: Json,
        #[allow(missing_docs)]
        pub created_at: i64,
    }

    /// Relations are expressed in queries, not here.
    #[derive(Copy, Clone, Debug, EnumIter, DeriveRelation)]
    pub(crate) enum Relation {}

    impl ActiveModelBehavior for ActiveModel {}
}

/// The `tasker_workflow_step_transitions` table.
pub(crate) mod workflow_step_transition {
    use sea_orm::entity::prelude::*;

    /// One row of `tasker_workflow_step_transitions`.
    #[derive(Clone, Debug, PartialEq, DeriveEntityModel)]
    #[sea_orm(table_name = "tasker_workflow_step_transitions")]
    pub(crate) struct Model {
        #[sea_orm(primary_key)]
        #[allow(missing_docs)]
        pub id: i64,
        #[allow(missing_docs)]
        pub workflow_step_id: Uuid,
        #[allow(missing_docs)]
        pub from_state: Option<String>,
        #[allow(missing_docs)]
        pub to_state: String,
        #[allow(missing_docs)]
        pub sort_key: i32,
        #[allow(missing_docs)]
        pub most_recent: bool,
        #[sea_orm(column_type = "JsonBinary")]
        #[allow(missing_docs)]
        pub metadata: Json,
        #[allow(missing_docs)]
        pub created_at: i64,
    }

    /// Relations are expressed in queries, not here.
    #[derive(Copy, Clone, Debug, EnumIter, DeriveRelation)]
    pub(crate) enum Relation {}

    impl ActiveModelBehavior for ActiveModel {}
}

/// The `tasker_task_annotations` table.
pub(crate) mod task_annotation {
    use sea_orm::entity::prelude::*;

    /// One row of `tasker_task_annotations`.
    #[derive(Clone, Debug, PartialEq, DeriveEntityModel)]
    #[sea_orm(table_name = "tasker_task_annotations")]
    pub(crate) struct Model {
        #[sea_orm(primary_key)]
        #[allow(missing_docs)]
        pub task_annotation_id: i64,
        #[allow(missing_docs)]
        pub task_id: Uuid,
        #[allow(missing_docs)]
        pub annotation_type_id: i64,
        #[sea_orm(column_type = "JsonBinary")]
        #[allow(missing_docs)]
        pub annotation: Json,
        #[allow(missing_docs)]
        pub created_at: i64,
        #[allow(missing_docs)]
        pub updated_at: i64,
    }

    /// Relations are expressed in queries, not here.
    #[derive(Copy, Clone, Debug, EnumIter, DeriveRelation)]
    pub(crate) enum Relation {}

    impl ActiveModelBehavior for ActiveModel {}
}

/// The `tasker_api_keys` table.
pub(crate) mod api_key {
    use sea_orm::entity::prelude::*;

    /// One row of `tasker_api_keys`: a key's hash (never the key), its grants and times.
    #[derive(Clone, Debug, PartialEq, DeriveEntityModel)]
    #[sea_orm(table_name = "tasker_api_keys")]
    pub(crate) struct Model {
        #[sea_orm(primary_key)]
        #[allow(missing_docs)]
        pub api_key_id: i64,
        #[allow(missing_docs)]
        pub name: String,
        #[sea_orm(unique)]
        #[allow(missing_docs)]
        pub key_hash: String,
        #[allow(missing_docs)]
        pub key_prefix: String,
        #[sea_orm(column_type = "JsonBinary")]
        #[allow(missing_docs)]
        pub permissions: Json,
        #[allow(missing_docs)]
        pub created_at: i64,
        #[allow(missing_docs)]
        pub expires_at: Option<i64>,
        #[allow(missing_docs)]
        pub last_used_at: Option<i64>,
        #[allow(missing_docs)]
        pub revoked_at: Option<i64>,
    }

    /// Relations are expressed in queries, not here.
    #[derive(Copy, Clone, Debug, EnumIter, DeriveRelation)]
    pub(crate) enum Relation {}

    impl ActiveModelBehavior for ActiveModel {}
}

/// The `tasker_revoked_tokens` table.
pub(crate) mod revoked_token {
    use sea_orm::entity::prelude::*;

    /// One row of `tasker_revoked_tokens`: a revoked JWT's `jti`, when it was revoked, the
    /// token's own expiry (for pruning) and why.
    #[derive(Clone, Debug, PartialEq, DeriveEntityModel)]
    #[sea_orm(table_name = "tasker_revoked_tokens")]
    pub(crate) struct Model {
        #[sea_orm(primary_key, auto_increment = false)]
        #[allow(missing_docs)]
        pub jti: String,
        #[allow(missing_docs)]
        pub revoked_at: i64,
        #[allow(missing_docs)]
        pub expires_at: Option<i64>,
        #[allow(missing_docs)]
        pub reason: Option<String>,
    }

    /// Relations are expressed in queries, not here.
    #[derive(Copy, Clone, Debug, EnumIter, DeriveRelation)]
    pub(crate) enum Relation {}

    impl ActiveModelBehavior for ActiveModel {}
}

/// The `tasker_runtime_switches` table.
pub(crate) mod runtime_switch {
    use sea_orm::entity::prelude::*;

    /// One row of `tasker_runtime_switches`: a pause or a namespace limit in force.
    #[derive(Clone, Debug, PartialEq, DeriveEntityModel)]
    #[sea_orm(table_name = "tasker_runtime_switches")]
    pub(crate) struct Model {
        #[sea_orm(primary_key)]
        #[allow(missing_docs)]
        pub switch_id: i64,
        #[allow(missing_docs)]
        pub kind: String,
        #[allow(missing_docs)]
        pub target: String,
        #[allow(missing_docs)]
        pub namespace: String,
        #[allow(missing_docs)]
        pub name: Option<String>,
        #[allow(missing_docs)]
        pub version: Option<String>,
        #[allow(missing_docs)]
        pub max_running: Option<i32>,
        #[allow(missing_docs)]
        pub reason: String,
        #[allow(missing_docs)]
        pub set_by: String,
        #[allow(missing_docs)]
        pub set_at: i64,
    }

    /// Relations are expressed in queries, not here.
    #[derive(Copy, Clone, Debug, EnumIter, DeriveRelation)]
    pub(crate) enum Relation {}

    impl ActiveModelBehavior for ActiveModel {}
}

/// The `tasker_runtime_switch_changes` table.
pub(crate) mod runtime_switch_change {
    use sea_orm::entity::prelude::*;

    /// One row of `tasker_runtime_switch_changes`: an audited change to a switch.
    #[derive(Clone, Debug, PartialEq, DeriveEntityModel)]
    #[sea_orm(table_name = "tasker_runtime_switch_changes")]
    pub(crate) struct Model {
        #[sea_orm(primary_key)]
        #[allow(missing_docs)]
        pub change_id: i64,
        #[allow(missing_docs)]
        pub action: String,
        #[allow(missing_docs)]
        pub kind: String,
        #[allow(missing_docs)]
        pub target: String,
        #[allow(missing_docs)]
        pub namespace: String,
        #[allow(missing_docs)]
        pub name: Option<String>,
        #[allow(missing_docs)]
        pub version: Option<String>,
        #[allow(missing_docs)]
        pub max_running: Option<i32>,
        #[allow(missing_docs)]
        pub reason: String,
        #[allow(missing_docs)]
        pub changed_by: String,
        #[allow(missing_docs)]
        pub changed_at: i64,
    }

    /// Relations are expressed in queries, not here.
    #[derive(Copy, Clone, Debug, EnumIter, DeriveRelation)]
    pub(crate) enum Relation {}

    impl ActiveModelBehavior for ActiveModel {}
}
