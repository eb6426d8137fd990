//! API keys for `X-API-Key` authentication: only each key's SHA-256 hash is stored, with a
//! short prefix so listings can tell keys apart, the key's permissions, and its expiry,
//! last use and revocation times. Revoked keys stay, so a rejection can say why and an audit
//! can see what existed.

use sea_orm_migration::prelude::*;

#[derive(DeriveMigrationName)]
pub(crate) struct Migration;

#[derive(DeriveIden)]
enum ApiKeys {
    #[sea_orm(iden = "tasker_api_keys")]
    Table,
    ApiKeyId,
    Name,
    KeyHash,
    KeyPrefix,
    Permissions,
    CreatedAt,
    ExpiresAt,
    LastUsedAt,
    RevokedAt,
}

#[async_trait::async_trait]
impl MigrationTrait for Migration {
    async fn up(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        manager
            .create_table(
                Table::create()
                    .table(ApiKeys::Table)
                    .col(
                        ColumnDef::new(ApiKeys::ApiKeyId)
                            .big_integer()
                            .not_null()
                            .auto_increment()
                            .primary_key(),
                    )
                    .col(ColumnDef::new(ApiKeys::Name).text().not_null())
                    // Authentication looks keys up by hash: the unique index serves it.
                    .col(
                        ColumnDef::new(ApiKeys::KeyHash)
                            .text()
                            .not_null()
                            .unique_key(),
                    )
                    .col(ColumnDef::new(ApiKeys::KeyPrefix).text().not_null())
                    .col(
                        ColumnDef::new(ApiKeys::Permissions)
                            .json_binary()
                            .not_null(),
                    )
                    .col(ColumnDef::new(ApiKeys::CreatedAt).big_integer().not_null())
                    .col(ColumnDef::new(ApiKeys::ExpiresAt).big_integer())
                    .col(ColumnDef::new(ApiKeys::LastUsedAt).big_integer())
                    .col(ColumnDef::new(ApiKeys::RevokedAt).big_integer())
                    .take(),
            )
            .await
    }

    async fn down(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        manager
            .drop_table(Table::drop().table(ApiKeys::Table).take())
            .await
    }
}
