//! Throwaway PostgreSQL databases for tests: created on the server a test URL names, dropped
//! afterwards. Used by the `testing` module and by this crate's own unit tests.

use sea_orm::{ConnectionTrait, Database};

/// Creates a database with a fresh name on the server of `admin_url`; returns its URL and name.
pub(crate) async fn create_database(admin_url: &str, prefix: &str) -> (String, String) {
    let name = format!("{prefix}{}", uuid::Uuid::new_v4().simple());
    let admin = Database::connect(admin_url)
        .await
        .expect("connect to TASKER_TEST_DATABASE_URL");
    admin
        .execute_unprepared(&format!("CREATE DATABASE {name}"))
        .await
        .expect("create test database");
    admin.close().await.ok();
    let base = admin_url.rsplit_once('/').map_or(admin_url, |(b, _)| b);
    (format!("{base}/{name}"), name)
}

/// Drops database `name` on the server of `admin_url`, if it can: best effort, since a
/// database left behind only costs disk on a test server.
pub(crate) async fn drop_database(admin_url: &str, name: &str) {
    if let Ok(admin) = Database::connect(admin_url).await {
        admin
            .execute_unprepared(&format!("DROP DATABASE IF EXISTS {name} WITH (FORCE)"))
            .await
            .ok();
        admin.close().await.ok();
    }
}
