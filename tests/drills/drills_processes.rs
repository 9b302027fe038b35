//! Drills 1 and 6: crm processes killed -9 under load, and several APIs,
//! relays and workers at once.
use std::time::{Duration, Instant};

use crate::check::Expect;
use crate::procs::{Crm, Topology};
use crate::services::Services;
use crate::{broken, revocation, Run, Settings};

#[derive(Clone, Copy)]
enum Which {
    Api,
    Relay,
    Worker,
}

fn pick(run: &mut Run, which: Which) -> &mut Crm {
    match which {
        Which::Api => &mut run.stack.apis[0],
        Which::Relay => &mut run.stack.relays[0],
        Which::Worker => &mut run.stack.workers[0],
    }
}

/// Kills one process -9 under load and starts it again after the outage:
/// once at 30 % of the load (short runs), or three times (at 20, 45 and
/// 70 %) so that one kill is likely to land mid-batch.
async fn kill_one(
    services: &mut Services,
    settings: &Settings,
    id: &str,
    which: Which,
) -> crate::check::Report {
    // Two APIs when one is killed, so that clients have somewhere to retry.
    let topology = match which {
        Which::Api => Topology {
            apis: 2,
            relays: 1,
            workers: 1,
        },
        _ => Topology::ONE_EACH,
    };
    let mut run = match Run::start(services, id, topology).await {
        Ok(run) => run,
        Err(e) => return broken(id, e),
    };
    let load = run.load(settings.spec());
    let kills: &[f64] = if settings.short {
        &[0.3]
    } else {
        &[0.2, 0.45, 0.7]
    };
    let mut at = vec![];
    let mut name = String::new();
    for fraction in kills {
        run.until(settings.at(*fraction)).await;
        at.push(format!("{:.1}", run.secs()));
        let crm = pick(&mut run, which);
        crm.process.kill9();
        name = crm.process.name.clone();
        tokio::time::sleep(settings.outage()).await;
        let restarting = Instant::now();
        if let Err(e) = pick(&mut run, which).restart().await {
            run.report.fail(format!("{name} did not come back: {e}"));
            break;
        }
        if restarting.elapsed() > Duration::from_secs(10) {
            run.report.note(format!(
                "{name} took {:.1} s to be ready again",
                restarting.elapsed().as_secs_f64()
            ));
        }
    }
    run.report.note(format!(
        "{name} killed -9 at {} s, restarted {:.0} s later each time",
        at.join(", "),
        settings.outage().as_secs_f64()
    ));
    let outcome = load.await.expect("load task");
    run.finish(outcome, &Expect::default()).await
}

pub async fn kill_api(services: &mut Services, settings: &Settings) -> crate::check::Report {
    kill_one(services, settings, "1a", Which::Api).await
}

pub async fn kill_relay(services: &mut Services, settings: &Settings) -> crate::check::Report {
    kill_one(services, settings, "1b", Which::Relay).await
}

pub async fn kill_worker(services: &mut Services, settings: &Settings) -> crate::check::Report {
    kill_one(services, settings, "1c", Which::Worker).await
}

/// Two API processes (each client alternates between them), two relays (one
/// holds the lease, the other waits) and two worker processes on the same
/// durable consumers. Early on, sessions revoked through API process A must
/// be refused by B at once; halfway, the relay that holds the lease is
/// killed -9 and not restarted, and the other must take over.
pub async fn two_of_each(services: &mut Services, settings: &Settings) -> crate::check::Report {
    let id = "6";
    let topology = Topology {
        apis: 2,
        relays: 2,
        workers: 2,
    };
    let mut run = match Run::start(services, id, topology).await {
        Ok(run) => run,
        Err(e) => return broken(id, e),
    };
    let load = run.load(settings.spec());
    run.until(settings.at(0.2)).await;
    let bases = run.stack.bases();
    match revocation::check(&bases[0], &bases[1], &run.target).await {
        Ok(notes) => run.report.note(notes),
        Err(e) => run.report.fail(format!("session revocation: {e}")),
    }
    run.until(settings.at(0.5)).await;
    let holders: Vec<usize> = (0..run.stack.relays.len())
        .filter(|i| lease_takes(&run.stack.relays[*i]) > 0)
        .collect();
    let [leader] = holders.as_slice() else {
        run.report.fail(format!(
            "{} relays say they hold the lease (expected one)",
            holders.len()
        ));
        let outcome = load.await.expect("load task");
        return run.finish(outcome, &Expect::default()).await;
    };
    let leader = *leader;
    let other = 1 - leader;
    let before = lease_takes(&run.stack.relays[other]);
    run.stack.relays[leader].process.kill9();
    let killed = Instant::now();
    let killed_at = run.secs();
    let mut took = None;
    while killed.elapsed() < Duration::from_secs(15) {
        if lease_takes(&run.stack.relays[other]) > before {
            took = Some(killed.elapsed());
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let (dead, heir) = (
        run.stack.relays[leader].process.name.clone(),
        run.stack.relays[other].process.name.clone(),
    );
    match took {
        Some(took) => run.report.note(format!(
            "{dead} held the lease, killed -9 at {killed_at:.1} s and left dead; {heir} took the lease {:.1} s later",
            took.as_secs_f64()
        )),
        None => run
            .report
            .fail(format!("{heir} did not take the lease within 15 s of {dead}'s death")),
    }
    let outcome = load.await.expect("load task");
    run.finish(outcome, &Expect::default()).await
}

/// How many times this relay took the lease, by its log.
fn lease_takes(relay: &Crm) -> usize {
    std::fs::read_to_string(relay.process.log())
        .map(|log| log.matches("holding the relay lease").count())
        .unwrap_or(0)
}
