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
        match held.get(&key) {
            Some(&(id, 1)) => {
                let change = change_of(&row);
                plan.updates.push((row.line, id, change));
            }
            Some(&(_, holders)) => plan.errors.push(RowError {
                line: row.line,
                field: Some("email".into()),
                message: format!("{holders} customers have this email; upsert needs exactly one"),
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

/// For each of `emails` held by live customers of the job's company: one of
/// them, and how many there are.
async fn holders(state: &AppState, job: &Job, emails: &[String]) -> Result<ByEmail, ImportError> {
    let mut held = ByEmail::new();
    if emails.is_empty() {
        return Ok(held);
    }
    let holding = "FROM customers c WHERE c.company_id = $1 AND c.deleted = 0 \
                   AND lower(c.email) = wanted_key";
    let sql = format!(
        "{} SELECT email, id, holders FROM (SELECT wanted_key AS email, \
         (SELECT min(c.id) {holding}) AS id, (SELECT count(*) {holding}) AS holders \
         FROM wanted) AS held WHERE holders > 0",
        commands::db::wanted_keys(2, emails.len())
    );
    let mut query = sqlx::query(&sql).bind(job.company_id.to_string());
    for email in emails {
        query = query.bind(email.as_str());
    }
    for row in query.fetch_all(state.pool()).await? {
        let id: String = row.try_get("id")?;
        let email: String = row.try_get("email")?;
        let holders: i64 = row.try_get("holders")?;
        if let Ok(id) = id.parse() {
            held.insert(email, (id, holders));
        }
    }
    Ok(held)
}
