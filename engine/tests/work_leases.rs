//! Leases of the work workload through the embedded API: expiry returns unfinished items,
//! heartbeats and partial results extend a lease, late results and stale epochs are refused
//! with `lease_expired` and change nothing, dead-lettering after `max_expiries`, leases across
//! a crash and restart (remaining time kept, expired ones reclaimed), discovered keys without
//! loops, rerun keeping the history, priority then age ordering, keyset pages, and 8
//! concurrent clients draining 2,000 items exactly once. Time is a `ManualClock` advanced by
//! the test; due timers run through `fire_due_timers`: nothing sleeps.

mod work_support;

use std::collections::{BTreeMap, BTreeSet};

use switchyard_engine::work::{ItemState, NewItem, Outcome, Report, WorkStats};
use work_support::{code, field, report_of, Harness, LEASE_MS, START_MS};

fn counts(stats: &WorkStats) -> (u64, u64, u64) {
    (stats.items.pending, stats.items.leased, stats.items.done)
}

#[tokio::test]
async fn lease_expiry_returns_unfinished_items_to_the_pool() {
    let h = Harness::new();
    h.add_numbered("item", 4).await;
    let first = h.client("1001").await;
    let bucket = h.lease_one(&first).await;
    h.report(&first, bucket.id, &bucket.items[..1])
        .await
        .unwrap();
    h.advance(LEASE_MS).await;
    let stats = h.work().stats().await.unwrap();
    assert_eq!(counts(&stats), (3, 0, 1), "the reported item stays done");
    assert_eq!((stats.buckets.open, stats.buckets.leased), (1, 0));
    let second = h.client("1002").await;
    let again = h.lease_one(&second).await;
    assert_eq!((again.id, again.epoch), (bucket.id, 2));
    assert_eq!(
        again.items,
        bucket.items[1..].to_vec(),
        "only the unfinished items"
    );
    assert_eq!(h.report_all(&second, &again).await.remaining, 0);
    let done = h.work().item(&bucket.items[0]).await.unwrap();
    assert_eq!(done.results[0].client_id, first.id);
    let later = h.work().item(&bucket.items[3]).await.unwrap();
    assert_eq!(later.results[0].client_id, second.id);
    assert_eq!(h.work().stats().await.unwrap().items.done, 4);
}

#[tokio::test]
async fn heartbeat_extends_the_lease() {
    let h = Harness::new();
    h.add_numbered("item", 4).await;
    let client = h.client("1001").await;
    let bucket = h.lease_one(&client).await;
    h.advance(50_000).await;
    let beat = h
        .work()
        .heartbeat(&client.token, bucket.id, Some(1))
        .await
        .unwrap();
    assert_eq!((beat.bucket_id, beat.epoch), (bucket.id, 1));
    assert_eq!(beat.lease_expires_at_ms, START_MS + 50_000 + LEASE_MS);
    assert_eq!(
        h.advance(50_000).await,
        0,
        "past the first deadline, not the new one"
    );
    assert_eq!(h.work().stats().await.unwrap().buckets.leased, 1);
    assert_eq!(h.advance(10_000).await, 1);
    assert_eq!(h.work().stats().await.unwrap().buckets.open, 1);
    let error = h
        .work()
        .heartbeat(&client.token, bucket.id, None)
        .await
        .unwrap_err();
    assert_eq!(code(error), "lease_expired");
}

#[tokio::test]
async fn late_result_from_the_old_holder_is_rejected_with_lease_expired() {
    let h = Harness::new();
    h.add_numbered("item", 4).await;
    let old = h.client("1001").await;
    let bucket = h.lease_one(&old).await;
    // The deadline has passed but the timer has not run yet: already too late.
    h.clock.advance_ms(LEASE_MS);
    assert_eq!(
        code(h.report(&old, bucket.id, &bucket.items).await.unwrap_err()),
        "lease_expired"
    );
    assert_eq!(h.work().stats().await.unwrap().items.done, 0);
    assert_eq!(h.engine().fire_due_timers().await, 1);
    let new = h.client("1002").await;
    let again = h.lease_one(&new).await;
    assert_eq!(again.epoch, 2);
    h.report(&new, bucket.id, &again.items[..1]).await.unwrap();
    // The old holder's late result and heartbeat change nothing.
    assert_eq!(
        code(h.report(&old, bucket.id, &bucket.items).await.unwrap_err()),
        "lease_expired"
    );
    let error = h
        .work()
        .heartbeat(&old.token, bucket.id, None)
        .await
        .unwrap_err();
    assert_eq!(code(error), "lease_expired");
    let item = h.work().item(&bucket.items[0]).await.unwrap();
    assert_eq!(item.results.len(), 1);
    assert_eq!(item.results[0].client_id, new.id);
    assert_eq!(
        h.work().item(&bucket.items[1]).await.unwrap().state,
        ItemState::Leased
    );
    // A stale epoch from the current holder is fenced off too.
    let stale = Report {
        epoch: Some(1),
        ..report_of(&again.items[1..], Outcome::No)
    };
    let error = h
        .work()
        .report(&new.token, bucket.id, stale)
        .await
        .unwrap_err();
    assert_eq!(code(error), "lease_expired");
    let stats = h.work().stats().await.unwrap();
    assert_eq!(stats.clients[0].rejected_updates, 3);
    assert_eq!(stats.clients[1].rejected_updates, 1);
    assert_eq!(stats.items.done, 1);
    let fresh = Report {
        epoch: Some(2),
        ..report_of(&again.items[1..], Outcome::No)
    };
    let outcome = h.work().report(&new.token, bucket.id, fresh).await.unwrap();
    assert_eq!(outcome.remaining, 0);
}

#[tokio::test]
async fn bucket_is_dead_lettered_after_max_expiries() {
    let mut h = Harness::new();
    let keys = h.add_numbered("item", 4).await;
    let client = h.client("1001").await;
    for round in 1..=3 {
        let bucket = h.lease_one(&client).await;
        assert_eq!((bucket.id, bucket.epoch), (1, round));
        if round == 1 {
            h.report(&client, bucket.id, &bucket.items[..1])
                .await
                .unwrap();
        }
        h.advance(LEASE_MS).await;
    }
    h.restart();
    let stats = h.work().stats().await.unwrap();
    assert_eq!(
        (stats.buckets.open, stats.buckets.leased, stats.buckets.dead),
        (0, 0, 1)
    );
    assert_eq!(counts(&stats), (3, 0, 1));
    assert_eq!(stats.clients[0].buckets_expired, 3);
    assert!(
        h.lease(&client, 5).await.is_empty(),
        "dead-lettered items are parked"
    );
    let page = h.work().dead_letters(None, 10).await.unwrap();
    assert_eq!(page.items.len(), 1);
    assert_eq!(page.next, None);
    let dead = &page.items[0];
    assert_eq!(
        (dead.bucket_id, dead.expiries, dead.last_client_id),
        (1, 3, client.id)
    );
    assert_eq!(dead.items.len(), 3);
    assert_eq!(dead.dead_at_ms, START_MS + 3 * LEASE_MS);
    // An operator returns them to the pool; they form a new bucket.
    assert_eq!(h.work().requeue_dead(1).await.unwrap(), 3);
    assert_eq!(
        code(h.work().requeue_dead(1).await.unwrap_err()),
        "not_found"
    );
    let bucket = h.lease_one(&client).await;
    assert_eq!((bucket.id, bucket.epoch), (2, 1));
    assert_eq!(bucket.items, dead.items);
    h.report_all(&client, &bucket).await;
    for key in &keys {
        assert_eq!(h.work().item(key).await.unwrap().results.len(), 1);
    }
    assert_eq!(h.work().stats().await.unwrap().buckets.dead, 0);
}

#[tokio::test]
async fn restart_keeps_leases_with_their_remaining_time_and_reclaims_expired_ones() {
    let mut h = Harness::new();
    h.add_numbered("item", 8).await;
    let client = h.client("1001").await;
    let a = h.lease_one(&client).await; // deadline +60 s
    h.clock.advance_ms(30_000);
    let b = h.lease_one(&client).await; // deadline +90 s
    h.clock.advance_ms(5_000);
    h.report(&client, b.id, &b.items[..2]).await.unwrap(); // deadline +95 s
    h.engine().checkpoint().unwrap(); // part of the state in sled, the rest only in the WAL
    h.clock.advance_ms(5_000);
    h.work().heartbeat(&client.token, a.id, None).await.unwrap(); // deadline +100 s

    h.restart();
    let stats = h.work().stats().await.unwrap();
    assert_eq!(counts(&stats), (0, 6, 2));
    assert_eq!(stats.buckets.leased, 2);
    assert_eq!(h.advance(54_000).await, 0, "at +94 s nothing is due");
    assert_eq!(
        h.advance(1_000).await,
        1,
        "at +95 s bucket b's lease expires"
    );
    let stats = h.work().stats().await.unwrap();
    assert_eq!((stats.buckets.leased, stats.buckets.open), (1, 1));
    // The token still works after the restart; a's lease has its 5 s left.
    assert_eq!(h.report_all(&client, &a).await.remaining, 0);

    // b is leased again, then the engine is down while its new lease runs out.
    let other = h.client("1002").await;
    let again = h.lease_one(&other).await;
    assert_eq!((again.id, again.epoch, again.items.len()), (b.id, 2, 2));
    h.stop();
    h.clock.advance_ms(10 * LEASE_MS);
    h.start();
    assert_eq!(
        h.engine().fire_due_timers().await,
        1,
        "expired while down, reclaimed after"
    );
    let stats = h.work().stats().await.unwrap();
    assert_eq!(counts(&stats), (2, 0, 6));
    assert_eq!((stats.buckets.open, stats.buckets.leased), (1, 0));
    assert_eq!(stats.clients[0].buckets_expired, 1);
    assert_eq!(stats.clients[1].buckets_expired, 1);
    // Results acknowledged before the crash are all there, in order.
    for key in &b.items[..2] {
        let item = h.work().item(key).await.unwrap();
        assert_eq!((item.state, item.results.len()), (ItemState::Done, 1));
    }
    assert_eq!(
        code(h.report(&other, b.id, &again.items).await.unwrap_err()),
        "lease_expired"
    );
}

#[tokio::test]
async fn discovered_keys_are_added_once_without_loops() {
    let h = Harness::new();
    h.add(&["a", "b", "c", "d"]).await;
    let client = h.client("1001").await;
    let bucket = h.lease_one(&client).await;
    assert_eq!(bucket.items, ["a", "b", "c", "d"]);
    let discover = |keys: &[&str], discovered: &[&str]| Report {
        discovered: discovered.iter().map(|key| key.to_string()).collect(),
        ..report_of(
            &keys.iter().map(|key| key.to_string()).collect::<Vec<_>>(),
            Outcome::Yes,
        )
    };
    let report = discover(&["a", "b"], &["a", "x", "y", "x", "b"]);
    h.work()
        .report(&client.token, bucket.id, report)
        .await
        .unwrap();
    let report = discover(&["c", "d"], &["x", "z", "c"]);
    h.work()
        .report(&client.token, bucket.id, report)
        .await
        .unwrap();
    let stats = h.work().stats().await.unwrap();
    assert_eq!(counts(&stats), (3, 0, 4), "x, y, z added once each");
    let next = h.lease_one(&client).await;
    assert_eq!(next.items, ["x", "y", "z"]);
    // Everything they discover is known already (done or pending): the loop ends.
    let report = discover(&["x", "y", "z"], &["a", "x", "d", "z"]);
    h.work()
        .report(&client.token, next.id, report)
        .await
        .unwrap();
    assert!(h.lease(&client, 1).await.is_empty());
    assert_eq!(counts(&h.work().stats().await.unwrap()), (0, 0, 7));
    let bad = discover(&[], &[""]);
    let error = h
        .work()
        .report(&client.token, next.id, bad)
        .await
        .unwrap_err();
    assert_eq!(field(error).as_deref(), Some("discovered"));
}

#[tokio::test]
async fn rerun_returns_a_done_item_to_the_pool_and_keeps_its_history() {
    let mut h = Harness::new();
    h.add(&["k"]).await;
    let first = h.client("1001").await;
    let bucket = h.lease_one(&first).await;
    assert_eq!(
        code(h.work().rerun("k").await.unwrap_err()),
        "not_done",
        "leased"
    );
    h.work()
        .report(
            &first.token,
            bucket.id,
            report_of(&bucket.items, Outcome::Yes),
        )
        .await
        .unwrap();
    let rerun = h.work().rerun("k").await.unwrap();
    assert_eq!((rerun.state, rerun.results.len()), (ItemState::Pending, 1));
    assert_eq!(
        code(h.work().rerun("k").await.unwrap_err()),
        "not_done",
        "pending"
    );
    assert_eq!(code(h.work().rerun("nope").await.unwrap_err()), "not_found");
    h.clock.advance_ms(1_000);
    let second = h.client("1002").await;
    let bucket = h.lease_one(&second).await;
    assert_eq!((bucket.id, bucket.epoch, bucket.items.len()), (2, 1, 1));
    let mut report = report_of(&bucket.items, Outcome::No);
    report.results[0].detail = Some("changed its settings".into());
    h.work()
        .report(&second.token, bucket.id, report)
        .await
        .unwrap();
    h.restart();
    let item = h.work().item("k").await.unwrap();
    assert_eq!(item.state, ItemState::Done);
    let history: Vec<(Outcome, u64, u64)> = item
        .results
        .iter()
        .map(|result| (result.outcome, result.client_id, result.at_ms))
        .collect();
    assert_eq!(
        history,
        vec![
            (Outcome::Yes, first.id, START_MS),
            (Outcome::No, second.id, START_MS + 1_000)
        ],
        "the whole history, newest last"
    );
    assert_eq!(
        item.results[1].detail.as_deref(),
        Some("changed its settings")
    );
}

#[tokio::test]
async fn higher_priority_first_then_oldest_first() {
    let h = Harness::with(|work| work.formation_spread = 1);
    let item = |key: &str, priority: Option<i64>| NewItem {
        key: key.into(),
        priority,
    };
    h.work()
        .add_items(vec![
            item("low-0", None),
            item("low-1", Some(-5)),
            item("old-0", None),
            item("old-1", None),
            item("old-2", None),
            item("urgent", Some(10)),
            item("old-3", None),
            item("old-4", None),
        ])
        .await
        .unwrap();
    let client = h.client("1001").await;
    let buckets = h.lease(&client, 3).await;
    assert_eq!(buckets.len(), 2);
    // Bucket 1: the urgent item, then 3 picked at random among the oldest 4 (bucket_size ×
    // formation_spread) of priority 0.
    let first: BTreeSet<&str> = buckets[0].items.iter().map(String::as_str).collect();
    assert!(first.contains("urgent"), "{first:?}");
    let oldest = ["low-0", "old-0", "old-1", "old-2"];
    assert!(
        first
            .iter()
            .all(|key| *key == "urgent" || oldest.contains(key)),
        "{first:?}"
    );
    // Bucket 2: the rest of priority 0, then the one below.
    let second: BTreeSet<&str> = buckets[1].items.iter().map(String::as_str).collect();
    assert!(second.contains("low-1"), "{second:?}");
    let all: BTreeSet<&str> = first.union(&second).copied().collect();
    assert_eq!(all.len(), 8);
}

#[tokio::test]
async fn items_are_listed_by_state_in_keyset_pages() {
    let h = Harness::new();
    let keys = h.add_numbered("item", 10).await;
    let client = h.client("1001").await;
    let bucket = h.lease_one(&client).await;
    h.report(&client, bucket.id, &bucket.items[..1])
        .await
        .unwrap();
    let mut listed = BTreeMap::new();
    for state in [
        None,
        Some(ItemState::Pending),
        Some(ItemState::Leased),
        Some(ItemState::Done),
    ] {
        let mut cursor = None;
        let mut seen = Vec::new();
        loop {
            let page = h.work().items(state, cursor, 3).await.unwrap();
            assert!(page.items.len() <= 3);
            seen.extend(page.items.into_iter().map(|item| (item.key, item.state)));
            match page.next {
                Some(next) => cursor = Some(next),
                None => break,
            }
        }
        listed.insert(format!("{state:?}"), seen);
    }
    let all: Vec<String> = listed["None"].iter().map(|(key, _)| key.clone()).collect();
    assert_eq!(all, keys, "every item once, in the order added");
    let count = |state: ItemState| listed[&format!("{:?}", Some(state))].len();
    assert_eq!(
        (
            count(ItemState::Pending),
            count(ItemState::Leased),
            count(ItemState::Done)
        ),
        (6, 3, 1)
    );
    assert!(listed[&format!("{:?}", Some(ItemState::Leased))]
        .iter()
        .all(|(key, state)| *state == ItemState::Leased && bucket.items.contains(key)));
    let empty = h
        .work()
        .items(Some(ItemState::Done), Some(9), 3)
        .await
        .unwrap();
    assert_eq!((empty.items.len(), empty.next), (0, None));
}

#[tokio::test]
async fn adding_items_counts_duplicates_and_checks_keys() {
    let h = Harness::new();
    let item = |key: &str, priority: Option<i64>| NewItem {
        key: key.into(),
        priority,
    };
    let added = h
        .work()
        .add_items(vec![
            item("a", None),
            item("b", Some(3)),
            item("a", Some(9)),
        ])
        .await
        .unwrap();
    assert_eq!((added.added, added.duplicates), (2, 1));
    let added = h
        .work()
        .add_items(vec![item("a", None), item("c", None)])
        .await
        .unwrap();
    assert_eq!((added.added, added.duplicates), (1, 1));
    assert_eq!(h.work().item("b").await.unwrap().priority, 3);
    assert_eq!(
        h.work().item("a").await.unwrap().priority,
        0,
        "the first add stands"
    );
    let long = "k".repeat(129);
    for (items, expected) in [
        (vec![item("", None)], "items"),
        (vec![item(&long, None)], "items"),
        (vec![item("tab\there", None)], "items"),
        (vec![item("ok", Some(i64::from(i32::MAX) + 1))], "priority"),
        (
            (0..18_001).map(|i| item(&format!("n{i}"), None)).collect(),
            "items",
        ),
    ] {
        let error = h.work().add_items(items).await.unwrap_err();
        assert_eq!(field(error).as_deref(), Some(expected));
    }
    assert_eq!(
        code(h.work().item("missing").await.unwrap_err()),
        "not_found"
    );
    assert_eq!(counts(&h.work().stats().await.unwrap()), (3, 0, 0));
    // A full request of 18 000 long keys is split into several records and all added.
    let many: Vec<NewItem> = (0..18_000)
        .map(|i| item(&format!("{i:0>120}"), None))
        .collect();
    let added = h.work().add_items(many).await.unwrap();
    assert_eq!((added.added, added.duplicates), (18_000, 0));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn eight_concurrent_clients_drain_two_thousand_items_exactly_once() {
    const CLIENTS: usize = 8;
    const ITEMS: usize = 2_000;
    let h = Harness::configured(|config| {
        config.shards = 2;
        config
            .section_mut::<switchyard_engine::work::WorkConfig>()
            .bucket_size = 25;
        config
            .section_mut::<switchyard_engine::work::WorkConfig>()
            .lease_seconds = 3_600;
        config
            .section_mut::<switchyard_engine::work::WorkConfig>()
            .seed = None;
    });
    let keys = h.add_numbered("item", ITEMS).await;
    let mut tasks = Vec::new();
    for worker in 0..CLIENTS {
        let engine = h.engine().clone();
        tasks.push(tokio::spawn(async move {
            let work = engine.work();
            let client = work
                .register(work_support::registration(&format!("drain-{worker}")), None)
                .await
                .unwrap();
            let mut grants = Vec::new();
            let mut reported = Vec::new();
            loop {
                // No lease expires in this test, so an empty answer means nothing is left.
                let buckets = work.lease(&client.token, 3).await.unwrap();
                if buckets.is_empty() {
                    break;
                }
                for bucket in buckets {
                    grants.push((bucket.id, bucket.epoch, client.client_id));
                    let (first, rest) = bucket.items.split_at(bucket.items.len() / 2);
                    for part in [first, rest] {
                        work.report(&client.token, bucket.id, report_of(part, Outcome::Yes))
                            .await
                            .unwrap();
                    }
                    reported.extend(bucket.items);
                }
            }
            (grants, reported)
        }));
    }
    let mut grants = Vec::new();
    let mut reported = Vec::new();
    for task in tasks {
        let (g, r) = task.await.unwrap();
        grants.extend(g);
        reported.extend(r);
    }
    let buckets: BTreeSet<u64> = grants.iter().map(|(bucket, _, _)| *bucket).collect();
    assert_eq!(
        buckets.len(),
        grants.len(),
        "no bucket was ever granted twice"
    );
    assert!(grants.iter().all(|(_, epoch, _)| *epoch == 1));
    assert_eq!(grants.len(), ITEMS / 25);
    let unique: BTreeSet<&String> = reported.iter().collect();
    assert_eq!(
        (reported.len(), unique.len()),
        (ITEMS, ITEMS),
        "every item exactly once"
    );
    let stats = h.work().stats().await.unwrap();
    assert_eq!(counts(&stats), (0, 0, ITEMS as u64));
    let completed: u64 = stats
        .clients
        .iter()
        .map(|client| client.buckets_completed)
        .sum();
    assert_eq!(completed, (ITEMS / 25) as u64);
    for key in keys.iter().step_by(97) {
        assert_eq!(h.work().item(key).await.unwrap().results.len(), 1);
    }
    let mut cursor = None;
    let mut done = 0;
    loop {
        let page = h
            .work()
            .items(Some(ItemState::Done), cursor, 500)
            .await
            .unwrap();
        done += page
            .items
            .iter()
            .filter(|item| item.results.len() == 1)
            .count();
        match page.next {
            Some(next) => cursor = Some(next),
            None => break,
        }
    }
    assert_eq!(done, ITEMS);
}
