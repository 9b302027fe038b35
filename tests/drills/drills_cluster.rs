//! Drill 11: the system on a 3-node NATS cluster, the stream and its
//! consumers replicated on all three (`CRM_NATS_REPLICAS=3`). Under load one
//! node (not the stream's leader) is killed -9 and restarted; later the
//! stream's leader is killed -9 and restarted. The crm processes know all
//! three servers (`NATS_URL` lists them) and must carry on through both.
use std::time::{Duration, Instant};

use crate::check::{Expect, Report};
use crate::cluster::{NatsCluster, Probe};
use crate::procs::Topology;
use crate::services::Services;
use crate::{broken, Run, Settings};

const REPLICAS: usize = 3;

pub async fn cluster(services: &mut Services, settings: &Settings) -> Report {
    let id = "11";
    let mut cluster = match NatsCluster::new(&services.root, &services.nats) {
        Ok(cluster) => cluster,
        Err(e) => return broken(id, e),
    };
    if let Err(e) = cluster.start().await {
        return broken(id, format!("the NATS cluster did not form: {e}"));
    }
    let overrides = [
        ("NATS_URL", cluster.url()),
        ("CRM_NATS_REPLICAS", REPLICAS.to_string()),
    ];
    let mut run = match Run::start_with(services, id, Topology::ONE_EACH, &overrides).await {
        Ok(run) => run,
        Err(e) => return broken(id, e),
    };
    // Two faults with a recovery each need more than the 4 s of a short run.
    let mut spec = settings.spec();
    spec.duration = spec.duration.max(Duration::from_secs(12));
    let at = |fraction: f64| spec.duration.mul_f64(fraction);
    let (first, second) = (at(0.2), at(0.55));
    let load = run.load(spec.clone());

    // The stream and the consumers exist once the relay and the workers
    // ran: they must be replicated on every node.
    run.until(Duration::from_secs(1).min(first)).await;
    let stream = run.stack.stream.clone();
    let probe = match Probe::connect(&cluster.url()).await {
        Ok(probe) => probe,
        Err(e) => {
            run.report.fail(e);
            let outcome = load.await.expect("load task");
            return run.finish(outcome, &Expect::default()).await;
        }
    };
    match probe.placement_retried(&stream).await {
        Ok(p) => {
            if p.stream_replicas != REPLICAS {
                run.report.fail(format!(
                    "the stream has {} replicas, not {REPLICAS}",
                    p.stream_replicas
                ));
            }
            let wrong: Vec<String> = p
                .consumers
                .iter()
                .filter(|(_, r)| *r != REPLICAS)
                .map(|(name, r)| format!("{name} R{r}"))
                .collect();
            if p.consumers.is_empty() || !wrong.is_empty() {
                run.report.fail(format!(
                    "consumers not all R{REPLICAS}: {} consumers, {}",
                    p.consumers.len(),
                    wrong.join(", ")
                ));
            } else {
                run.report.note(format!(
                    "stream and {} consumers R{REPLICAS}",
                    p.consumers.len()
                ));
            }
        }
        Err(e) => run.report.fail(format!("stream placement: {e}")),
    }

    // 1. A node that does not lead the stream.
    run.until(first).await;
    let leader = probe.leader(&stream).await;
    let follower = (0..cluster.nodes.len())
        .find(|i| Some(&cluster.nodes[*i].name) != leader.as_ref())
        .unwrap_or(0);
    cluster.nodes[follower].process.kill9();
    let killed_at = run.secs();
    tokio::time::sleep(settings.outage()).await;
    match cluster.restart(follower).await {
        Ok(took) => run.report.note(format!(
            "follower {} killed -9 at {killed_at:.1} s, restarted after {:.0} s, current again {:.1} s later",
            cluster.nodes[follower].name,
            settings.outage().as_secs_f64(),
            took.as_secs_f64()
        )),
        Err(e) => run.report.fail(format!("the follower did not come back: {e}")),
    }

    // 2. The stream's leader.
    run.until(second).await;
    match probe.placement_retried(&stream).await.map(|p| p.leader) {
        Ok(Some(name)) => match cluster.index_of(&name) {
            Some(i) => kill_leader(&mut run, &mut cluster, &probe, i, &stream, settings).await,
            None => run.report.fail(format!("unknown stream leader {name:?}")),
        },
        Ok(None) => run.report.fail("the stream has no leader"),
        Err(e) => run.report.fail(format!("stream leader: {e}")),
    }

    let outcome = load.await.expect("load task");
    // "Relay and workers continue": none of them gave up on the way.
    for crm in run
        .stack
        .apis
        .iter_mut()
        .chain(run.stack.relays.iter_mut())
        .chain(run.stack.workers.iter_mut())
    {
        if !crm.process.running() {
            run.report
                .fail(format!("{} exited during the drill", crm.process.name));
        }
    }
    let report = run.finish(outcome, &Expect::default()).await;
    drop(cluster);
    report
}

/// Kills the stream's leader (node `i`) -9, measures how long the stream
/// goes without a leader, and restarts the node.
async fn kill_leader(
    run: &mut Run,
    cluster: &mut NatsCluster,
    probe: &Probe,
    i: usize,
    stream: &str,
    settings: &Settings,
) {
    let name = cluster.nodes[i].name.clone();
    cluster.nodes[i].process.kill9();
    let killed = Instant::now();
    let killed_at = run.secs();
    let mut elected = None;
    while killed.elapsed() < Duration::from_secs(30) {
        if let Some(new) = probe.leader(stream).await.filter(|l| *l != name) {
            elected = Some((new, killed.elapsed()));
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let Some((new, took)) = elected else {
        run.report.fail(format!(
            "no new stream leader within 30 s of killing {name}"
        ));
        return;
    };
    let outage = settings.outage().saturating_sub(killed.elapsed());
    tokio::time::sleep(outage).await;
    match cluster.restart(i).await {
        Ok(current) => run.report.note(format!(
            "stream leader {name} killed -9 at {killed_at:.1} s: {new} elected {:.1} s later; {name} restarted after {:.0} s, current again {:.1} s later",
            took.as_secs_f64(),
            settings.outage().as_secs_f64(),
            current.as_secs_f64()
        )),
        Err(e) => run.report.fail(format!("the old leader did not come back: {e}")),
    }
}
