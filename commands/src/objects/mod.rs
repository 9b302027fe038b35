//! Where photo bytes live: one trait, two adapters. [`s3::S3Store`] talks to
//! MinIO/S3 through the `minio` crate (full stack); [`local::LocalStore`]
//! writes files under the data directory (embedded mode).
use async_trait::async_trait;
use bytes::Bytes;
use chrono::{DateTime, Utc};

pub mod gc;
pub mod local;
pub mod s3;

#[derive(Debug, thiserror::Error)]
pub enum ObjectStoreError {
    /// The store cannot be reached or refused to work; retry later.
    #[error("object store unavailable: {0}")]
    Unavailable(String),
    #[error("object store error: {0}")]
    Other(String),
}

/// An object as listed, for garbage collection.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ObjectInfo {
    pub key: String,
    pub size: u64,
    pub last_modified: Option<DateTime<Utc>>,
}

/// Keys are built by the caller from ids only (`<company>/<photo>`).
#[async_trait]
pub trait ObjectStore: Send + Sync {
    /// Stores `bytes` under `key`, durably, replacing nothing else. When this
    /// returns `Ok` the object is readable.
    async fn put(
        &self,
        key: &str,
        content_type: &str,
        bytes: Bytes,
    ) -> Result<(), ObjectStoreError>;

    /// The object's bytes, or `None` if there is no such object.
    async fn get(&self, key: &str) -> Result<Option<Bytes>, ObjectStoreError>;

    /// Removes the object; removing a missing object is not an error.
    async fn delete(&self, key: &str) -> Result<(), ObjectStoreError>;

    /// Every object whose key starts with `prefix` ("" for all).
    async fn list(&self, prefix: &str) -> Result<Vec<ObjectInfo>, ObjectStoreError>;

    /// Whether the store answers right now (for `/readyz`).
    async fn ping(&self) -> Result<(), ObjectStoreError>;
}
