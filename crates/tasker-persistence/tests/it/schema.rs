//! The entities describe exactly what the migrations create, on both databases.

use crate::support::*;

#[tokio::test]
async fn entities_match_the_migrated_schema() {
    on_each_database(|store, backend| async move {
        let drift = tasker_persistence::schema_drift(&store).await?;
        assert!(
            drift.is_empty(),
            "{backend}: entities and migrations disagree:\n{}",
            drift.join("\n")
        );
        Ok(())
    })
    .await;
}
