//! Revoked JWTs, by `jti`: a token on this list is refused although its signature and times
//! are good. Each row keeps the token's own expiry so rows can be pruned once the token would
//! be refused anyway.

use sea_orm_migration::prelude::*;

#[derive(DeriveMigrationName)]
pub(crate) struct Migration;

#[derive(DeriveIden)]
enum RevokedTokens {
    #[sea_orm(iden = "tasker_revoked_tokens")]
    Table,
    Jti,
    RevokedAt,
    ExpiresAt,
    Reason,
}

#[async_trait::async_trait]
impl MigrationTrait for Migration {
    async fn up(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        manager
            .create_table(
                Table::create()
                    .table(RevokedTokens::Table)
                    .col(
                        ColumnDef::new(RevokedTokens::Jti)
                            .text()
                            .not_null()
                            .primary_key(),
                    )
                    .col(
                        ColumnDef::new(RevokedTokens::RevokedAt)
                            .big_integer()
                            .not_null(),
                    )
                    .col(ColumnDef::new(RevokedTokens::ExpiresAt).big_integer())
                    .col(ColumnDef::new(RevokedTokens::Reason).text())
                    .take(),
            )
            .await
    }

    async fn down(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        manager
            .drop_table(Table::drop().table(RevokedTokens::Table).take())
            .await
    }
}
