//! The original DM-check design's test-case list (its section 7), one test per case, named
//! after it, through the embedded API `engine.work()`: registration, bucket fetch, bucket
//! update, one id used by two clients, concurrency, stats. Time is a `ManualClock`; lease
//! expiry runs through `fire_due_timers`, so nothing sleeps. Buckets hold 4 items, leases last
//! 60 s, a bucket is dead-lettered after 3 expiries (`WorkConfig::for_tests`).

mod work_support;

use std::collections::{BTreeMap, BTreeSet};

use switchyard_engine::work::{ItemState, Outcome, Registration};
use work_support::{
    abandon_after_polls, code, field, join_all, registration, report_of, secret, Client, Harness,
    LEASE_MS,
};

// ---- 7.1 Registration ----

#[tokio::test]
async fn registering_for_the_first_time_with_a_valid_screen_name_and_id() {
    let h = Harness::new();
    let registered = h
        .work()
        .register(
            Registration {
                screen_name: "dora".into(),
                external_id: secret("1001"),
            },
            None,
        )
        .await
        .unwrap();
    assert!(registered.created);
    assert_eq!(registered.client_id, 1);
    assert!(registered.token.starts_with("swc_"));
    assert_eq!(h.work().authenticate(&registered.token).await.unwrap(), 1);
    let stats = h.work().stats().await.unwrap();
    assert_eq!(stats.clients.len(), 1);
    let client = &stats.clients[0];
    assert_eq!((client.client_id, client.screen_name.as_str()), (1, "dora"));
    assert!(client.active);
    assert_eq!(client.last_seen_at_ms, Some(h.now_ms()));
}

#[tokio::test]
async fn re_registering_after_unregistering() {
    let h = Harness::new();
    let first = h.client("1001").await;
    h.work().unregister(&first.token).await.unwrap();
    assert!(!h.work().stats().await.unwrap().clients[0].active);
    let again = h.work().register(registration("1001"), None).await.unwrap();
    assert!(!again.created, "a known external_id is the same client");
    assert_eq!(again.client_id, first.id);
    assert_ne!(again.token, first.token);
    assert_eq!(
        code(h.work().authenticate(&first.token).await.unwrap_err()),
        "unauthenticated"
    );
    assert_eq!(h.work().authenticate(&again.token).await.unwrap(), first.id);
    assert!(h.work().stats().await.unwrap().clients[0].active);
}

#[tokio::test]
async fn re_registering_without_unregistering() {
    let h = Harness::new();
    h.add_numbered("item", 4).await;
    let first = h.client("1001").await;
    let bucket = h.lease_one(&first).await;
    let again: Client = h
        .work()
        .register(registration("1001"), None)
        .await
        .unwrap()
        .into();
    assert_eq!(again.id, first.id);
    // The old token stops working; the client (and its lease) carries on under the new one.
    assert_eq!(
        code(
            h.report(&first, bucket.id, &bucket.items)
                .await
                .unwrap_err()
        ),
        "unauthenticated"
    );
    assert_eq!(h.report_all(&again, &bucket).await.remaining, 0);
    let stats = h.work().stats().await.unwrap();
    assert_eq!(stats.clients.len(), 1);
    assert_eq!(stats.clients[0].buckets_completed, 1);
}

#[tokio::test]
async fn registering_without_any_detail() {
    let h = Harness::new();
    let valid = secret("1001");
    for (screen_name, external_id, expected) in [
        ("", valid.as_str(), "screen_name"),
        ("dora", "", "external_id"),
        ("", "", "screen_name"),
    ] {
        let error = h
            .work()
            .register(
                Registration {
                    screen_name: screen_name.into(),
                    external_id: external_id.into(),
                },
                None,
            )
            .await
            .unwrap_err();
        assert_eq!(field(error).as_deref(), Some(expected));
    }
    assert!(h.work().stats().await.unwrap().clients.is_empty());
}

#[tokio::test]
async fn registering_with_wrong_detail() {
    let h = Harness::new();
    let long_id = "9".repeat(65);
    let long_name = "n".repeat(65);
    let valid = secret("1001");
    for (screen_name, external_id, expected) in [
        ("dora", "has space, has space", "external_id"),
        ("dora", long_id.as_str(), "external_id"),
        ("dora", "semi;colon;semi;colon", "external_id"),
        // The external_id is a secret: shorter than 16 characters is refused.
        ("dora", "1001", "external_id"),
        ("dora", "fifteen-chars-1", "external_id"),
        ("   ", valid.as_str(), "screen_name"),
        ("bell\u{7}", valid.as_str(), "screen_name"),
        (long_name.as_str(), valid.as_str(), "screen_name"),
    ] {
        let error = h
            .work()
            .register(
                Registration {
                    screen_name: screen_name.into(),
                    external_id: external_id.into(),
                },
                None,
            )
            .await
            .unwrap_err();
        assert_eq!(
            field(error).as_deref(),
            Some(expected),
            "{screen_name:?} {external_id:?}"
        );
    }
    assert!(h.work().stats().await.unwrap().clients.is_empty());
}

#[tokio::test]
async fn registration_dos_attack_is_rate_limited() {
    let h = Harness::with(|work| work.registrations_per_minute_per_source = 5);
    let attacker: std::net::IpAddr = "203.0.113.7".parse().unwrap();
    let other: std::net::IpAddr = "198.51.100.1".parse().unwrap();
    for i in 0..5 {
        h.work()
            .register(registration(&format!("flood-{i}")), Some(attacker))
            .await
            .unwrap();
    }
    // Re-registering a known id counts too: the limit is on registrations per source.
    for external_id in ["flood-5", "flood-0"] {
        let error = h
            .work()
            .register(registration(external_id), Some(attacker))
            .await
            .unwrap_err();
        assert_eq!(code(error), "rate_limited");
    }
    h.work()
        .register(registration("honest"), Some(other))
        .await
        .unwrap();
    h.clock.advance_ms(60_000);
    h.work()
        .register(registration("flood-5"), Some(attacker))
        .await
        .unwrap();
    assert_eq!(h.work().stats().await.unwrap().clients.len(), 7);
}

#[tokio::test]
async fn unregistering_with_wrong_detail() {
    let h = Harness::new();
    let client = h.client("1001").await;
    let unknown = format!("swc_{}", "0".repeat(64));
    for token in [
        "",
        "garbage",
        "eyJhbGciOiJIUzI1NiJ9.e30.sig",
        unknown.as_str(),
    ] {
        assert_eq!(
            code(h.work().unregister(token).await.unwrap_err()),
            "unauthenticated"
        );
    }
    assert!(h.work().stats().await.unwrap().clients[0].active);
    h.work().unregister(&client.token).await.unwrap();
    // Unregistering twice: the token is gone.
    assert_eq!(
        code(h.work().unregister(&client.token).await.unwrap_err()),
        "unauthenticated"
    );
}

#[tokio::test]
async fn client_terminating_before_the_server_responds() {
    let h = Harness::new();
    // The registration is queued on the first poll, then the caller goes away.
    abandon_after_polls(h.work().register(registration("1001"), None), 1).await;
    // The registration stands; registering again is the same client with a fresh token.
    let again = h.work().register(registration("1001"), None).await.unwrap();
    assert!(!again.created);
    assert_eq!(again.client_id, 1);
    assert_eq!(h.work().stats().await.unwrap().clients.len(), 1);
}

// ---- 7.2 Bucket fetch ----

#[tokio::test]
async fn registered_client_requesting_a_bucket() {
    let h = Harness::new();
    let keys = h.add_numbered("item", 10).await;
    let client = h.client("1001").await;
    let bucket = h.lease_one(&client).await;
    assert_eq!((bucket.id, bucket.epoch), (1, 1));
    assert_eq!(bucket.items.len(), 4);
    assert_eq!(bucket.lease_expires_at_ms, h.now_ms() + LEASE_MS);
    assert!(bucket.items.iter().all(|key| keys.contains(key)));
    for key in &bucket.items {
        assert_eq!(h.work().item(key).await.unwrap().state, ItemState::Leased);
    }
    let stats = h.work().stats().await.unwrap();
    assert_eq!(
        (stats.items.pending, stats.items.leased, stats.items.done),
        (6, 4, 0)
    );
    assert_eq!((stats.buckets.open, stats.buckets.leased), (0, 1));
    assert_eq!(stats.clients[0].buckets_assigned, 1);
    assert_eq!(stats.clients[0].leased_buckets, 1);
}

#[tokio::test]
async fn registered_client_requesting_multiple_buckets() {
    let h = Harness::new();
    h.add_numbered("item", 10).await;
    let client = h.client("1001").await;
    let buckets = h.lease(&client, 5).await;
    // 10 items make two full buckets and one of 2.
    let sizes: Vec<usize> = buckets.iter().map(|bucket| bucket.items.len()).collect();
    assert_eq!(sizes, vec![4, 4, 2]);
    let all: BTreeSet<&String> = buckets.iter().flat_map(|bucket| &bucket.items).collect();
    assert_eq!(all.len(), 10, "buckets are disjoint");
    assert_eq!(
        h.work().stats().await.unwrap().clients[0].buckets_assigned,
        3
    );
}

#[tokio::test]
async fn registered_client_requesting_too_many_buckets() {
    let h = Harness::with(|work| work.leased_buckets_per_client_max = 2);
    h.add_numbered("item", 40).await;
    let client = h.client("1001").await;
    for n in [11, 0, -1, i64::MAX] {
        let error = h.work().lease(&client.token, n).await.unwrap_err();
        assert_eq!(code(error), "too_many_buckets", "max_buckets {n}");
    }
    assert_eq!(
        h.lease(&client, 10).await.len(),
        2,
        "capped at what the client may hold"
    );
    assert_eq!(
        code(h.work().lease(&client.token, 1).await.unwrap_err()),
        "too_many_buckets"
    );
    assert_eq!(h.work().stats().await.unwrap().buckets.leased, 2);
}

#[tokio::test]
async fn unregistered_client_requesting_a_bucket() {
    let h = Harness::new();
    h.add_numbered("item", 8).await;
    let gone = h.client("1001").await;
    h.work().unregister(&gone.token).await.unwrap();
    for token in [gone.token.as_str(), "", "swc_nope"] {
        assert_eq!(
            code(h.work().lease(token, 1).await.unwrap_err()),
            "unauthenticated"
        );
    }
    assert_eq!(h.work().stats().await.unwrap().buckets.leased, 0);
}

#[tokio::test]
async fn client_requesting_a_bucket_when_none_is_available() {
    let h = Harness::new();
    let client = h.client("1001").await;
    assert!(
        h.lease(&client, 3).await.is_empty(),
        "an empty pool gives an empty list"
    );
    h.add_numbered("item", 4).await;
    assert_eq!(h.lease(&client, 3).await.len(), 1);
    let other = h.client("1002").await;
    assert!(h.lease(&other, 3).await.is_empty(), "everything is leased");
    assert_eq!(
        h.work().stats().await.unwrap().clients[1].buckets_assigned,
        0
    );
}

// ---- 7.3 Bucket update ----

#[tokio::test]
async fn registered_client_updating_its_own_bucket() {
    let h = Harness::new();
    h.add_numbered("item", 4).await;
    let client = h.client("1001").await;
    let bucket = h.lease_one(&client).await;
    let mut report = report_of(&bucket.items, Outcome::No);
    report.results[0].outcome = Outcome::Yes;
    report.results[0].detail = Some("can DM".into());
    let outcome = h
        .work()
        .report(&client.token, bucket.id, report)
        .await
        .unwrap();
    assert_eq!((outcome.bucket_id, outcome.remaining), (bucket.id, 0));
    let first = h.work().item(&bucket.items[0]).await.unwrap();
    assert_eq!(first.state, ItemState::Done);
    assert_eq!(first.results.len(), 1);
    let result = &first.results[0];
    assert_eq!(result.outcome, Outcome::Yes);
    assert_eq!(result.client_id, client.id);
    assert_eq!(result.detail.as_deref(), Some("can DM"));
    assert_eq!(result.at_ms, h.now_ms());
    assert_eq!(
        h.work().item(&bucket.items[1]).await.unwrap().results[0].outcome,
        Outcome::No
    );
    let stats = h.work().stats().await.unwrap();
    assert_eq!((stats.items.done, stats.buckets.leased), (4, 0));
    assert_eq!(stats.clients[0].buckets_completed, 1);
    assert_eq!(stats.clients[0].leased_buckets, 0);
}

#[tokio::test]
async fn registered_client_updating_a_bucket_it_does_not_own() {
    let h = Harness::new();
    h.add_numbered("item", 4).await;
    let owner = h.client("1001").await;
    let intruder = h.client("1002").await;
    let bucket = h.lease_one(&owner).await;
    let error = h
        .report(&intruder, bucket.id, &bucket.items)
        .await
        .unwrap_err();
    assert_eq!(code(error), "not_owner");
    let error = h
        .work()
        .heartbeat(&intruder.token, bucket.id, None)
        .await
        .unwrap_err();
    assert_eq!(code(error), "not_owner");
    for key in &bucket.items {
        assert_eq!(h.work().item(key).await.unwrap().state, ItemState::Leased);
    }
    let stats = h.work().stats().await.unwrap();
    assert_eq!(stats.clients[1].rejected_updates, 2);
    assert_eq!(stats.clients[0].rejected_updates, 0);
    assert_eq!(h.report_all(&owner, &bucket).await.remaining, 0);
}

#[tokio::test]
async fn unregistered_client_updating_its_own_bucket() {
    let h = Harness::new();
    h.add_numbered("item", 4).await;
    let client = h.client("1001").await;
    let bucket = h.lease_one(&client).await;
    h.work().unregister(&client.token).await.unwrap();
    let error = h
        .report(&client, bucket.id, &bucket.items)
        .await
        .unwrap_err();
    assert_eq!(code(error), "unauthenticated");
    // Unregistering released the lease at once: the items wait in the pool, unreported.
    for key in &bucket.items {
        let item = h.work().item(key).await.unwrap();
        assert_eq!((item.state, item.results.len()), (ItemState::Pending, 0));
    }
    let stats = h.work().stats().await.unwrap();
    assert_eq!((stats.buckets.open, stats.buckets.leased), (1, 0));
}

#[tokio::test]
async fn unregistered_client_updating_a_bucket_it_does_not_own() {
    let h = Harness::new();
    h.add_numbered("item", 4).await;
    let owner = h.client("1001").await;
    let gone = h.client("1002").await;
    h.work().unregister(&gone.token).await.unwrap();
    let bucket = h.lease_one(&owner).await;
    for token in [gone.token.as_str(), "not-a-token"] {
        let error = h
            .work()
            .report(token, bucket.id, report_of(&bucket.items, Outcome::Yes))
            .await
            .unwrap_err();
        assert_eq!(code(error), "unauthenticated");
    }
    assert_eq!(h.work().stats().await.unwrap().items.done, 0);
}

#[tokio::test]
async fn registered_client_updating_partial_info_for_its_bucket() {
    let h = Harness::new();
    h.add_numbered("item", 4).await;
    let client = h.client("1001").await;
    let bucket = h.lease_one(&client).await;
    h.advance(40_000).await;
    let outcome = h
        .report(&client, bucket.id, &bucket.items[..2])
        .await
        .unwrap();
    assert_eq!(outcome.remaining, 2);
    assert_eq!(
        h.work().item(&bucket.items[0]).await.unwrap().state,
        ItemState::Done
    );
    assert_eq!(
        h.work().item(&bucket.items[3]).await.unwrap().state,
        ItemState::Leased
    );
    // The partial report extended the lease: 80 s after the lease, 40 s after the report.
    assert_eq!(h.advance(40_000).await, 0, "no timer due");
    let outcome = h
        .report(&client, bucket.id, &bucket.items[2..])
        .await
        .unwrap();
    assert_eq!(outcome.remaining, 0);
    assert_eq!(h.work().stats().await.unwrap().items.done, 4);
}

#[tokio::test]
async fn registered_client_updating_an_item_not_in_its_bucket() {
    let h = Harness::new();
    let keys = h.add_numbered("item", 8).await;
    let client = h.client("1001").await;
    let bucket = h.lease_one(&client).await;
    let outsider = keys
        .iter()
        .find(|key| !bucket.items.contains(key))
        .unwrap()
        .clone();
    let mut mixed = bucket.items[..2].to_vec();
    mixed.push(outsider);
    let error = h.report(&client, bucket.id, &mixed).await.unwrap_err();
    assert_eq!(code(error), "item_not_in_bucket");
    // Nothing of the refused report was recorded, not even its valid part.
    let stats = h.work().stats().await.unwrap();
    assert_eq!(stats.items.done, 0);
    assert_eq!(stats.clients[0].rejected_updates, 1);
    let error = h
        .report(&client, bucket.id, &["never-added".to_string()])
        .await
        .unwrap_err();
    assert_eq!(code(error), "item_not_in_bucket");
}

#[tokio::test]
async fn client_abrupt_termination_before_the_server_responds() {
    let h = Harness::new();
    h.add_numbered("item", 16).await;
    let client = h.client("1001").await;
    // A report is two hops (authenticate, then the bucket); the caller gives up after 1, 3, 10
    // or 100 polls, i.e. before or after its report reached the bucket. Either way the retry
    // ends with each item reported exactly once.
    for polls in [1, 3, 10, 100] {
        let bucket = h.lease_one(&client).await;
        let report = report_of(&bucket.items, Outcome::Yes);
        abandon_after_polls(h.work().report(&client.token, bucket.id, report), polls).await;
        let retry = h.report(&client, bucket.id, &bucket.items).await.unwrap();
        assert_eq!(retry.remaining, 0);
        for key in &bucket.items {
            let item = h.work().item(key).await.unwrap();
            assert_eq!(
                (item.state, item.results.len()),
                (ItemState::Done, 1),
                "{polls} polls"
            );
        }
    }
    let stats = h.work().stats().await.unwrap();
    assert_eq!(
        (stats.items.done, stats.clients[0].buckets_completed),
        (16, 4)
    );
}

#[tokio::test]
async fn client_never_updating_its_assigned_buckets() {
    let h = Harness::new();
    h.add_numbered("item", 4).await;
    let idle = h.client("1001").await;
    let bucket = h.lease_one(&idle).await;
    assert_eq!(h.advance(LEASE_MS - 1).await, 0);
    assert_eq!(
        h.advance(1).await,
        1,
        "the lease timer fires at the deadline"
    );
    for key in &bucket.items {
        assert_eq!(h.work().item(key).await.unwrap().state, ItemState::Pending);
    }
    let worker = h.client("1002").await;
    let again = h.lease_one(&worker).await;
    assert_eq!(
        (again.id, again.epoch),
        (bucket.id, 2),
        "the same bucket, next epoch"
    );
    assert_eq!(again.items, bucket.items);
    assert_eq!(
        code(h.report(&idle, bucket.id, &bucket.items).await.unwrap_err()),
        "lease_expired"
    );
    assert_eq!(h.report_all(&worker, &again).await.remaining, 0);
    let stats = h.work().stats().await.unwrap();
    assert_eq!(stats.clients[0].buckets_expired, 1);
    assert_eq!(stats.clients[1].buckets_completed, 1);
}

// ---- 7.4 Multiple clients using the same id ----

#[tokio::test]
async fn two_clients_registering_with_the_same_details() {
    let h = Harness::new();
    let work = h.work();
    let (first, second) = tokio::join!(
        work.register(registration("1001"), None),
        work.register(registration("1001"), None),
    );
    let (first, second) = (first.unwrap(), second.unwrap());
    assert_eq!(first.client_id, second.client_id, "same id, same client");
    assert_eq!(
        [first.created, second.created]
            .iter()
            .filter(|created| **created)
            .count(),
        1,
        "exactly one registration created the client"
    );
    // The later registration's token is the one that works.
    let (later, earlier) = if first.created {
        (second, first)
    } else {
        (first, second)
    };
    assert_eq!(
        code(h.work().authenticate(&earlier.token).await.unwrap_err()),
        "unauthenticated"
    );
    assert_eq!(
        h.work().authenticate(&later.token).await.unwrap(),
        later.client_id
    );
    assert_eq!(h.work().stats().await.unwrap().clients.len(), 1);
}

#[tokio::test]
async fn two_clients_updating_the_right_bucket_data() {
    let h = Harness::new();
    h.add_numbered("item", 4).await;
    // Two processes sharing one registration act as one client: both may report.
    let shared = h.client("1001").await;
    let bucket = h.lease_one(&shared).await;
    let work = h.work();
    let (a, b) = tokio::join!(
        work.report(
            &shared.token,
            bucket.id,
            report_of(&bucket.items[..3], Outcome::Yes)
        ),
        work.report(
            &shared.token,
            bucket.id,
            report_of(&bucket.items[1..], Outcome::No)
        ),
    );
    let remaining: BTreeSet<u64> = [a.unwrap().remaining, b.unwrap().remaining].into();
    assert!(remaining.contains(&0), "{remaining:?}");
    // The first result of each item stands; no item has two.
    for key in &bucket.items {
        assert_eq!(h.work().item(key).await.unwrap().results.len(), 1);
    }
    // A second process that registered the same id on its own rotated the first one out.
    h.add_numbered("more", 4).await;
    let bucket = h.lease_one(&shared).await;
    let rival = h.client("1001").await;
    assert_eq!(rival.id, shared.id);
    let error = h
        .report(&shared, bucket.id, &bucket.items)
        .await
        .unwrap_err();
    assert_eq!(code(error), "unauthenticated");
    assert_eq!(h.report_all(&rival, &bucket).await.remaining, 0);
    assert_eq!(h.work().stats().await.unwrap().items.done, 8);
}

#[tokio::test]
async fn one_client_unregistering_while_another_updates() {
    let h = Harness::new();
    h.add_numbered("item", 4).await;
    let shared = h.client("1001").await;
    let bucket = h.lease_one(&shared).await;
    h.report(&shared, bucket.id, &bucket.items[..1])
        .await
        .unwrap();
    h.work().unregister(&shared.token).await.unwrap();
    let error = h
        .report(&shared, bucket.id, &bucket.items[1..])
        .await
        .unwrap_err();
    assert_eq!(code(error), "unauthenticated");
    // The reported item is done; the other three went back to the pool.
    let stats = h.work().stats().await.unwrap();
    assert_eq!(
        (stats.items.done, stats.items.pending, stats.items.leased),
        (1, 3, 0)
    );
    let next = h.client("2002").await;
    let again = h.lease_one(&next).await;
    assert_eq!(
        (again.id, again.epoch, again.items.len()),
        (bucket.id, 2, 3)
    );
}

// ---- 7.5 Concurrency ----

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_clients_joining_at_almost_the_same_time() {
    let h = Harness::new();
    h.add_numbered("item", 24).await;
    let (a, b) = tokio::join!(
        async {
            let client = h.client("1001").await;
            h.lease(&client, 3).await
        },
        async {
            let client = h.client("1002").await;
            h.lease(&client, 3).await
        },
    );
    let mut seen = BTreeSet::new();
    for bucket in a.iter().chain(&b) {
        for key in &bucket.items {
            assert!(seen.insert(key.clone()), "{key} leased twice");
        }
    }
    assert_eq!(seen.len(), 24);
    let ids: BTreeSet<u64> = a.iter().chain(&b).map(|bucket| bucket.id).collect();
    assert_eq!(ids.len(), 6);
}

#[tokio::test]
async fn two_clients_joining_at_different_times() {
    let h = Harness::new();
    let keys = h.add_numbered("item", 20).await;
    let early = h.client("1001").await;
    for bucket in h.lease(&early, 2).await {
        h.report_all(&early, &bucket).await;
    }
    h.clock.advance_ms(10_000);
    let late = h.client("1002").await;
    loop {
        let a = h.lease(&late, 1).await;
        let b = h.lease(&early, 1).await;
        if a.is_empty() && b.is_empty() {
            break;
        }
        for bucket in &a {
            h.report_all(&late, bucket).await;
        }
        for bucket in &b {
            h.report_all(&early, bucket).await;
        }
    }
    for key in &keys {
        assert_eq!(h.work().item(key).await.unwrap().results.len(), 1, "{key}");
    }
    let stats = h.work().stats().await.unwrap();
    assert_eq!(stats.items.done, 20);
    let completed: u64 = stats
        .clients
        .iter()
        .map(|client| client.buckets_completed)
        .sum();
    assert_eq!(completed, 5);
    assert!(stats.clients[1].buckets_completed >= 1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bucket_formation_and_assignment_at_the_same_time_assign_from_the_older_pool() {
    let h = Harness::with(|work| work.formation_spread = 2);
    // 24 old items: while 8 (bucket_size × formation_spread) or more old ones are left, the
    // random window holds only old items.
    let old = h.add_numbered("old", 24).await;
    let client = h.client("1001").await;
    let (_, buckets) = tokio::join!(
        async {
            for round in 0..10 {
                h.add_numbered(&format!("new{round}"), 8).await;
            }
        },
        async {
            let mut buckets = Vec::new();
            for _ in 0..4 {
                buckets.extend(h.lease(&client, 1).await);
            }
            buckets
        },
    );
    // Equal priority: the oldest items go first, whatever was added meanwhile.
    let leased: Vec<&String> = buckets.iter().flat_map(|bucket| &bucket.items).collect();
    assert_eq!(leased.len(), 16);
    assert!(leased.iter().all(|key| old.contains(key)), "{leased:?}");
    assert_eq!(h.work().stats().await.unwrap().items.pending, 8 + 80);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn clients_coming_and_going_in_short_spans() {
    let h = Harness::new();
    let keys = h.add_numbered("item", 60).await;
    let tasks = (0..3).map(|worker| {
        let h = &h;
        async move {
            let mut generation = 0;
            loop {
                // Each generation registers, takes one bucket, reports half of it, and leaves.
                let client = h.client(&format!("w{worker}-g{generation}")).await;
                generation += 1;
                let Some(bucket) = h.lease(&client, 1).await.pop() else {
                    h.work().unregister(&client.token).await.unwrap();
                    break;
                };
                let half = bucket.items.len().div_ceil(2);
                h.report(&client, bucket.id, &bucket.items[..half])
                    .await
                    .unwrap();
                h.work().unregister(&client.token).await.unwrap();
            }
        }
    });
    join_all(tasks).await;
    for key in &keys {
        let item = h.work().item(key).await.unwrap();
        assert_eq!(
            (item.state, item.results.len()),
            (ItemState::Done, 1),
            "{key}"
        );
    }
    let stats = h.work().stats().await.unwrap();
    assert_eq!(
        (stats.items.done, stats.buckets.open, stats.buckets.leased),
        (60, 0, 0)
    );
    assert!(stats.clients.iter().all(|client| !client.active));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn new_items_added_while_buckets_are_created_in_parallel() {
    let h = Harness::new();
    let adder = async {
        for round in 0..20 {
            h.add_numbered(&format!("r{round:02}"), 10).await;
            tokio::task::yield_now().await;
        }
    };
    let workers = (0..3).map(|worker| {
        let h = &h;
        async move {
            let client = h.client(&format!("worker-{worker}")).await;
            let mut reported = Vec::new();
            let mut idle_rounds = 0;
            while idle_rounds < 50 {
                let buckets = h.lease(&client, 2).await;
                if buckets.is_empty() {
                    idle_rounds += 1;
                    tokio::task::yield_now().await;
                    continue;
                }
                idle_rounds = 0;
                for bucket in buckets {
                    h.report_all(&client, &bucket).await;
                    reported.extend(bucket.items);
                }
            }
            reported
        }
    });
    let (_, reported) = tokio::join!(adder, join_all(workers));
    // Whatever the workers missed at the end is drained now.
    let last = h.client("closer").await;
    let mut reported: Vec<String> = reported.into_iter().flatten().collect();
    loop {
        let buckets = h.lease(&last, 10).await;
        if buckets.is_empty() {
            break;
        }
        for bucket in buckets {
            h.report_all(&last, &bucket).await;
            reported.extend(bucket.items);
        }
    }
    let unique: BTreeSet<&String> = reported.iter().collect();
    assert_eq!(
        (reported.len(), unique.len()),
        (200, 200),
        "each item reported exactly once"
    );
    assert_eq!(h.work().stats().await.unwrap().items.done, 200);
}

// ---- 7.6 Stats ----

#[tokio::test]
async fn bucket_processing_longer_than_the_threshold() {
    let h = Harness::new();
    h.add_numbered("item", 4).await;
    let slow = h.client("1001").await;
    // Every holder takes longer than the lease; after `max_expiries` (3) the bucket is parked.
    for round in 1..=3u64 {
        let bucket = h.lease_one(&slow).await;
        assert_eq!(bucket.epoch as u64, round);
        h.advance(LEASE_MS).await;
        let stats = h.work().stats().await.unwrap();
        assert_eq!(stats.clients[0].buckets_expired, round);
        let expected_open = u64::from(round < 3);
        assert_eq!(
            (stats.buckets.open, stats.buckets.dead),
            (expected_open, 1 - expected_open)
        );
    }
    assert!(
        h.lease(&slow, 1).await.is_empty(),
        "a dead-lettered bucket is not leased again"
    );
    let stats = h.work().stats().await.unwrap();
    assert_eq!((stats.items.pending, stats.buckets.leased), (4, 0));
    assert_eq!(stats.clients[0].buckets_assigned, 3);
}

#[tokio::test]
async fn unresponsive_client_and_its_bucket_status() {
    let h = Harness::new();
    h.add_numbered("item", 8).await;
    let client = h.client("1001").await;
    let buckets = h.lease(&client, 2).await;
    h.clock.advance_ms(30_000);
    let beat = h
        .work()
        .heartbeat(&client.token, buckets[0].id, None)
        .await
        .unwrap();
    assert_eq!(beat.lease_expires_at_ms, h.now_ms() + LEASE_MS);
    let heartbeat_at = h.now_ms();
    assert_eq!(
        h.advance(30_000).await,
        1,
        "only the silent bucket's lease expires"
    );
    let stats = h.work().stats().await.unwrap();
    assert_eq!((stats.buckets.leased, stats.buckets.open), (1, 1));
    assert_eq!((stats.items.leased, stats.items.pending), (4, 4));
    let line = &stats.clients[0];
    assert_eq!(
        (
            line.buckets_assigned,
            line.buckets_expired,
            line.leased_buckets
        ),
        (2, 1, 1)
    );
    assert_eq!(line.last_seen_at_ms, Some(heartbeat_at));
    let states: BTreeMap<String, ItemState> = {
        let mut states = BTreeMap::new();
        for bucket in &buckets {
            for key in &bucket.items {
                states.insert(key.clone(), h.work().item(key).await.unwrap().state);
            }
        }
        states
    };
    assert!(buckets[0]
        .items
        .iter()
        .all(|key| states[key] == ItemState::Leased));
    assert!(buckets[1]
        .items
        .iter()
        .all(|key| states[key] == ItemState::Pending));
}

// ---- Limits in characters, records within their budget ----

/// Keys count characters (up to 128, so up to 512 bytes of UTF-8), and a lease forms no more
/// buckets than fit one WAL record: with buckets of `BUCKET_SIZE_MAX` keys of 128 characters of
/// four bytes each, a lease asking for 10 gets one bucket, and the others wait for the next
/// leases. A report that would not fit one record is refused and goes through in parts.
#[tokio::test]
async fn the_longest_keys_lease_one_bucket_at_a_time_and_report_in_parts() {
    use switchyard_engine::work::{ItemResult, NewItem, Report, BUCKET_SIZE_MAX, KEY_CHARS_MAX};
    let h = Harness::with(|work| {
        work.bucket_size = BUCKET_SIZE_MAX;
        work.max_buckets_per_request = 10;
    });
    let wide = "\u{1F600}";
    let items: Vec<NewItem> = (0..3 * BUCKET_SIZE_MAX)
        .map(|index| NewItem {
            key: format!("{index:04}{}", wide.repeat(KEY_CHARS_MAX - 4)),
            priority: None,
        })
        .collect();
    let added = h.work().add_items(items).await.unwrap();
    assert_eq!(added.added, 3 * BUCKET_SIZE_MAX as u64);
    let too_long = NewItem {
        key: wide.repeat(KEY_CHARS_MAX + 1),
        priority: None,
    };
    assert_eq!(
        field(h.work().add_items(vec![too_long]).await.unwrap_err()).as_deref(),
        Some("items")
    );

    let client = h.client("long-keys").await;
    let mut buckets = Vec::new();
    for _ in 0..3 {
        let leased = h.lease(&client, 10).await;
        assert_eq!(
            leased.len(),
            1,
            "one bucket of the longest keys fills a record"
        );
        assert_eq!(leased[0].items.len(), BUCKET_SIZE_MAX);
        buckets.extend(leased);
    }
    assert!(
        h.lease(&client, 10).await.is_empty(),
        "every item was leased"
    );

    let bucket = &buckets[0];
    let result = |key: &String| ItemResult {
        key: key.clone(),
        outcome: Outcome::No,
        detail: Some(wide.repeat(512)),
    };
    let whole = Report {
        results: bucket.items.iter().map(result).collect(),
        ..Report::default()
    };
    let refused = h
        .work()
        .report(&client.token, bucket.id, whole)
        .await
        .unwrap_err();
    assert_eq!(field(refused).as_deref(), Some("results"));
    let mut remaining = bucket.items.len() as u64;
    for part in bucket.items.chunks(BUCKET_SIZE_MAX / 4) {
        let report = Report {
            results: part.iter().map(result).collect(),
            ..Report::default()
        };
        let outcome = h
            .work()
            .report(&client.token, bucket.id, report)
            .await
            .unwrap();
        remaining -= part.len() as u64;
        assert_eq!(outcome.remaining, remaining);
    }
    assert_eq!(remaining, 0);
}
