//! Photos: upload (both flows), bytes and metadata.
//!
//! Upload reads the multipart `file` part chunk by chunk and stops at the
//! size cap (`413`), judges the type from the first bytes (`415`), hashes
//! while reading, writes the object, and only then records `PhotoUploaded`,
//! so no event ever points at a missing object. With `customer_id` the photo
//! policy attaches it asynchronously (flow option 2).
use axum::body::Body;
use axum::extract::multipart::{Multipart, MultipartError, MultipartRejection};
use axum::extract::State;
use axum::http::{header, HeaderMap, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use bytes::{Bytes, BytesMut};
use commands::photos::{self, PhotoChangeError, UploadError};
use commands::CommandError;
use domain::photo::{Photo, PhotoError, StoredImage};
use domain::values::{ImageType, ObjectKey, Sha256Hex};
use domain::{CompanyId, CustomerId, PhotoId};
use projections::consistency::{ConsistencyToken, Requirement};
use projections::read::photos::PhotoRow;
use serde::Serialize;
use sha2::{Digest, Sha256};
use utoipa::ToSchema;
use uuid::Uuid;

use super::{found, timestamp, Reply};
use crate::caller::Caller;
use crate::error::{ApiError, ApiResult, Problem};
use crate::extract::{IdempotencyKey, Path, Query};
use crate::state::AppState;

#[derive(Serialize, ToSchema)]
pub struct PhotoDto {
    #[schema(format = Uuid)]
    id: String,
    /// Signed: works without a token (e.g. in `<img src>`) for an hour or more.
    url: String,
    #[schema(schema_with = image_type)]
    content_type: String,
    size: i64,
    #[schema(pattern = "^[0-9a-f]{64}$")]
    sha256: String,
    #[schema(format = Uuid)]
    customer_id: Option<String>,
}

#[derive(Serialize, ToSchema)]
pub struct PhotoMetadata {
    #[schema(format = Uuid)]
    id: String,
    /// Signed: works without a token (e.g. in `<img src>`) for an hour or more.
    url: String,
    #[schema(schema_with = image_type)]
    content_type: String,
    size: i64,
    #[schema(pattern = "^[0-9a-f]{64}$")]
    sha256: String,
    /// The customer it was uploaded for (flow option 2).
    #[schema(format = Uuid)]
    for_customer: Option<String>,
    /// The customer showing it now.
    #[schema(format = Uuid)]
    customer_id: Option<String>,
    /// `uploaded` (flow 1), `pending` (flow 2, not settled yet), `attached`, `detached` or `rejected`.
    #[schema(schema_with = photo_status)]
    status: String,
    rejected_reason: Option<String>,
    #[schema(format = DateTime)]
    created_at: String,
    version: i64,
}

/// The multipart form of an upload, as documented in the spec. Other parts,
/// or a part sent twice, are `422`.
#[derive(ToSchema, serde::Deserialize)]
#[serde(deny_unknown_fields)]
#[allow(dead_code)]
pub struct UploadForm {
    /// A JPEG, PNG, WebP or GIF image, judged by its bytes (`415` otherwise), at
    /// most the server's upload limit (5 MiB by default; `413` beyond).
    #[schema(format = Binary, content_media_type = "application/octet-stream")]
    file: String,
    /// A customer of the caller's company to attach it to, asynchronously (flow option 2).
    #[schema(value_type = Uuid, required = false)]
    customer_id: Option<Uuid>,
}

/// The image types the server accepts and serves.
const IMAGE_TYPES: [&str; 4] = ["image/jpeg", "image/png", "image/webp", "image/gif"];

fn image_type() -> utoipa::openapi::schema::Object {
    utoipa::openapi::schema::ObjectBuilder::new()
        .schema_type(utoipa::openapi::schema::Type::String)
        .enum_values(Some(IMAGE_TYPES))
        .build()
}

fn photo_status() -> utoipa::openapi::schema::Object {
    utoipa::openapi::schema::ObjectBuilder::new()
        .schema_type(utoipa::openapi::schema::Type::String)
        .enum_values(Some([
            "uploaded", "pending", "attached", "detached", "rejected",
        ]))
        .build()
}

struct Upload {
    bytes: Bytes,
    image: ImageType,
    sha256: String,
}

impl Upload {
    /// The image as photo `photo_id` stores it, and the photo as the reply
    /// shows it.
    fn described(
        &self,
        state: &AppState,
        company: CompanyId,
        photo_id: PhotoId,
        customer: Option<CustomerId>,
    ) -> ApiResult<(StoredImage, PhotoDto)> {
        let image = StoredImage {
            object_key: ObjectKey::for_photo(company, photo_id),
            content_type: self.image,
            size: self.bytes.len() as u64,
            sha256: Sha256Hex::parse(&self.sha256).map_err(ApiError::internal)?,
        };
        let urls = &state.settings.photo_urls;
        let dto = PhotoDto {
            id: photo_id.to_string(),
            url: urls.url(company, photo_id),
            content_type: self.image.mime().to_owned(),
            size: self.bytes.len() as i64,
            sha256: self.sha256.clone(),
            customer_id: customer.map(|c| c.to_string()),
        };
        Ok((image, dto))
    }

    /// What an `Idempotency-Key` stands for: these bytes, for this customer.
    fn digest(&self, customer: Option<CustomerId>) -> String {
        let customer = customer.map(|c| c.to_string()).unwrap_or_default();
        crate::idempotency::digest_bytes(&[self.sha256.as_bytes(), customer.as_bytes()])
    }
}

fn multipart_error(error: MultipartError) -> ApiError {
    if error.status() == StatusCode::PAYLOAD_TOO_LARGE {
        ApiError::TooLarge("the photo is too large".to_owned())
    } else {
        ApiError::bad_request(error.body_text())
    }
}

async fn read_file(
    field: &mut axum::extract::multipart::Field<'_>,
    max: usize,
) -> ApiResult<Upload> {
    let mut bytes = BytesMut::new();
    let mut hasher = Sha256::new();
    while let Some(chunk) = field.chunk().await.map_err(multipart_error)? {
        if bytes.len() + chunk.len() > max {
            // Read (and drop) the rest so the client, still sending, gets
            // the 413 instead of a broken pipe; the route's body limit
            // bounds how much we are willing to read.
            while let Ok(Some(_)) = field.chunk().await {}
            return Err(ApiError::TooLarge(format!(
                "the photo is larger than {max} bytes"
            )));
        }
        hasher.update(&chunk);
        bytes.extend_from_slice(&chunk);
    }
    let image = judge_image(&bytes)?;
    Ok(Upload {
        bytes: bytes.freeze(),
        image,
        sha256: hex::encode(hasher.finalize()),
    })
}

/// Uploads a photo; with `customer_id` it is attached to that customer asynchronously.
#[utoipa::path(post, path = "/v1/photos", tag = "photos", security(("bearer" = [])),
    request_body(content = UploadForm, content_type = "multipart/form-data"),
    params(("Idempotency-Key" = Option<String>, Header)),
    responses((status = 201, body = PhotoDto),
        (status = 404, body = Problem, description = "No such customer in the caller's company"),
        (status = 409, body = Problem, description = "The customer is deleted"),
        (status = 413, body = Problem, description = "The photo is larger than the upload limit"),
        (status = 415, body = Problem, description = "Not multipart/form-data, or the file is not a JPEG, PNG, WebP or GIF image"),
        (status = 422, body = Problem, description = "No `file` part, or a `customer_id` that is not a UUID")))]
pub async fn upload_photo(
    State(state): State<AppState>,
    caller: Caller,
    IdempotencyKey(key): IdempotencyKey,
    multipart: Result<Multipart, MultipartRejection>,
) -> ApiResult<Reply<PhotoDto>> {
    let multipart = multipart.map_err(not_multipart)?;
    let (upload, customer) = read_form(multipart, state.settings.max_upload_bytes).await?;
    let photo_id = PhotoId(match &key {
        Some(key) => crate::idempotency::derived_id::<Photo>(caller.company_id, key).as_uuid(),
        None => Uuid::now_v7(),
    });
    let digest = key.as_ref().map(|_| upload.digest(customer));
    // Before the object is written: a key reused for another file must not
    // replace the first file's bytes.
    crate::idempotency::same_request::<Photo>(&state, &photo_id.to_string(), digest.as_deref())
        .await?;
    let (image, dto) = upload.described(&state, caller.company_id, photo_id, customer)?;
    let ctx = caller.context().with_request_digest(digest);
    let stored = photos::upload_photo(
        &state.commands,
        state.objects.as_ref(),
        &ctx,
        photo_id,
        image,
        upload.bytes,
        customer,
    )
    .await;
    let version = match stored {
        Ok(version) => version,
        // The same Idempotency-Key again: the photo is as the first time.
        Err(UploadError::Command(CommandError::Domain(PhotoChangeError::Photo(
            PhotoError::AlreadyExists,
        )))) if key.is_some() => 1,
        Err(error) => return Err(error.into()),
    };
    Ok(Reply::ok(dto)
        .status(StatusCode::CREATED)
        .token(upload_token(photo_id, version, customer.is_some()))
        .location(format!("/v1/photos/{photo_id}")))
}

fn not_multipart(rejection: MultipartRejection) -> ApiError {
    ApiError::UnsupportedMediaType(format!(
        "expected multipart/form-data: {}",
        rejection.body_text()
    ))
}

/// An upload's token; with a customer it also covers the policy's attach.
fn upload_token(photo: PhotoId, version: u64, for_customer: bool) -> ConsistencyToken {
    let mut token = ConsistencyToken::applied::<Photo>(photo, version);
    if for_customer {
        let id = photo.to_string();
        token.0.push(Requirement::PhotoSettled { id });
    }
    token
}

/// The form's image and the customer it is for. Like the JSON bodies:
/// unknown or repeated parts are refused, not ignored.
async fn read_form(
    mut multipart: Multipart,
    max_bytes: usize,
) -> ApiResult<(Upload, Option<CustomerId>)> {
    let mut upload = None;
    let mut customer = None;
    while let Some(mut field) = multipart.next_field().await.map_err(multipart_error)? {
        match field.name() {
            Some("file") if upload.is_none() => {
                upload = Some(read_file(&mut field, max_bytes).await?)
            }
            Some("customer_id") if customer.is_none() => {
                let text = field.text().await.map_err(multipart_error)?;
                let id = Uuid::parse_str(text.trim())
                    .map_err(|_| ApiError::field("customer_id", "must be a UUID"))?;
                customer = Some(CustomerId(id));
            }
            Some(name @ ("file" | "customer_id")) => {
                return Err(ApiError::field(name, "must be sent once"));
            }
            other => {
                let name: String = other.unwrap_or("").chars().take(64).collect();
                return Err(ApiError::field(&name, "unknown field"));
            }
        }
    }
    let upload = upload.ok_or_else(|| ApiError::field("file", "is required"))?;
    Ok((upload, customer))
}

/// The widest and tallest image accepted, in pixels.
const MAX_DIMENSION: usize = 16_384;

/// The file's type, from its magic bytes, once its header also parses as an
/// image of that type with sane dimensions: a magic number alone (a few
/// bytes in front of anything) is not an image.
fn judge_image(bytes: &[u8]) -> ApiResult<ImageType> {
    let refuse = |why: &str| ApiError::UnsupportedMediaType(why.to_owned());
    let image = ImageType::sniff(bytes)
        .ok_or_else(|| refuse("the file is not a JPEG, PNG, WebP or GIF image"))?;
    let header_type = imagesize::image_type(bytes).ok();
    let same_type = matches!(
        (image, header_type),
        (ImageType::Jpeg, Some(imagesize::ImageType::Jpeg))
            | (ImageType::Png, Some(imagesize::ImageType::Png))
            | (ImageType::Gif, Some(imagesize::ImageType::Gif))
            | (ImageType::Webp, Some(imagesize::ImageType::Webp))
    );
    let size = imagesize::blob_size(bytes).ok().filter(|size| {
        (1..=MAX_DIMENSION).contains(&size.width) && (1..=MAX_DIMENSION).contains(&size.height)
    });
    match (same_type, size) {
        (true, Some(_)) => Ok(image),
        _ => Err(refuse(&format!(
            "the file starts like a {} image but its header does not parse as one \
             (with a size of 1 to {MAX_DIMENSION} pixels each way)",
            image.mime()
        ))),
    }
}

/// A signed photo URL's query (all three or none).
#[derive(Debug, serde::Deserialize, utoipa::IntoParams)]
#[into_params(parameter_in = Query)]
pub struct SignedPhoto {
    /// With `expires` and `signature`, from a photo `url` this API issued.
    company: Option<Uuid>,
    /// Unix time after which the URL no longer works.
    expires: Option<i64>,
    signature: Option<String>,
}

/// The photo's bytes, with its stored content type. Reached with a token,
/// or without one through the signed `url` that customers and photos carry.
#[utoipa::path(get, path = "/v1/photos/{id}", tag = "photos", security(("bearer" = []), ()), params(("id" = Uuid, Path), SignedPhoto, ("X-Consistency-Token" = Option<String>, Header)),
    responses((status = 200, description = "The image bytes, with the type they were judged to be",
            content(("image/jpeg"), ("image/png"), ("image/webp"), ("image/gif")),
            headers(("ETag" = String, description = "The quoted sha256 of the bytes"),
                ("Cache-Control" = String, description = "`private, max-age=86400, immutable`"),
                ("X-Content-Type-Options" = String, description = "`nosniff`"))),
        (status = 401, body = Problem, description = "No token and no valid signed URL (or an expired one)"),
        (status = 404, body = Problem, description = "No such photo in the caller's company")))]
pub async fn get_photo(
    State(state): State<AppState>,
    caller: Result<Caller, ApiError>,
    Query(signed): Query<SignedPhoto>,
    crate::extract::WaitFor(wait): crate::extract::WaitFor,
    Path(id): Path<Uuid>,
) -> ApiResult<Response> {
    // A signed URL is made to be embedded by the frontend's own origin.
    let (company, cross_origin) = match signed.company(&state, PhotoId(id))? {
        Some(company) => (company, true),
        None => (caller?.company_id, false),
    };
    // The upload's token: the photo is readable as soon as the upload answered.
    let stale = state.await_token(company, wait.as_ref()).await;
    let row = found(projections::read::photos::get(state.pool(), company, PhotoId(id)).await?)?;
    let bytes = found(state.objects.get(&row.object_key).await?)?;
    let mut response = Body::from(bytes).into_response();
    photo_headers(response.headers_mut(), &row, cross_origin);
    if stale {
        let headers = response.headers_mut();
        headers.insert(super::STALE_HEADER, HeaderValue::from_static("true"));
    }
    Ok(response)
}

impl SignedPhoto {
    /// The company a signed URL names, once its signature holds; `None` for
    /// an unsigned request (the caller's token decides).
    fn company(&self, state: &AppState, photo: PhotoId) -> ApiResult<Option<CompanyId>> {
        match (self.company, self.expires, &self.signature) {
            (Some(company), Some(expires), Some(signature)) => {
                let company = CompanyId(company);
                let urls = &state.settings.photo_urls;
                if !urls.verify(company, photo, expires, signature) {
                    return Err(ApiError::Unauthenticated(
                        "the photo URL is invalid or has expired",
                    ));
                }
                Ok(Some(company))
            }
            (None, None, None) => Ok(None),
            _ => Err(ApiError::bad_request(
                "a signed photo URL needs company, expires and signature",
            )),
        }
    }
}

/// The headers a photo's bytes are served with.
fn photo_headers(headers: &mut HeaderMap, row: &PhotoRow, cross_origin: bool) {
    if let Ok(content_type) = HeaderValue::from_str(&row.content_type) {
        headers.insert(header::CONTENT_TYPE, content_type);
    }
    if let Ok(etag) = HeaderValue::from_str(&format!("\"{}\"", row.sha256)) {
        headers.insert(header::ETAG, etag);
    }
    // A photo id's bytes never change; only its owner's users may cache it.
    headers.insert(
        header::CACHE_CONTROL,
        HeaderValue::from_static("private, max-age=86400, immutable"),
    );
    headers.insert(
        header::X_CONTENT_TYPE_OPTIONS,
        HeaderValue::from_static("nosniff"),
    );
    if cross_origin {
        headers.insert(
            "cross-origin-resource-policy",
            HeaderValue::from_static("cross-origin"),
        );
    }
}

/// What the server knows of a photo: whether the policy attached or rejected it, and why.
#[utoipa::path(get, path = "/v1/photos/{id}/metadata", tag = "photos", security(("bearer" = [])), params(("id" = Uuid, Path), ("X-Consistency-Token" = Option<String>, Header)),
    responses((status = 200, body = PhotoMetadata),
        (status = 404, body = Problem, description = "No such photo in the caller's company")))]
pub async fn photo_metadata(
    State(state): State<AppState>,
    caller: Caller,
    crate::extract::WaitFor(wait): crate::extract::WaitFor,
    Path(id): Path<Uuid>,
) -> ApiResult<Reply<PhotoMetadata>> {
    let stale = state.await_token(caller.company_id, wait.as_ref()).await;
    let row =
        found(projections::read::photos::get(state.pool(), caller.company_id, PhotoId(id)).await?)?;
    let version = row.last_seq;
    Ok(
        Reply::ok(PhotoMetadata::new(row, &state.settings.photo_urls))
            .version(version)
            .stale(stale),
    )
}

impl PhotoMetadata {
    /// The photo of `row`, with a signed `url`.
    pub fn new(row: PhotoRow, urls: &crate::photo_urls::PhotoUrls) -> Self {
        Self {
            url: urls.url(row.company_id, row.id),
            version: row.last_seq,
            id: row.id.to_string(),
            content_type: row.content_type,
            size: row.size,
            sha256: row.sha256,
            for_customer: row.for_customer,
            customer_id: row.customer_id,
            status: row.status,
            rejected_reason: row.rejected_reason,
            created_at: timestamp(&row.created_at),
        }
    }
}
