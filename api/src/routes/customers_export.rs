//! `GET /v1/customers/export`: every customer the list parameters select, as
//! CSV or NDJSON, streamed page by page from one snapshot of the view (a
//! repeatable-read transaction on Postgres, one read transaction on SQLite),
//! so a long export neither holds every row in memory nor mixes states.
use axum::body::{Body, Bytes};
use axum::extract::State;
use axum::http::{header, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use commands::Dialect;
use domain::CompanyId;
use futures::StreamExt;
use projections::read::customers::{list_in, CustomerRow, ListQuery};
use serde::Deserialize;
use utoipa::IntoParams;

use super::customer_list::CustomerListParams;
use super::customers::CustomerDto;
use crate::caller::Caller;
use crate::error::ApiResult;
use crate::extract::Query;
use crate::photo_urls::PhotoUrls;
use crate::state::AppState;

/// Rows read per query of the snapshot.
const EXPORT_PAGE: i64 = 1000;

#[derive(Clone, Copy, Default, Deserialize, utoipa::ToSchema)]
#[serde(rename_all = "lowercase")]
pub enum ExportFormat {
    #[default]
    Csv,
    Ndjson,
}

#[derive(Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
pub struct ExportParams {
    /// `csv` (default) or `ndjson`.
    #[param(inline)]
    format: Option<ExportFormat>,
}

/// The CSV columns, in order.
const COLUMNS: [&str; 13] = [
    "id",
    "name",
    "surname",
    "email",
    "phone",
    "notes",
    "photo_id",
    "created_by",
    "created_at",
    "updated_by",
    "updated_at",
    "deleted_at",
    "external_id",
];

/// Every customer the list's `q`, `sort` and filters select, streamed.
#[utoipa::path(get, path = "/v1/customers/export", tag = "customers", security(("bearer" = [])),
    params(ExportParams, CustomerListParams),
    responses((status = 200, description = "Every matching customer: CSV with a header row (cells starting with = + - @ prefixed with ') or one JSON customer per line",
        content(("text/csv"), ("application/x-ndjson")))))]
pub async fn export_customers(
    State(state): State<AppState>,
    caller: Caller,
    Query(export): Query<ExportParams>,
    Query(params): Query<CustomerListParams>,
) -> ApiResult<Response> {
    let format = export.format.unwrap_or_default();
    let (mut query, _) = params.query(&caller, None, &state.settings.cursor_key, EXPORT_PAGE)?;
    let mut tx = state.pool().begin().await?;
    if state.commands.db().dialect() == Dialect::Postgres {
        sqlx::query("SET TRANSACTION ISOLATION LEVEL REPEATABLE READ, READ ONLY")
            .execute(&mut *tx)
            .await?;
    }
    // The first page is read before answering, so a failing store is a
    // problem+json answer rather than a cut-off download.
    let (rows, next) = list_in(&mut *tx, caller.company_id, &query).await?;
    let mut first = encode(format, &rows, &state.settings.photo_urls);
    if let ExportFormat::Csv = format {
        first = [csv_line(COLUMNS.iter().map(|c| Some(*c))), first].concat();
    }
    query.after = next;
    let rest = later_pages(state, caller.company_id, format, tx, query);
    let body = futures::stream::once(async move { Ok(Bytes::from(first)) }).chain(rest);
    let (content_type, file) = match format {
        ExportFormat::Csv => ("text/csv; charset=utf-8", "customers.csv"),
        ExportFormat::Ndjson => ("application/x-ndjson", "customers.ndjson"),
    };
    let mut response = (StatusCode::OK, Body::from_stream(body)).into_response();
    let headers = response.headers_mut();
    headers.insert(header::CONTENT_TYPE, HeaderValue::from_static(content_type));
    if let Ok(value) = HeaderValue::from_str(&format!("attachment; filename=\"{file}\"")) {
        headers.insert(header::CONTENT_DISPOSITION, value);
    }
    Ok(response)
}

/// The pages after the first, encoded, from the same snapshot (`tx`). A
/// failure once the download started can only cut it off; it is logged.
fn later_pages(
    state: AppState,
    company: CompanyId,
    format: ExportFormat,
    tx: sqlx::Transaction<'static, sqlx::Any>,
    query: ListQuery,
) -> impl futures::Stream<Item = Result<Bytes, std::io::Error>> {
    let more = query.after.is_some();
    futures::stream::unfold(more.then_some((tx, query)), move |pending| {
        let state = state.clone();
        async move {
            let (mut tx, mut query) = pending?;
            match list_in(&mut *tx, company, &query).await {
                Ok((rows, next)) => {
                    let chunk = Bytes::from(encode(format, &rows, &state.settings.photo_urls));
                    query.after = next;
                    let pending = query.after.is_some().then_some((tx, query));
                    Some((Ok(chunk), pending))
                }
                Err(error) => {
                    tracing::error!(%error, "an export failed after it started");
                    Some((Err(std::io::Error::other("the export failed")), None))
                }
            }
        }
    })
}

fn encode(format: ExportFormat, rows: &[CustomerRow], urls: &PhotoUrls) -> Vec<u8> {
    let mut out = Vec::new();
    for row in rows {
        match format {
            ExportFormat::Csv => out.extend(csv_line(
                [
                    Some(row.id.to_string().as_str()),
                    Some(row.name.as_str()),
                    Some(row.surname.as_str()),
                    row.email.as_deref(),
                    row.phone.as_deref(),
                    row.notes.as_deref(),
                    row.photo_id.as_deref(),
                    Some(row.created_by.to_string().as_str()),
                    Some(row.created_at.as_str()),
                    Some(row.updated_by.to_string().as_str()),
                    Some(row.updated_at.as_str()),
                    row.deleted_at.as_deref(),
                    row.external_id.as_deref(),
                ]
                .into_iter(),
            )),
            ExportFormat::Ndjson => {
                let customer = CustomerDto::new(row.clone(), urls);
                if let Ok(json) = serde_json::to_vec(&customer) {
                    out.extend(json);
                    out.push(b'\n');
                }
            }
        }
    }
    out
}

/// One CSV record (RFC 4180, CRLF). A cell that a spreadsheet would run as
/// a formula (starting with `=`, `+`, `-` or `@`) gets a leading `'`.
fn csv_line<'a>(cells: impl Iterator<Item = Option<&'a str>>) -> Vec<u8> {
    let mut line = String::new();
    for (n, cell) in cells.enumerate() {
        if n > 0 {
            line.push(',');
        }
        let cell = cell.unwrap_or("");
        let guarded = if cell.starts_with(['=', '+', '-', '@']) {
            format!("'{cell}")
        } else {
            cell.to_owned()
        };
        if guarded.contains([',', '"', '\n', '\r']) {
            line.push('"');
            line.push_str(&guarded.replace('"', "\"\""));
            line.push('"');
        } else {
            line.push_str(&guarded);
        }
    }
    line.push_str("\r\n");
    line.into_bytes()
}

#[cfg(test)]
mod tests {
    use super::csv_line;

    fn line(cells: &[Option<&str>]) -> String {
        String::from_utf8(csv_line(cells.iter().copied())).unwrap()
    }

    #[test]
    fn cells_are_quoted_and_formulas_neutralised() {
        assert_eq!(line(&[Some("a"), None, Some("b c")]), "a,,b c\r\n");
        assert_eq!(
            line(&[Some("x,y"), Some("say \"hi\"")]),
            "\"x,y\",\"say \"\"hi\"\"\"\r\n"
        );
        assert_eq!(line(&[Some("two\nlines")]), "\"two\nlines\"\r\n");
        assert_eq!(
            line(&[
                Some("=1+1"),
                Some("+34 600"),
                Some("-x"),
                Some("@sum"),
                Some("a=b")
            ]),
            "'=1+1,'+34 600,'-x,'@sum,a=b\r\n"
        );
        assert_eq!(
            line(&[Some("=HYPERLINK(\"x\",1)")]),
            "\"'=HYPERLINK(\"\"x\"\",1)\"\r\n"
        );
    }
}
