//! Customers of the caller's company: one, or a keyset-paginated list in any
//! of the API's sort orders, optionally filtered by word-prefix search.
use domain::values::search_words;
use domain::{CompanyId, CustomerId, UserId};
use sqlx::{AnyPool, FromRow};

use super::users::page;
use super::{prefix_upper_bound, Keyset};

#[derive(Clone, Debug, FromRow)]
pub struct CustomerRow {
    #[sqlx(try_from = "String")]
    pub id: CustomerId,
    #[sqlx(try_from = "String")]
    pub company_id: CompanyId,
    pub name: String,
    pub surname: String,
    pub surname_key: String,
    pub email: Option<String>,
    pub phone: Option<String>,
    pub notes: Option<String>,
    pub external_id: Option<String>,
    pub photo_id: Option<String>,
    pub photo_content_type: Option<String>,
    pub photo_size: Option<i64>,
    #[sqlx(try_from = "String")]
    pub created_by: UserId,
    pub created_at: String,
    #[sqlx(try_from = "String")]
    pub updated_by: UserId,
    pub updated_at: String,
    pub deleted_at: Option<String>,
    pub last_seq: i64,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub enum CustomerSort {
    CreatedAsc,
    CreatedDesc,
    SurnameAsc,
    SurnameDesc,
}

impl CustomerSort {
    pub fn parse(raw: &str) -> Option<Self> {
        Some(match raw {
            "created_at" => Self::CreatedAsc,
            "-created_at" => Self::CreatedDesc,
            "surname" => Self::SurnameAsc,
            "-surname" => Self::SurnameDesc,
            _ => return None,
        })
    }

    fn column(&self) -> &'static str {
        match self {
            Self::CreatedAsc | Self::CreatedDesc => "created_at",
            Self::SurnameAsc | Self::SurnameDesc => "surname_key",
        }
    }

    fn descending(&self) -> bool {
        matches!(self, Self::CreatedDesc | Self::SurnameDesc)
    }

    fn keyset(&self, row: &CustomerRow) -> Keyset {
        let key = match self {
            Self::CreatedAsc | Self::CreatedDesc => row.created_at.clone(),
            Self::SurnameAsc | Self::SurnameDesc => row.surname_key.clone(),
        };
        Keyset {
            key,
            id: row.id.to_string(),
        }
    }
}

/// Which customers a list shows by their deletion.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum Deleted {
    /// Live customers only.
    #[default]
    Exclude,
    Only,
    Include,
}

/// Narrowing of a list beyond search. Times are RFC 3339 in the stored
/// form (UTC, microseconds), so they compare as text.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct ListFilters {
    pub deleted: Deleted,
    pub created_by: Option<String>,
    pub updated_by: Option<String>,
    pub has_photo: Option<bool>,
    pub created_after: Option<String>,
    pub created_before: Option<String>,
    pub updated_after: Option<String>,
    pub updated_before: Option<String>,
    /// Exact match (the column is unique per company).
    pub external_id: Option<String>,
}

pub struct ListQuery {
    pub sort: CustomerSort,
    pub filters: ListFilters,
    /// Free text; every word must be the prefix of a word of the customer.
    pub search: Option<String>,
    pub after: Option<Keyset>,
    pub limit: i64,
}

/// At most this many search words are used; more narrow nothing in practice.
const MAX_SEARCH_TERMS: usize = 5;

const SELECT: &str =
    "SELECT c.id, c.company_id, c.name, c.surname, c.surname_key, c.email, c.phone, c.notes, \
     c.external_id, c.photo_id, p.content_type AS photo_content_type, p.size AS photo_size, \
     c.created_by, c.created_at, c.updated_by, c.updated_at, c.deleted_at, c.last_seq \
     FROM customers c LEFT JOIN photos p ON p.id = c.photo_id AND p.company_id = c.company_id";

pub async fn get(
    pool: &AnyPool,
    company: CompanyId,
    id: CustomerId,
) -> Result<Option<CustomerRow>, sqlx::Error> {
    sqlx::query_as(&format!("{SELECT} WHERE c.company_id = $1 AND c.id = $2"))
        .bind(company.to_string())
        .bind(id.to_string())
        .fetch_optional(pool)
        .await
}

pub async fn list(
    pool: &AnyPool,
    company: CompanyId,
    query: &ListQuery,
) -> Result<(Vec<CustomerRow>, Option<Keyset>), sqlx::Error> {
    list_in(pool, company, query).await
}

/// [`list`] on any connection, e.g. inside an export's snapshot transaction.
pub async fn list_in<'e, E>(
    executor: E,
    company: CompanyId,
    query: &ListQuery,
) -> Result<(Vec<CustomerRow>, Option<Keyset>), sqlx::Error>
where
    E: sqlx::Executor<'e, Database = sqlx::Any>,
{
    let column = query.sort.column();
    let (order, compare) = if query.sort.descending() {
        ("DESC", "<")
    } else {
        ("ASC", ">")
    };
    let filters = &query.filters;
    let mut sql = format!("{SELECT} WHERE c.company_id = $1");
    sql.push_str(match filters.deleted {
        Deleted::Exclude => " AND c.deleted = 0",
        Deleted::Only => " AND c.deleted = 1",
        Deleted::Include => "",
    });
    match filters.has_photo {
        Some(true) => sql.push_str(" AND c.photo_id IS NOT NULL"),
        Some(false) => sql.push_str(" AND c.photo_id IS NULL"),
        None => {}
    }
    let mut binds: Vec<String> = vec![];
    let mut next = 2;
    for (condition, value) in [
        ("c.created_by =", &filters.created_by),
        ("c.updated_by =", &filters.updated_by),
        ("c.created_at >", &filters.created_after),
        ("c.created_at <", &filters.created_before),
        ("c.updated_at >", &filters.updated_after),
        ("c.updated_at <", &filters.updated_before),
        ("c.external_id =", &filters.external_id),
    ] {
        if let Some(value) = value {
            sql.push_str(&format!(" AND {condition} ${next}"));
            binds.push(value.clone());
            next += 1;
        }
    }
    if let Some(after) = &query.after {
        sql.push_str(&format!(
            " AND (c.{column}, c.id) {compare} (${next}, ${})",
            next + 1
        ));
        binds.push(after.key.clone());
        binds.push(after.id.clone());
        next += 2;
    }
    let terms: Vec<String> = query
        .search
        .as_deref()
        .map(search_words)
        .unwrap_or_default()
        .into_iter()
        .take(MAX_SEARCH_TERMS)
        .collect();
    for term in terms {
        sql.push_str(&format!(
            " AND c.id IN (SELECT w.customer_id FROM customer_words w \
             WHERE w.company_id = $1 AND w.word >= ${next} AND w.word < ${})",
            next + 1
        ));
        binds.push(prefix_upper_bound(&term));
        binds.insert(binds.len() - 1, term);
        next += 2;
    }
    sql.push_str(&format!(
        " ORDER BY c.{column} {order}, c.id {order} LIMIT ${next}"
    ));
    let mut q = sqlx::query_as::<_, CustomerRow>(&sql).bind(company.to_string());
    for value in binds {
        q = q.bind(value);
    }
    let rows = q.bind(query.limit + 1).fetch_all(executor).await?;
    let sort = query.sort;
    Ok(page(rows, query.limit, |row| sort.keyset(row)))
}

impl TryFrom<crate::views::customers::Customer> for CustomerRow {
    type Error = uuid::Error;

    /// The view's row, photo details left empty (they live in the photo's row).
    fn try_from(row: crate::views::customers::Customer) -> Result<Self, Self::Error> {
        Ok(Self {
            surname_key: row.surname_key(),
            id: row.id.parse()?,
            company_id: row.company_id.parse()?,
            name: row.name,
            surname: row.surname,
            email: row.email,
            phone: row.phone,
            notes: row.notes,
            external_id: row.external_id,
            photo_id: row.photo_id,
            photo_content_type: None,
            photo_size: None,
            created_by: row.created_by.parse()?,
            created_at: row.created_at,
            updated_by: row.updated_by.parse()?,
            updated_at: row.updated_at,
            deleted_at: row.deleted_at,
            last_seq: row.last_seq,
        })
    }
}
