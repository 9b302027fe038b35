//! The operator commands: rebuild, status, photo garbage collection.
use anyhow::Context;
use std::time::Duration;

use crate::config::Config;
use crate::runtime::{open_db, open_objects};

pub async fn rebuild(config: Config, name: &str) -> anyhow::Result<()> {
    let db = open_db(&config).await?;
    let views = match name {
        "all" => projections::views::all(),
        one => vec![projections::views::by_name(one).with_context(|| {
            format!("no view named {one:?}: companies, users, customers, photos or all")
        })?],
    };
    for view in views {
        let report = projections::rebuild::rebuild(&db, view.as_ref(), true).await?;
        println!(
            "rebuilt {}: {} events in {:.2}s ({:.0} events/s)",
            report.view,
            report.events,
            report.elapsed.as_secs_f64(),
            report.events_per_second()
        );
    }
    Ok(())
}

pub async fn status(config: Config) -> anyhow::Result<()> {
    let db = open_db(&config).await?;
    let status = projections::status::status(&db).await?;
    println!("events in store: {}", status.events_in_store);
    for feed in &status.feeds {
        let seconds = feed
            .lag_seconds
            .map_or_else(|| "0".to_owned(), |s| format!("{s:.1}"));
        println!(
            "{:<28} position {:>10}  lag {:>8} events  {:>8} s",
            feed.name, feed.position, feed.lag_events, seconds
        );
    }
    println!("parked poison events: {}", status.parked.len());
    for parked in &status.parked {
        println!(
            "  {} {} at {}: {}",
            parked.projection, parked.event, parked.parked_at, parked.error
        );
    }
    Ok(())
}

pub async fn photos_gc(config: Config, dry_run: bool, grace_secs: u64) -> anyhow::Result<()> {
    let db = open_db(&config).await?;
    let store = open_objects(&config).await?;
    let report = commands::objects::gc::collect(
        &db,
        store.as_ref(),
        Duration::from_secs(grace_secs),
        dry_run,
    )
    .await
    .map_err(anyhow::Error::msg)?;
    let verb = if dry_run { "would delete" } else { "deleted" };
    for key in &report.unreferenced {
        println!("{verb} {key}");
    }
    println!(
        "scanned {} objects: {} referenced, {} unreferenced but younger than {}s, {} {verb}",
        report.scanned,
        report.referenced,
        report.kept_young,
        grace_secs,
        report.unreferenced.len()
    );
    Ok(())
}
