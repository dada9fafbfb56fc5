//! The cluster identity: a random id and HMAC secret, made once per database (docs/api.md §11.5).

use rand::RngCore;
use rand::rngs::OsRng;

use super::{Db, Sql};
use crate::store::{ClusterIdentity, StoreError, StoreResult};

/// Reads the identity, first storing a fresh one if there is none. Nodes starting together on
/// an empty database each offer their own; the table holds one row, so the first insert wins
/// and every node reads that one.
pub(super) async fn cluster_identity(db: &Db) -> StoreResult<ClusterIdentity> {
    let mut id = [0u8; 16];
    let mut secret = [0u8; 32];
    OsRng.fill_bytes(&mut id);
    OsRng.fill_bytes(&mut secret);
    let offer =
        Sql::new("INSERT INTO cluster_identity (id, secret) VALUES (?, ?) ON CONFLICT DO NOTHING")
            .bind(hex::encode(id))
            .bind(&secret[..]);
    db.write().run(offer).await?;
    let row = db
        .write()
        .one(Sql::new("SELECT id, secret FROM cluster_identity"))
        .await?;
    let secret = row.bytes("secret")?.try_into().map_err(|_| {
        StoreError::Unavailable(
            "the stored cluster secret is not 32 bytes; restore the cluster_identity table \
             from a backup (every node must use the same secret)"
                .into(),
        )
    })?;
    Ok(ClusterIdentity {
        id: row.text("id")?,
        secret,
    })
}
