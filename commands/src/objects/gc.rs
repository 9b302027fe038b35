//! Garbage collection of photo objects. The object is written before its
//! `PhotoUploaded` event, so a crash (or a failed event write) in between
//! leaves an object no event references. After a grace period (longer than
//! any upload takes) such objects are deleted.
use chrono::Utc;
use std::collections::HashSet;
use std::time::Duration;

use super::ObjectStore;
use crate::{Db, Dialect};

#[derive(Debug, Default)]
pub struct GcReport {
    pub scanned: usize,
    pub referenced: usize,
    /// Unreferenced but younger than the grace period.
    pub kept_young: usize,
    /// Deleted (or, in a dry run, to be deleted).
    pub unreferenced: Vec<String>,
}

/// Every object key a `PhotoUploaded` event refers to.
pub async fn referenced_keys(db: &Db) -> Result<HashSet<String>, sqlx::Error> {
    let sql = match db.dialect() {
        Dialect::Postgres => {
            "SELECT payload->'PhotoUploaded'->'image'->>'object_key' AS object_key FROM events \
             WHERE aggregate_type = 'photo' AND event_type = 'PhotoUploaded'"
        }
        Dialect::Sqlite => {
            "SELECT json_extract(payload, '$.PhotoUploaded.image.object_key') AS object_key FROM events \
             WHERE aggregate_type = 'photo' AND event_type = 'PhotoUploaded'"
        }
    };
    let keys: Vec<Option<String>> = sqlx::query_scalar(sql).fetch_all(&db.any).await?;
    Ok(keys.into_iter().flatten().collect())
}

pub async fn collect(
    db: &Db,
    store: &dyn ObjectStore,
    grace: Duration,
    dry_run: bool,
) -> Result<GcReport, String> {
    // Objects listed before the references are read: an upload racing with
    // us is either referenced already or younger than the grace period.
    let objects = store.list("").await.map_err(|e| e.to_string())?;
    let referenced = referenced_keys(db).await.map_err(|e| e.to_string())?;
    let cutoff = Utc::now() - chrono::Duration::from_std(grace).map_err(|e| e.to_string())?;
    let mut report = GcReport {
        scanned: objects.len(),
        ..GcReport::default()
    };
    for object in objects {
        if referenced.contains(&object.key) {
            report.referenced += 1;
        } else if object.last_modified.is_none_or(|at| at > cutoff) {
            report.kept_young += 1;
        } else {
            if !dry_run {
                store.delete(&object.key).await.map_err(|e| e.to_string())?;
            }
            report.unreferenced.push(object.key);
        }
    }
    Ok(report)
}
