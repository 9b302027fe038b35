//! A rebuild's shadow tables: created empty with the live tables' columns,
//! loaded without indexes, then given the live tables' keys and indexes,
//! built over the loaded rows (an index built at once costs a fraction of
//! one maintained row by row).
use commands::{Db, Dialect};
use futures::stream::{self, StreamExt, TryStreamExt};
use sqlx::{AnyConnection, Row};

/// Index builds run at the same time on Postgres, each on its own
/// connection: a build alternates between sorting (CPU) and writing the
/// index out (I/O), so two of them keep two cores busy where one leaves
/// them half idle.
const BUILDERS: usize = 2;

/// What makes a shadow table whole once it is loaded.
#[derive(Debug, Default)]
pub(super) struct Deferred {
    /// Index builds, independent of each other (they may run at once), each
    /// with the shadow table it indexes.
    builds: Vec<(String, String)>,
    /// Cheap statements after every build (a key attached to its index).
    after: Vec<String>,
    /// The shadow tables, for their statistics.
    tables: Vec<String>,
}

/// Creates empty `shadow` with the columns of `live` and only its
/// constraints (on SQLite its inline keys); what adds its keys and indexes
/// is added to `deferred`, to run once the bulk load is in.
pub(super) async fn create(
    db: &Db,
    conn: &mut AnyConnection,
    live: &str,
    shadow: &str,
    deferred: &mut Deferred,
) -> Result<(), sqlx::Error> {
    sqlx::query(&format!("DROP TABLE IF EXISTS {shadow}"))
        .execute(&mut *conn)
        .await?;
    deferred.tables.push(shadow.to_owned());
    // Index names are unique per schema: a fresh one for each rebuild, as
    // the live table still holds the previous rebuild's names.
    let generation = chrono::Utc::now().timestamp_millis();
    match db.dialect() {
        Dialect::Postgres => {
            sqlx::query(&format!(
                "CREATE TABLE {shadow} (LIKE {live} INCLUDING ALL EXCLUDING INDEXES)"
            ))
            .execute(&mut *conn)
            .await?;
            // Keys as the live table has them: a unique index built with the
            // others, then attached as the constraint (which, with its
            // columns already NOT NULL, reads nothing). `ALTER TABLE ... ADD
            // PRIMARY KEY` would lock out the other builds on the table.
            let keys = sqlx::query(
                "SELECT c.contype::text AS kind, \
                        pg_get_indexdef(c.conindid) AS def \
                 FROM pg_constraint c \
                 WHERE c.conrelid = $1::regclass AND c.contype IN ('p', 'u') ORDER BY c.conname",
            )
            .bind(live)
            .fetch_all(&mut *conn)
            .await?;
            for (i, key) in keys.iter().enumerate() {
                let kind: String = key.try_get("kind")?;
                let def: String = key.try_get("def")?;
                let Some(using) = def.find(" USING ") else {
                    continue;
                };
                let name = format!("{shadow}_k{i}_{generation}");
                deferred.builds.push((
                    shadow.to_owned(),
                    format!("CREATE UNIQUE INDEX {name} ON {shadow}{}", &def[using..]),
                ));
                let constraint = if kind == "p" { "PRIMARY KEY" } else { "UNIQUE" };
                deferred.after.push(format!(
                    "ALTER TABLE {shadow} ADD CONSTRAINT {name} {constraint} USING INDEX {name}"
                ));
            }
            // ...and the other indexes.
            let indexes = sqlx::query(
                "SELECT pg_get_indexdef(i.indexrelid) AS def FROM pg_index i \
                 WHERE i.indrelid = $1::regclass AND NOT EXISTS \
                   (SELECT 1 FROM pg_constraint c WHERE c.conindid = i.indexrelid) \
                 ORDER BY i.indexrelid",
            )
            .bind(live)
            .fetch_all(&mut *conn)
            .await?;
            for (i, index) in indexes.iter().enumerate() {
                let def: String = index.try_get("def")?;
                let Some(using) = def.find(" USING ") else {
                    continue;
                };
                let unique = if def.starts_with("CREATE UNIQUE") {
                    "UNIQUE "
                } else {
                    ""
                };
                let name = format!("{shadow}_i{i}_{generation}");
                deferred.builds.push((
                    shadow.to_owned(),
                    format!("CREATE {unique}INDEX {name} ON {shadow}{}", &def[using..]),
                ));
            }
        }
        Dialect::Sqlite => {
            let rows = sqlx::query("SELECT type, sql FROM sqlite_master WHERE tbl_name = $1 AND sql IS NOT NULL ORDER BY type DESC")
                .bind(live)
                .fetch_all(&mut *conn)
                .await?;
            for (i, row) in rows.iter().enumerate() {
                let kind: String = row.try_get("type")?;
                let sql: String = row.try_get("sql")?;
                let Some(open) = sql.find('(') else { continue };
                if kind == "table" {
                    sqlx::query(&format!("CREATE TABLE {shadow} {}", &sql[open..]))
                        .execute(&mut *conn)
                        .await?;
                    continue;
                }
                let unique = if sql.to_uppercase().starts_with("CREATE UNIQUE") {
                    "UNIQUE "
                } else {
                    ""
                };
                deferred.builds.push((
                    shadow.to_owned(),
                    format!(
                        "CREATE {unique}INDEX {live}_i{i}_{generation} ON {shadow} {}",
                        &sql[open..]
                    ),
                ));
            }
        }
    }
    Ok(())
}

/// Runs `statement` in a transaction of its own on a pooled connection. On
/// Postgres an index build may run past the session's `statement_timeout`
/// (meant for requests, not for sorting millions of rows) and gets more sort
/// memory than a request.
async fn build(db: &Db, statement: &str) -> Result<(), sqlx::Error> {
    let mut conn = db.any.acquire().await?;
    if db.dialect() != Dialect::Postgres {
        sqlx::query(statement).execute(&mut *conn).await?;
        return Ok(());
    }
    sqlx::query("BEGIN").execute(&mut *conn).await?;
    let built = async {
        sqlx::query("SET LOCAL statement_timeout = 0")
            .execute(&mut *conn)
            .await?;
        sqlx::query("SET LOCAL maintenance_work_mem = '256MB'")
            .execute(&mut *conn)
            .await?;
        // The builds run side by side already: a build's own parallel
        // workers on top of that only made them queue for the same cores
        // (measured: 16 s for the customers view's builds with them, 11 s
        // without).
        sqlx::query("SET LOCAL max_parallel_maintenance_workers = 0")
            .execute(&mut *conn)
            .await?;
        sqlx::query(statement).execute(&mut *conn).await?;
        Ok::<_, sqlx::Error>(())
    }
    .await;
    match built {
        Ok(()) => sqlx::query("COMMIT").execute(&mut *conn).await.map(drop),
        Err(error) => {
            let _ = sqlx::query("ROLLBACK").execute(&mut *conn).await;
            Err(error)
        }
    }
}

/// Builds the shadow's deferred keys and indexes over the loaded rows, the
/// largest table's first, then gives the planner the shadow's statistics,
/// so the first reads after the swap plan as well as on the live table.
pub(super) async fn finish(db: &Db, deferred: &Deferred) -> Result<(), sqlx::Error> {
    let builders = match db.dialect() {
        Dialect::Postgres => BUILDERS,
        Dialect::Sqlite => 1,
    };
    let mut builds: Vec<(i64, &String)> = vec![];
    for (table, statement) in &deferred.builds {
        builds.push((table_size(db, table).await?, statement));
    }
    builds.sort_by_key(|(size, _)| std::cmp::Reverse(*size));
    stream::iter(
        builds
            .into_iter()
            .map(|(_, statement)| build(db, statement)),
    )
    .buffer_unordered(builders)
    .try_collect::<()>()
    .await?;
    for statement in &deferred.after {
        sqlx::query(statement).execute(&db.any).await?;
    }
    if db.dialect() == Dialect::Postgres {
        for table in &deferred.tables {
            build(db, &format!("ANALYZE {table}")).await?;
        }
    }
    Ok(())
}

/// The size of `table` (0 on SQLite), to start the longest builds first.
async fn table_size(db: &Db, table: &str) -> Result<i64, sqlx::Error> {
    if db.dialect() != Dialect::Postgres {
        return Ok(0);
    }
    sqlx::query_scalar("SELECT pg_relation_size($1::regclass)")
        .bind(table)
        .fetch_one(&db.any)
        .await
}
