//! External ids in an import. `upsert_on=external_id`: a row whose
//! `external_id` a customer of the company holds updates that customer; any
//! other row creates one, rows of one batch sharing a new external id
//! becoming one customer. And for every create: its external id must be
//! free, and its claim is written in the same transaction as the customer.
use commands::external_ids::{self, Held};
use commands::imports::{self, Job, RowError};
use domain::external_id_claim::{ExternalIdClaim, ExternalIdClaimEvent};
use domain::values::ExternalId;
use std::collections::HashMap;

use super::{change_of, ImportError, Plan, Valid};
use crate::state::AppState;

async fn held(
    state: &AppState,
    job: &Job,
    ids: Vec<&ExternalId>,
) -> Result<HashMap<String, Held>, ImportError> {
    Ok(external_ids::holders(state.pool(), job.company_id, &ids).await?)
}

pub(super) async fn plan_on_external_id(
    state: &AppState,
    job: &Job,
    valid: Vec<Valid>,
) -> Result<Plan, ImportError> {
    let ids = valid
        .iter()
        .filter_map(|v| v.details.external_id.as_ref())
        .collect();
    let held = held(state, job, ids).await?;
    let mut plan = Plan::default();
    // New external ids of this batch: the index of the create that has each.
    let mut created: HashMap<String, usize> = HashMap::new();
    for row in valid {
        let Some(key) = row
            .details
            .external_id
            .as_ref()
            .map(|e| e.as_str().to_owned())
        else {
            plan.creates.push((row.line, row.details));
            continue;
        };
        let own = imports::row_customer_id(job.id, row.line);
        match held.get(&key).and_then(|h| h.holder) {
            // A customer an earlier attempt of this job created: skipped there.
            Some(holder) if holder != own => {
                let change = change_of(&row);
                plan.updates.push((row.line, holder, change));
            }
            _ => match created.get(&key) {
                Some(&index) => {
                    change_of(&row).apply_to(&mut plan.creates[index].1);
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

/// The claim a create writes: its stream, sequence and event.
pub(super) struct NewClaim {
    pub id: String,
    pub sequence: i64,
    pub event: ExternalIdClaimEvent,
}

/// Checks the external ids of the plan's creates: a create whose id another
/// customer holds, or an earlier row of the batch takes, becomes a row
/// error. Returns the claim each remaining create writes, by line (none for
/// a create an earlier attempt of the job wrote, claim included).
pub(super) async fn claims(
    state: &AppState,
    job: &Job,
    plan: &mut Plan,
) -> Result<HashMap<i64, NewClaim>, ImportError> {
    let ids = plan
        .creates
        .iter()
        .filter_map(|(_, details)| details.external_id.as_ref())
        .collect();
    let held = held(state, job, ids).await?;
    let mut claims = HashMap::new();
    let mut taken_by: HashMap<String, i64> = HashMap::new();
    let mut refused = Vec::new();
    for (index, (line, details)) in plan.creates.iter().enumerate() {
        let Some(external_id) = &details.external_id else {
            continue;
        };
        let key = external_id.as_str().to_owned();
        let own = imports::row_customer_id(job.id, *line);
        let current = held.get(&key).copied();
        let message = match (current.and_then(|h| h.holder), taken_by.get(&key)) {
            (Some(holder), _) if holder == own => continue,
            (Some(_), _) => "another customer of the company has this external_id".to_owned(),
            (None, Some(first)) => format!("line {first} has this external_id too"),
            (None, None) => {
                taken_by.insert(key, *line);
                claims.insert(
                    *line,
                    NewClaim {
                        id: ExternalIdClaim::id_of(job.company_id, external_id),
                        sequence: current.map_or(0, |h| h.sequence) + 1,
                        event: ExternalIdClaimEvent::ExternalIdClaimed {
                            company_id: job.company_id,
                            customer_id: own,
                        },
                    },
                );
                continue;
            }
        };
        refused.push(index);
        plan.errors.push(RowError {
            line: *line,
            field: Some("external_id".into()),
            message,
        });
    }
    for index in refused.into_iter().rev() {
        plan.creates.remove(index);
    }
    Ok(claims)
}
