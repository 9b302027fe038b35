//! Photos in MinIO/S3 through the `minio` crate.
