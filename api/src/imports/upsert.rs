//! `upsert_on=email`: a row whose email is held by one live customer of the
//! company updates that customer; any other row creates one. The views are
//! caught up with every earlier batch (each batch waits for them), and rows
//! of one batch sharing a new email become one customer, the later rows
//! updating it.
use commands::imports::{Job, RowError};
use sqlx::Row as _;
use std::collections::HashMap;

use super::{change_of, email_key, ByEmail, ImportError, Plan, Valid};
use crate::state::AppState;

pub(super) async fn plan_on_email(
    state: &AppState,
    job: &Job,
    valid: Vec<Valid>,
) -> Result<Plan, ImportError> {
    let emails: Vec<String> = valid.iter().filter_map(|v| email_key(&v.details)).collect();
    let held = holders(state, job, &emails).await?;
    let mut plan = Plan::default();
    // New emails of this batch: the index of the create that holds each.
    let mut created: HashMap<String, usize> = HashMap::new();
    for row in valid {
        let Some(key) = email_key(&row.details) else {
            plan.creates.push((row.line, row.details));
            continue;
        };
        match held.get(&key).map(Vec::as_slice) {
            Some([id]) => {
                let change = change_of(&row);
                plan.updates.push((row.line, *id, change));
            }
            Some(ids) => plan.errors.push(RowError {
                line: row.line,
                field: Some("email".into()),
                message: format!(
                    "{} customers have this email; upsert needs exactly one",
                    ids.len()
                ),
            }),
            None => match created.get(&key) {
                Some(&index) => {
                    let change = change_of(&row);
                    change.apply_to(&mut plan.creates[index].1);
                    plan.merged += 1;
                }
                None => {
                    created.insert(key, plan.creates.len());
                    plan.creates.push((row.line, row.details));
                }
            },
        }
    }
    Ok(plan)
}

/// The live customers of the job's company holding each of `emails`.
async fn holders(state: &AppState, job: &Job, emails: &[String]) -> Result<ByEmail, ImportError> {
    let mut held = ByEmail::new();
    if emails.is_empty() {
        return Ok(held);
    }
    let marks: Vec<String> = (2..emails.len() + 2).map(|n| format!("${n}")).collect();
    let sql = format!(
        "SELECT id, lower(email) AS email FROM customers \
         WHERE company_id = $1 AND deleted = 0 AND lower(email) IN ({})",
        marks.join(", ")
    );
    let mut query = sqlx::query(&sql).bind(job.company_id.to_string());
    for email in emails {
        query = query.bind(email.as_str());
    }
    for row in query.fetch_all(state.pool()).await? {
        let id: String = row.try_get("id")?;
        let email: String = row.try_get("email")?;
        if let Ok(id) = id.parse() {
            held.entry(email).or_default().push(id);
        }
    }
    Ok(held)
}
