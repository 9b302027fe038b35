//! The object store adapters against real backends: `S3Store` against the
//! s3s-fs test server (scripts/s3-server.sh), `LocalStore` against a temp dir.
//!
//! The S3 tests fail, not skip, when the server is down: a silently skipped
//! suite would hide a broken adapter.
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use bytes::Bytes;
use commands::objects::local::LocalStore;
use commands::objects::s3::S3Store;
use commands::objects::{ObjectStore, ObjectStoreError};
use minio::s3::creds::StaticProvider;
use minio::s3::types::S3Api;
use minio::s3::{MinioClient, MinioClientBuilder};
use uuid::Uuid;

const REGION: &str = "us-east-1";

fn env_or(name: &str, default: &str) -> String {
    std::env::var(name)
        .ok()
        .filter(|v| !v.is_empty())
        .unwrap_or_else(|| default.to_owned())
}

fn endpoint() -> String {
    env_or("TEST_S3_ENDPOINT", "http://127.0.0.1:9100")
}

fn access_key() -> String {
    env_or("TEST_S3_ACCESS_KEY", "crmtest")
}

fn secret_key() -> String {
    env_or("TEST_S3_SECRET_KEY", "crmtest-secret-key")
}

/// Unique per test so tests run in parallel and reruns never see old data.
fn unique_bucket() -> String {
    format!("crm-test-{}", &Uuid::new_v4().simple().to_string()[..12])
}

fn photo_key() -> String {
    format!("{}/{}", Uuid::new_v4(), Uuid::new_v4())
}

/// Every byte value, so any text/encoding mangling shows.
fn sample_bytes() -> Bytes {
    Bytes::from((0..=255u8).cycle().take(3000).collect::<Vec<u8>>())
}

async fn connect(bucket: &str) -> S3Store {
    match S3Store::connect(&endpoint(), &access_key(), &secret_key(), bucket, REGION).await {
        Ok(s) => s,
        Err(e) => panic!(
            "cannot connect to the test S3 server at {} ({e}); start it with scripts/s3-server.sh",
            endpoint()
        ),
    }
}

/// A raw client, to check the adapter's effects independently of it and to
/// clean up.
fn raw_client() -> MinioClient {
    MinioClientBuilder::new(endpoint().parse().expect("endpoint"))
        .provider(Some(StaticProvider::new(
            &access_key(),
            &secret_key(),
            None,
        )))
        .build()
        .expect("raw client")
}

async fn raw_bucket_exists(bucket: &str) -> bool {
    raw_client()
        .bucket_exists(bucket)
        .expect("bucket name")
        .build()
        .send()
        .await
        .expect("bucket_exists")
        .exists()
}

/// Empties and removes the bucket so the server's data dir does not grow.
async fn drop_bucket(store: &S3Store) {
    for o in store.list("").await.expect("list for cleanup") {
        store.delete(&o.key).await.expect("delete for cleanup");
    }
    raw_client()
        .delete_bucket(store.bucket())
        .expect("bucket name")
        .build()
        .send()
        .await
        .expect("delete_bucket");
}

/// A port nothing listens on: bind an ephemeral port, then free it.
fn dead_endpoint() -> String {
    let l = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
    let port = l.local_addr().expect("addr").port();
    drop(l);
    format!("http://127.0.0.1:{port}")
}

fn assert_unavailable<T: std::fmt::Debug>(
    what: &str,
    r: Result<T, ObjectStoreError>,
    started: Instant,
) {
    let elapsed = started.elapsed();
    match r {
        Err(ObjectStoreError::Unavailable(_)) => {}
        other => panic!("{what}: expected Unavailable, got {other:?}"),
    }
    assert!(elapsed < Duration::from_secs(15), "{what} took {elapsed:?}");
}

// ---------------------------------------------------------------- S3

#[tokio::test]
async fn s3_connect_creates_missing_bucket_and_is_idempotent() {
    let bucket = unique_bucket();
    let unconnected =
        S3Store::new(&endpoint(), &access_key(), &secret_key(), &bucket, REGION).expect("new");
    assert!(
        matches!(
            unconnected.ping().await,
            Err(ObjectStoreError::Unavailable(_))
        ),
        "ping must fail while the bucket is missing"
    );

    let store = connect(&bucket).await;
    assert_eq!(store.bucket(), bucket);
    assert!(raw_bucket_exists(&bucket).await);
    store.ping().await.expect("ping after connect");
    unconnected
        .ping()
        .await
        .expect("ping through a second client");

    // Connecting again to an existing bucket is fine.
    let again = connect(&bucket).await;
    again.ping().await.expect("ping");
    drop_bucket(&store).await;
}

#[tokio::test]
async fn s3_put_then_get_returns_same_bytes_and_put_replaces() {
    let store = connect(&unique_bucket()).await;
    let key = photo_key();
    let data = sample_bytes();
    store
        .put(&key, "image/jpeg", data.clone())
        .await
        .expect("put");
    assert_eq!(store.get(&key).await.expect("get"), Some(data));

    let replacement = Bytes::from_static(b"second version");
    store
        .put(&key, "image/png", replacement.clone())
        .await
        .expect("put again");
    assert_eq!(store.get(&key).await.expect("get"), Some(replacement));

    // Empty objects are objects too.
    let empty_key = photo_key();
    store
        .put(&empty_key, "image/jpeg", Bytes::new())
        .await
        .expect("put empty");
    assert_eq!(
        store.get(&empty_key).await.expect("get empty"),
        Some(Bytes::new())
    );
    drop_bucket(&store).await;
}

#[tokio::test]
async fn s3_get_missing_is_none() {
    let store = connect(&unique_bucket()).await;
    assert_eq!(store.get(&photo_key()).await.expect("get missing"), None);
    drop_bucket(&store).await;
}

#[tokio::test]
async fn s3_delete_then_get_is_none_and_delete_missing_is_ok() {
    let store = connect(&unique_bucket()).await;
    let key = photo_key();
    store
        .put(&key, "image/jpeg", sample_bytes())
        .await
        .expect("put");
    store.delete(&key).await.expect("delete");
    assert_eq!(store.get(&key).await.expect("get after delete"), None);
    store.delete(&key).await.expect("delete again");
    store
        .delete(&photo_key())
        .await
        .expect("delete never-existing");
    drop_bucket(&store).await;
}

#[tokio::test]
async fn s3_list_filters_by_prefix() {
    let store = connect(&unique_bucket()).await;
    let company_a = Uuid::new_v4();
    let company_b = Uuid::new_v4();
    let a1 = format!("{company_a}/{}", Uuid::new_v4());
    let a2 = format!("{company_a}/{}", Uuid::new_v4());
    let b1 = format!("{company_b}/{}", Uuid::new_v4());
    store
        .put(&a1, "image/jpeg", Bytes::from_static(b"a"))
        .await
        .expect("put a1");
    store
        .put(&a2, "image/jpeg", Bytes::from_static(b"aa"))
        .await
        .expect("put a2");
    store
        .put(&b1, "image/jpeg", Bytes::from_static(b"bbb"))
        .await
        .expect("put b1");

    let mut listed = store.list(&format!("{company_a}/")).await.expect("list a");
    listed.sort_by(|x, y| x.key.cmp(&y.key));
    let mut expected = vec![(a1.clone(), 1), (a2.clone(), 2)];
    expected.sort();
    assert_eq!(
        listed
            .iter()
            .map(|o| (o.key.clone(), o.size))
            .collect::<Vec<_>>(),
        expected
    );
    assert!(listed.iter().all(|o| o.last_modified.is_some()));

    let all = store.list("").await.expect("list all");
    let mut keys: Vec<_> = all.into_iter().map(|o| o.key).collect();
    keys.sort();
    let mut want = vec![a1, a2, b1.clone()];
    want.sort();
    assert_eq!(keys, want);

    // A prefix that ends mid-segment still matches.
    let partial = &company_b.to_string()[..8];
    let got: Vec<_> = store
        .list(partial)
        .await
        .expect("list partial")
        .into_iter()
        .map(|o| o.key)
        .collect();
    assert_eq!(got, vec![b1]);
    assert!(store
        .list("nothing-here/")
        .await
        .expect("list none")
        .is_empty());
    drop_bucket(&store).await;
}

#[tokio::test]
async fn s3_ping_ok() {
    let store = connect(&unique_bucket()).await;
    store.ping().await.expect("ping");
    drop_bucket(&store).await;
}

#[tokio::test]
async fn s3_wrong_credentials_are_other_not_unavailable() {
    let store = connect(&unique_bucket()).await;
    let bad = S3Store::new(
        &endpoint(),
        &access_key(),
        "not-the-secret",
        store.bucket(),
        REGION,
    )
    .expect("new");
    match bad.put(&photo_key(), "image/jpeg", sample_bytes()).await {
        Err(ObjectStoreError::Other(_)) => {}
        other => panic!("expected Other, got {other:?}"),
    }
    drop_bucket(&store).await;
}

#[tokio::test]
async fn s3_nothing_listening_is_unavailable_and_fast() {
    let dead = dead_endpoint();
    let t = Instant::now();
    let r = S3Store::connect(
        &dead,
        &access_key(),
        &secret_key(),
        &unique_bucket(),
        REGION,
    )
    .await;
    assert_unavailable("connect", r, t);

    let store = S3Store::new(
        &dead,
        &access_key(),
        &secret_key(),
        &unique_bucket(),
        REGION,
    )
    .expect("new");
    let t = Instant::now();
    assert_unavailable(
        "put",
        store.put(&photo_key(), "image/jpeg", sample_bytes()).await,
        t,
    );
    let t = Instant::now();
    assert_unavailable("get", store.get(&photo_key()).await, t);
    let t = Instant::now();
    assert_unavailable("delete", store.delete(&photo_key()).await, t);
    let t = Instant::now();
    assert_unavailable("list", store.list("").await, t);
    let t = Instant::now();
    assert_unavailable("ping", store.ping().await, t);
}

/// Accepts TCP connections and never answers: what a wedged server looks
/// like. Returns its endpoint; the listener lives as long as the runtime.
async fn silent_server() -> String {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("bind");
    let addr = listener.local_addr().expect("addr");
    tokio::spawn(async move {
        let mut held = Vec::new();
        while let Ok((sock, _)) = listener.accept().await {
            held.push(sock);
        }
    });
    format!("http://{addr}")
}

#[tokio::test]
async fn s3_silent_server_times_out_as_unavailable() {
    let ep = silent_server().await;
    let store = S3Store::new(&ep, &access_key(), &secret_key(), &unique_bucket(), REGION)
        .expect("new")
        .with_request_timeout(Duration::from_secs(1));
    let t = Instant::now();
    assert_unavailable(
        "put",
        store.put(&photo_key(), "image/jpeg", sample_bytes()).await,
        t,
    );
    assert!(
        t.elapsed() < Duration::from_secs(3),
        "timeout not applied: {:?}",
        t.elapsed()
    );
    let t = Instant::now();
    assert_unavailable("list", store.list("").await, t);
    assert!(
        t.elapsed() < Duration::from_secs(3),
        "timeout not applied: {:?}",
        t.elapsed()
    );
}

#[tokio::test]
async fn s3_silent_server_default_timeout_bounds_ping() {
    let ep = silent_server().await;
    let store =
        S3Store::new(&ep, &access_key(), &secret_key(), &unique_bucket(), REGION).expect("new");
    let t = Instant::now();
    assert_unavailable("ping", store.ping().await, t);
}

// ---------------------------------------------------------------- local

/// A fresh directory under the system temp dir, removed on drop.
struct TempDir(PathBuf);

impl TempDir {
    fn new() -> Self {
        Self(std::env::temp_dir().join(format!("crm-local-store-{}", Uuid::new_v4())))
    }
}

impl Drop for TempDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

/// Every file name under `dir`, recursively.
fn all_file_names(dir: &Path) -> Vec<String> {
    let mut out = Vec::new();
    for entry in std::fs::read_dir(dir).expect("read_dir") {
        let entry = entry.expect("entry");
        let path = entry.path();
        if path.is_dir() {
            out.extend(all_file_names(&path));
        } else {
            out.push(entry.file_name().to_string_lossy().into_owned());
        }
    }
    out
}

#[tokio::test]
async fn local_new_creates_root_and_ping_checks_it() {
    let dir = TempDir::new();
    let root = dir.0.join("nested/photos");
    let store = LocalStore::new(&root).expect("new");
    assert!(root.is_dir());
    store.ping().await.expect("ping");
    std::fs::remove_dir_all(&dir.0).expect("remove root");
    assert!(matches!(
        store.ping().await,
        Err(ObjectStoreError::Unavailable(_))
    ));
}

#[tokio::test]
async fn local_put_get_roundtrip_and_replace() {
    let dir = TempDir::new();
    let store = LocalStore::new(&dir.0).expect("new");
    let key = photo_key();
    let data = sample_bytes();
    store
        .put(&key, "image/jpeg", data.clone())
        .await
        .expect("put");
    assert_eq!(store.get(&key).await.expect("get"), Some(data));
    assert!(dir.0.join(&key).is_file(), "key maps to root/<key>");

    let replacement = Bytes::from_static(b"v2");
    store
        .put(&key, "image/jpeg", replacement.clone())
        .await
        .expect("put again");
    assert_eq!(store.get(&key).await.expect("get"), Some(replacement));
}

#[tokio::test]
async fn local_get_missing_is_none_and_delete_is_idempotent() {
    let dir = TempDir::new();
    let store = LocalStore::new(&dir.0).expect("new");
    let key = photo_key();
    assert_eq!(store.get(&key).await.expect("get missing"), None);
    store.delete(&key).await.expect("delete missing");
    store
        .put(&key, "image/jpeg", sample_bytes())
        .await
        .expect("put");
    store.delete(&key).await.expect("delete");
    assert_eq!(store.get(&key).await.expect("get after delete"), None);
    // A company directory is not an object.
    let company = key.split('/').next().expect("company");
    assert_eq!(store.get(company).await.expect("get dir"), None);
}

#[tokio::test]
async fn local_put_leaves_no_temp_files() {
    let dir = TempDir::new();
    let store = std::sync::Arc::new(LocalStore::new(&dir.0).expect("new"));
    let key = photo_key();
    // Concurrent writers to one key: each rename is atomic, so the result is
    // exactly one writer's bytes, never a mix, and no temp file survives.
    let mut tasks = Vec::new();
    for i in 0..16u8 {
        let store = store.clone();
        let key = key.clone();
        tasks.push(tokio::spawn(async move {
            store
                .put(&key, "image/jpeg", Bytes::from(vec![i; 10_000]))
                .await
        }));
    }
    for t in tasks {
        t.await.expect("join").expect("put");
    }
    let got = store.get(&key).await.expect("get").expect("present");
    assert_eq!(got.len(), 10_000);
    assert!(
        got.iter().all(|b| *b == got[0]),
        "bytes from more than one writer"
    );

    let names = all_file_names(&dir.0);
    assert_eq!(names.len(), 1, "unexpected files: {names:?}");
    assert!(
        names.iter().all(|n| !n.starts_with(".tmp-")),
        "temp file left: {names:?}"
    );
}

#[tokio::test]
async fn local_refuses_unsafe_keys() {
    let dir = TempDir::new();
    let store = LocalStore::new(dir.0.join("root")).expect("new");
    for key in [
        "../escape",
        "a/../../escape",
        "a/..",
        "..",
        "/etc/passwd",
        "a\\b",
        "a//b",
        "a/",
        "",
        ".tmp-123/x",
        "a/.hidden",
    ] {
        assert!(
            matches!(
                store.put(key, "image/jpeg", sample_bytes()).await,
                Err(ObjectStoreError::Other(_))
            ),
            "put accepted {key:?}"
        );
        assert!(
            matches!(store.get(key).await, Err(ObjectStoreError::Other(_))),
            "get accepted {key:?}"
        );
        assert!(
            matches!(store.delete(key).await, Err(ObjectStoreError::Other(_))),
            "delete accepted {key:?}"
        );
    }
    assert!(!dir.0.join("escape").exists());
    assert!(all_file_names(&dir.0).is_empty());
}

#[tokio::test]
async fn local_list_filters_by_prefix_and_skips_temp_files() {
    let dir = TempDir::new();
    let store = LocalStore::new(&dir.0).expect("new");
    let company_a = Uuid::new_v4();
    let company_b = Uuid::new_v4();
    let a1 = format!("{company_a}/{}", Uuid::new_v4());
    let a2 = format!("{company_a}/{}", Uuid::new_v4());
    let b1 = format!("{company_b}/{}", Uuid::new_v4());
    store
        .put(&a1, "image/jpeg", Bytes::from_static(b"a"))
        .await
        .expect("put a1");
    store
        .put(&a2, "image/jpeg", Bytes::from_static(b"aa"))
        .await
        .expect("put a2");
    store
        .put(&b1, "image/jpeg", Bytes::from_static(b"bbb"))
        .await
        .expect("put b1");
    // A temp file from a write that crashed mid-way.
    std::fs::write(
        dir.0.join(company_a.to_string()).join(".tmp-crashed"),
        b"partial",
    )
    .expect("write stray");

    let listed = store.list(&format!("{company_a}/")).await.expect("list a");
    let mut expected = vec![(a1.clone(), 1), (a2.clone(), 2)];
    expected.sort();
    assert_eq!(
        listed
            .iter()
            .map(|o| (o.key.clone(), o.size))
            .collect::<Vec<_>>(),
        expected
    );
    assert!(listed.iter().all(|o| o.last_modified.is_some()));

    let keys: Vec<_> = store
        .list("")
        .await
        .expect("list all")
        .into_iter()
        .map(|o| o.key)
        .collect();
    let mut want = vec![a1, a2, b1];
    want.sort();
    assert_eq!(keys, want);

    // A prefix that ends mid-segment still matches.
    let partial = &company_b.to_string()[..8];
    assert_eq!(store.list(partial).await.expect("list partial").len(), 1);
    assert!(store
        .list("nothing-here/")
        .await
        .expect("list none")
        .is_empty());
}
