//! Photos in MinIO/S3 through the `minio` crate.
//!
//! `minio` 0.4 builds its own HTTP client and offers no request timeout, so
//! every call here is wrapped in [`tokio::time::timeout`]: a server that
//! accepts connections but never answers must not hang a request forever.
use std::future::Future;
use std::time::Duration;

use async_trait::async_trait;
use bytes::Bytes;
use futures::StreamExt;
use minio::s3::builders::ObjectContent;
use minio::s3::creds::StaticProvider;
use minio::s3::error::{Error as MinioError, NetworkError, S3ServerError, ValidationErr};
use minio::s3::http::BaseUrl;
use minio::s3::minio_error_response::MinioErrorCode;
use minio::s3::types::{BucketName, Region, S3Api, ToStream};
use minio::s3::{MinioClient, MinioClientBuilder};

use super::{ObjectInfo, ObjectStore, ObjectStoreError};

/// Per request (per page for `list`). Photos are small; 10 s is plenty for a
/// healthy server and short enough for a caller to give up and report 503.
pub const DEFAULT_REQUEST_TIMEOUT: Duration = Duration::from_secs(10);

#[derive(Clone, Debug)]
pub struct S3Store {
    client: MinioClient,
    bucket: BucketName,
    timeout: Duration,
}

impl S3Store {
    /// Builds the client and creates `bucket` if it is missing. Fails with
    /// [`ObjectStoreError::Unavailable`] if the server cannot be reached.
    pub async fn connect(
        endpoint: &str,
        access_key: &str,
        secret_key: &str,
        bucket: &str,
        region: &str,
    ) -> Result<Self, ObjectStoreError> {
        let store = Self::new(endpoint, access_key, secret_key, bucket, region)?;
        store.ensure_bucket().await?;
        Ok(store)
    }

    /// Builds the client without touching the network (so a process can start
    /// while the store is down and report it through `ping`). Call
    /// [`S3Store::ensure_bucket`] before use, or use [`S3Store::connect`].
    pub fn new(
        endpoint: &str,
        access_key: &str,
        secret_key: &str,
        bucket: &str,
        region: &str,
    ) -> Result<Self, ObjectStoreError> {
        let mut base_url: BaseUrl = endpoint
            .parse()
            .map_err(|e| other(format!("invalid S3 endpoint {endpoint:?}"), &e))?;
        // MinIO and s3s address buckets by path; virtual hosts need DNS we
        // do not have.
        base_url.virtual_style = false;
        if !region.is_empty() {
            // A fixed region also spares the client a GetBucketLocation round
            // trip before the first request on each bucket.
            base_url.region = Region::new(region)
                .map_err(|e| other(format!("invalid S3 region {region:?}"), &e))?;
        }
        let bucket = BucketName::new(bucket)
            .map_err(|e| other(format!("invalid bucket name {bucket:?}"), &e))?;
        let client = MinioClientBuilder::new(base_url)
            .provider(Some(StaticProvider::new(access_key, secret_key, None)))
            .build()
            .map_err(|e| other("building S3 client".to_owned(), &e))?;
        Ok(Self {
            client,
            bucket,
            timeout: DEFAULT_REQUEST_TIMEOUT,
        })
    }

    /// Replaces [`DEFAULT_REQUEST_TIMEOUT`].
    pub fn with_request_timeout(mut self, timeout: Duration) -> Self {
        self.timeout = timeout;
        self
    }

    pub fn bucket(&self) -> &str {
        self.bucket.as_str()
    }

    /// Creates the bucket unless it exists.
    pub async fn ensure_bucket(&self) -> Result<(), ObjectStoreError> {
        let exists = self
            .call("bucket_exists", async {
                Ok(self
                    .client
                    .bucket_exists(&self.bucket)?
                    .build()
                    .send()
                    .await?
                    .exists())
            })
            .await
            .map_err(|e| {
                e.into_store_error("bucket_exists")
                    .with_context(self.bucket())
            })?;
        if exists {
            return Ok(());
        }
        let created = self
            .call("create_bucket", async {
                self.client
                    .create_bucket(&self.bucket)?
                    .build()
                    .send()
                    .await?;
                Ok(())
            })
            .await;
        match created {
            Ok(()) => Ok(()),
            // Another instance created it between our check and our create.
            Err(S3Failure::Minio(e))
                if s3_code(&e) == Some(MinioErrorCode::BucketAlreadyOwnedByYou) =>
            {
                Ok(())
            }
            Err(e) => Err(e.into_store_error("create_bucket")),
        }
        .map_err(|e| e.with_context(self.bucket()))
    }

    /// Runs one minio call under the request timeout.
    async fn call<T>(
        &self,
        op: &'static str,
        fut: impl Future<Output = Result<T, MinioError>>,
    ) -> Result<T, S3Failure> {
        match tokio::time::timeout(self.timeout, fut).await {
            Ok(Ok(v)) => Ok(v),
            Ok(Err(e)) => Err(S3Failure::Minio(e)),
            Err(_) => Err(S3Failure::Timeout(op, self.timeout)),
        }
    }
}

/// A failed call, before we decide what it means for the caller.
enum S3Failure {
    Minio(MinioError),
    Timeout(&'static str, Duration),
}

impl S3Failure {
    fn into_store_error(self, op: &str) -> ObjectStoreError {
        match self {
            S3Failure::Minio(e) => classify(op, &e),
            S3Failure::Timeout(op, d) => {
                ObjectStoreError::Unavailable(format!("S3 {op}: no answer within {d:?}"))
            }
        }
    }
}

trait WithContext {
    fn with_context(self, what: &str) -> Self;
}

impl WithContext for ObjectStoreError {
    fn with_context(self, what: &str) -> Self {
        match self {
            ObjectStoreError::Unavailable(m) => {
                ObjectStoreError::Unavailable(format!("{m} ({what})"))
            }
            ObjectStoreError::Other(m) => ObjectStoreError::Other(format!("{m} ({what})")),
        }
    }
}

fn other(what: String, e: &dyn std::error::Error) -> ObjectStoreError {
    ObjectStoreError::Other(format!("{what}: {}", chain(e)))
}

/// The whole source chain: minio's top-level messages ("Network error
/// occurred") say nothing on their own.
fn chain(e: &dyn std::error::Error) -> String {
    let mut msg = e.to_string();
    let mut cur = e.source();
    while let Some(s) = cur {
        let s_msg = s.to_string();
        // thiserror wrappers often repeat their source's text.
        if !msg.contains(&s_msg) {
            msg.push_str(": ");
            msg.push_str(&s_msg);
        }
        cur = s.source();
    }
    msg
}

/// The S3 error code, when the server answered with one.
fn s3_code(e: &MinioError) -> Option<MinioErrorCode> {
    match e {
        MinioError::S3Server(S3ServerError::S3Error(resp)) => Some(resp.code()),
        _ => None,
    }
}

/// Unavailable: the server could not be reached or said "not now" (5xx,
/// throttling); retrying later may succeed. Everything else is Other.
fn classify(op: &str, e: &MinioError) -> ObjectStoreError {
    let msg = match e {
        // The response's Display spans several lines; code and message suffice.
        MinioError::S3Server(S3ServerError::S3Error(resp)) => format!(
            "S3 {op}: {} {}",
            resp.code(),
            resp.message().as_deref().unwrap_or_default()
        ),
        _ => format!("S3 {op}: {}", chain(e)),
    };
    let unavailable = match e {
        // Transport failures (refused, reset, DNS, timeouts) surface as
        // reqwest errors; only a request we built wrong is our fault.
        MinioError::Validation(ValidationErr::HttpError(re))
        | MinioError::Network(NetworkError::ReqwestError(re)) => !re.is_builder(),
        MinioError::Network(NetworkError::ServerError(status)) => *status >= 500,
        MinioError::S3Server(S3ServerError::InvalidServerResponse {
            http_status_code, ..
        }) => *http_status_code >= 500,
        MinioError::S3Server(S3ServerError::HttpError(status, _)) => *status >= 500,
        // XML error bodies lose the status code; these codes are the 5xx/503 ones.
        MinioError::S3Server(S3ServerError::S3Error(resp)) => matches!(
            resp.code(),
            MinioErrorCode::OtherError(ref c)
                if matches!(c.as_str(), "internalerror" | "serviceunavailable" | "slowdown" | "requesttimeout")
        ),
        _ => false,
    };
    if unavailable {
        ObjectStoreError::Unavailable(msg)
    } else {
        ObjectStoreError::Other(msg)
    }
}

#[async_trait]
impl ObjectStore for S3Store {
    async fn put(
        &self,
        key: &str,
        content_type: &str,
        bytes: Bytes,
    ) -> Result<(), ObjectStoreError> {
        self.call("put_object", async {
            self.client
                .put_object_content(&self.bucket, key, ObjectContent::from(bytes))?
                .content_type(content_type.to_owned())
                .build()
                .send()
                .await?;
            Ok(())
        })
        .await
        .map_err(|e| e.into_store_error("put_object").with_context(key))
    }

    async fn get(&self, key: &str) -> Result<Option<Bytes>, ObjectStoreError> {
        let res = self
            .call("get_object", async {
                let resp = self
                    .client
                    .get_object(&self.bucket, key)?
                    .build()
                    .send()
                    .await?;
                resp.into_bytes().await
            })
            .await;
        match res {
            Ok(b) => Ok(Some(b)),
            Err(S3Failure::Minio(e)) if s3_code(&e) == Some(MinioErrorCode::NoSuchKey) => Ok(None),
            Err(e) => Err(e.into_store_error("get_object").with_context(key)),
        }
    }

    async fn delete(&self, key: &str) -> Result<(), ObjectStoreError> {
        let res = self
            .call("delete_object", async {
                self.client
                    .delete_object(&self.bucket, key)?
                    .build()
                    .send()
                    .await?;
                Ok(())
            })
            .await;
        match res {
            Ok(()) => Ok(()),
            // S3 answers 204 for a missing key; some compatible servers say NoSuchKey.
            Err(S3Failure::Minio(e)) if s3_code(&e) == Some(MinioErrorCode::NoSuchKey) => Ok(()),
            Err(e) => Err(e.into_store_error("delete_object").with_context(key)),
        }
    }

    async fn list(&self, prefix: &str) -> Result<Vec<ObjectInfo>, ObjectStoreError> {
        // minio 0.4 always sends `delimiter=`, even for a "recursive" listing.
        // S3 and MinIO read an empty delimiter as none, but s3s (our test
        // server) treats it as a real one and returns every key as a common
        // prefix. So we list one level at a time with delimiter "/" and
        // descend into the common prefixes, which means the same thing
        // everywhere. Keys are `<company>/<photo>`: one request per company.
        let mut out = Vec::new();
        let mut pending = vec![prefix.to_owned()];
        while let Some(level) = pending.pop() {
            let mut pages = self
                .client
                .list_objects(&self.bucket)
                .map_err(|e| other("list_objects".to_owned(), &e))?
                .prefix((!level.is_empty()).then(|| level.clone()))
                .delimiter(Some("/".to_owned()))
                // s3s ignores encoding-type=url yet echoes it back, and the
                // client would then url-decode raw keys; plain XML is exact.
                .disable_url_encoding(true)
                .build()
                .to_stream()
                .await;
            loop {
                // The timeout is per page: a big bucket may take long in total.
                let page = match tokio::time::timeout(self.timeout, pages.next()).await {
                    Ok(None) => break,
                    Ok(Some(page)) => page.map_err(|e| {
                        classify("list_objects", &e).with_context(&format!("prefix {level:?}"))
                    })?,
                    Err(_) => {
                        return Err(S3Failure::Timeout("list_objects", self.timeout)
                            .into_store_error("list_objects"));
                    }
                };
                for entry in page.contents {
                    if entry.is_prefix {
                        // Only strictly deeper prefixes, so a confused server
                        // cannot send us round in circles.
                        if entry.name.len() > level.len() && entry.name.starts_with(&level) {
                            pending.push(entry.name);
                        }
                    } else if !entry.is_delete_marker {
                        out.push(ObjectInfo {
                            key: entry.name,
                            size: entry.size.unwrap_or(0),
                            last_modified: entry.last_modified,
                        });
                    }
                }
            }
        }
        out.sort_by(|a, b| a.key.cmp(&b.key));
        Ok(out)
    }

    async fn ping(&self) -> Result<(), ObjectStoreError> {
        let exists = self
            .call("bucket_exists", async {
                Ok(self
                    .client
                    .bucket_exists(&self.bucket)?
                    .build()
                    .send()
                    .await?
                    .exists())
            })
            .await
            .map_err(|e| e.into_store_error("bucket_exists"))?;
        if exists {
            Ok(())
        } else {
            // Reachable but unusable: uploads would fail until someone acts.
            Err(ObjectStoreError::Unavailable(format!(
                "bucket {} does not exist",
                self.bucket()
            )))
        }
    }
}
