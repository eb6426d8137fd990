//! API keys: create, list, find by hash, touch, revoke, on both databases.

use tasker_persistence::{ApiKeyRecord, NewApiKey, StoreError};

use crate::support::*;

fn new_key(name: &str, hash: &str) -> NewApiKey {
    NewApiKey {
        name: name.to_owned(),
        key_hash: hash.to_owned(),
        key_prefix: format!("tsk_{}", &hash[..8]),
        permissions: vec![
            "tasker.task:index".to_owned(),
            "tasker.workflow_step:*".to_owned(),
        ],
        expires_at: Some(at(86_400.0)),
    }
}

const HASH_A: &str = "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad";
const HASH_B: &str = "2cf24dba5fb0a30e26e83b2ac5b9e29e1b161e5c1fa7425e73043362938b9824";

#[tokio::test]
async fn keys_are_created_listed_found_touched_and_revoked() {
    on_each_database(|store, backend| async move {
        let a = store.create_api_key(&new_key("ci", HASH_A), t0()).await?;
        let mut b = new_key("deploy", HASH_B);
        b.expires_at = None;
        b.permissions = vec![];
        let b = store.create_api_key(&b, at(1.0)).await?;
        assert_eq!(
            a,
            ApiKeyRecord {
                api_key_id: a.api_key_id,
                name: "ci".into(),
                key_hash: HASH_A.into(),
                key_prefix: "tsk_ba7816bf".into(),
                permissions: vec!["tasker.task:index".into(), "tasker.workflow_step:*".into()],
                created_at: t0(),
                expires_at: Some(at(86_400.0)),
                last_used_at: None,
                revoked_at: None,
            },
            "{backend}"
        );
        assert!(b.api_key_id > a.api_key_id);

        let listed = store.list_api_keys().await?;
        assert_eq!(listed, vec![a.clone(), b.clone()], "{backend}");

        assert_eq!(store.find_api_key_by_hash(HASH_B).await?, Some(b.clone()));
        assert_eq!(store.find_api_key_by_hash(&"0".repeat(64)).await?, None);

        store.touch_api_key(a.api_key_id, at(60.0)).await?;
        // An older use arriving late does not move the time back.
        store.touch_api_key(a.api_key_id, at(30.0)).await?;
        let found = store.find_api_key_by_hash(HASH_A).await?.unwrap();
        assert_eq!(found.last_used_at, Some(at(60.0)), "{backend}");

        let revoked = store.revoke_api_key(a.api_key_id, at(120.0)).await?;
        assert_eq!(revoked.revoked_at, Some(at(120.0)));
        let again = store.revoke_api_key(a.api_key_id, at(500.0)).await?;
        assert_eq!(
            again.revoked_at,
            Some(at(120.0)),
            "the first revocation stands"
        );
        let found = store.find_api_key_by_hash(HASH_A).await?.unwrap();
        assert_eq!(
            found.revoked_at,
            Some(at(120.0)),
            "revoked keys are still found"
        );
        assert_eq!(store.list_api_keys().await?.len(), 2);
        Ok(())
    })
    .await;
}

#[tokio::test]
async fn unknown_keys_and_duplicate_hashes_are_errors() {
    on_each_database(|store, backend| async move {
        let err = store.revoke_api_key(404, t0()).await.unwrap_err();
        assert!(
            matches!(err, StoreError::ApiKeyNotFound(404)),
            "{backend}: {err}"
        );
        assert_eq!(err.to_string(), "api key 404 not found");
        let err = store.touch_api_key(404, t0()).await.unwrap_err();
        assert!(
            matches!(err, StoreError::ApiKeyNotFound(404)),
            "{backend}: {err}"
        );

        store.create_api_key(&new_key("ci", HASH_A), t0()).await?;
        let err = store
            .create_api_key(&new_key("ci-again", HASH_A), t0())
            .await
            .unwrap_err();
        assert!(matches!(err, StoreError::Database(_)), "{backend}: {err}");
        assert_eq!(store.list_api_keys().await?.len(), 1, "nothing was written");
        Ok(())
    })
    .await;
}
