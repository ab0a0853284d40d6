//! The dispatch domain through the engine API, on a virtual clock where time matters: fan-out to
//! every recipient once, retries with full-jitter backoff and `Retry-After`, dead letters and
//! failover, scheduled and conditional dispatches (the market's `btc_eur` signal), and a restart
//! in the middle of a dispatch.
//!
//! The provider here is the courier seam's far side: a scripted provider that deduplicates by
//! idempotency key and counts what it would have delivered twice (the HTTP adapters are tested
//! against loopback fakes of the real protocols in the server's tests).

use std::collections::{BTreeMap, HashMap};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use switchyard_engine::dispatch::{
    delivery, Channel, Condition, Contact, Courier, DispatchRequest, EventType, Group, Item,
    Message, NoteFilter, NoteStatus, NotifyConfig, Op, Outcome, Program, Status,
};
use switchyard_engine::market::source::{Rates, SourceSpec};
use switchyard_engine::market::{price_pool, PriceSource, Quote, Rate};
use switchyard_engine::runtime::effects::EffectPool;
use switchyard_engine::store::DirLock;
use switchyard_engine::{Engine, EngineConfig, ManualClock, SharedClock};

/// A provider on the far side of the courier: scripted answers per address, deduplication by
/// idempotency key.
#[derive(Default)]
struct Provider {
    /// Address → the answers to give, in order (then `Sent`).
    script: Mutex<HashMap<String, Vec<Outcome>>>,
    /// Key → (channel, address) of each accepted message.
    accepted: Mutex<BTreeMap<String, (Channel, String)>>,
    /// Accepted again under a key already accepted.
    duplicates: Mutex<u64>,
    attempts: Mutex<Vec<(String, Channel)>>,
}

impl Courier for Provider {
    fn deliver(&self, messages: &[Message]) -> Vec<Outcome> {
        messages
            .iter()
            .map(|m| {
                self.attempts
                    .lock()
                    .unwrap()
                    .push((m.key.clone(), m.channel));
                let scripted = {
                    let mut script = self.script.lock().unwrap();
                    script
                        .get_mut(&m.to)
                        .and_then(|answers| (!answers.is_empty()).then(|| answers.remove(0)))
                };
                let outcome = scripted.unwrap_or(Outcome::Sent);
                if outcome == Outcome::Sent {
                    let mut accepted = self.accepted.lock().unwrap();
                    if accepted
                        .insert(m.key.clone(), (m.channel, m.to.clone()))
                        .is_some()
                    {
                        *self.duplicates.lock().unwrap() += 1;
                    }
                }
                outcome
            })
            .collect()
    }
}

struct Feed(Mutex<String>);

impl PriceSource for Feed {
    fn describe(&self) -> String {
        "test feed".into()
    }

    fn fetch(&self, _seq: u64, _previous: Option<&Quote>) -> Result<Rates, String> {
        let eur = Rate::parse(&self.0.lock().unwrap()).unwrap();
        Ok(Rates {
            eur,
            gbp: eur,
            usd: eur,
        })
    }
}

fn config(dir: &std::path::Path, notify: impl FnOnce(&mut NotifyConfig)) -> EngineConfig {
    let mut config = EngineConfig::for_tests(dir);
    config.effects_sweep_ms = 20;
    let n = config.section_mut::<NotifyConfig>();
    n.batch_size = 16;
    n.batches_in_flight = 2;
    n.signal_check_ms = 20;
    notify(n);
    config
}

fn open(
    config: &EngineConfig,
    clock: SharedClock,
    provider: Arc<Provider>,
    feed: Option<Arc<Feed>>,
) -> Engine {
    let lock = DirLock::acquire(&config.data_dir).unwrap();
    let mut pools: Vec<EffectPool> = delivery::pools(
        config.section::<NotifyConfig>(),
        provider as Arc<dyn Courier>,
    );
    if let Some(feed) = feed {
        pools.push(price_pool(feed));
    }
    Engine::open_with_effects(config.clone(), lock, clock, pools).expect("engine opens")
}

async fn add(engine: &Engine, item: Item) -> u64 {
    engine.dispatch().add(item).await.expect("added").id()
}

fn contact(name: &str, groups: &[u64], email: bool, phone: bool, webhook: bool) -> Item {
    Item::Contact(Contact {
        id: 0,
        name: name.into(),
        email: email.then(|| format!("{name}@example.com")),
        phone: phone.then(|| format!("+1555{:07}", name.len() * 7919 % 10_000_000)),
        webhook_url: webhook.then(|| format!("http://127.0.0.1:9/{name}")),
        group_ids: groups.to_vec(),
        user_id: None,
    })
}

/// Waits (bounded, real time) until dispatch `id` satisfies `done`, firing due timers.
async fn until(
    engine: &Engine,
    id: u64,
    what: &str,
    done: impl Fn(&switchyard_engine::dispatch::View) -> bool,
) {
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let view = engine.dispatch().get(id).await.unwrap();
        if done(&view) {
            return;
        }
        assert!(
            Instant::now() < deadline,
            "timed out waiting for {what}: {view:?}"
        );
        engine.fire_due_timers().await;
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
}

async fn all_notes(
    engine: &Engine,
    filter: NoteFilter,
    limit: usize,
) -> Vec<switchyard_engine::dispatch::Notification> {
    let mut out = Vec::new();
    let mut after = 0;
    loop {
        let page = engine
            .dispatch()
            .notifications(filter, after, limit)
            .await
            .unwrap();
        assert!(page.items.len() <= limit);
        out.extend(page.items);
        match page.next {
            Some(next) => after = next,
            None => return out,
        }
    }
}

async fn catalog(engine: &Engine, channels: Vec<Channel>) -> (u64, u64, Vec<u64>) {
    let program = add(
        engine,
        Item::Program(Program {
            id: 0,
            name: "Peak shaving".into(),
            message: "Reduce load now".into(),
        }),
    )
    .await;
    let a = add(
        engine,
        Item::Group(Group {
            id: 0,
            name: "north".into(),
        }),
    )
    .await;
    let b = add(
        engine,
        Item::Group(Group {
            id: 0,
            name: "south".into(),
        }),
    )
    .await;
    let event_type = add(
        engine,
        Item::EventType(EventType {
            id: 0,
            name: "Curtail".into(),
            group_ids: vec![a, b],
            channels,
        }),
    )
    .await;
    (program, event_type, vec![a, b])
}

fn now_request(program_id: u64, event_type_id: u64, start_ms: u64) -> DispatchRequest {
    DispatchRequest {
        program_id,
        event_type_id,
        start_ms,
        end_ms: None,
        condition: None,
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_dispatch_reaches_every_recipient_once_on_each_channel() {
    let dir = tempfile::tempdir().unwrap();
    let config = config(dir.path(), |_| {});
    let clock = ManualClock::new(1_000_000);
    let provider = Arc::new(Provider::default());
    let engine = open(&config, Arc::new(clock.clone()), provider.clone(), None);
    let (program, event_type, groups) =
        catalog(&engine, vec![Channel::Webhook, Channel::Email]).await;
    // 100 contacts: in north, south or both (counted once); some without one of the addresses.
    let mut expected = 0;
    for i in 0..100u64 {
        let member_of = match i % 3 {
            0 => vec![groups[0]],
            1 => vec![groups[1]],
            _ => groups.clone(),
        };
        let (email, webhook) = (i % 5 != 0, i % 7 != 0);
        expected += u64::from(email) + u64::from(webhook);
        add(
            &engine,
            contact(&format!("c{i}"), &member_of, email, false, webhook),
        )
        .await;
    }
    // Unknown references are 404 and change nothing.
    let unknown = engine
        .dispatch()
        .create(now_request(program + 50, event_type, 1_000_000))
        .await
        .unwrap_err();
    assert!(
        matches!(unknown, switchyard_engine::Error::NotFound("program")),
        "{unknown:?}"
    );
    let bad_group = engine
        .dispatch()
        .add(contact("x", &[99], true, false, false))
        .await
        .unwrap_err();
    assert!(matches!(
        bad_group,
        switchyard_engine::Error::NotFound("group")
    ));

    let created = engine
        .dispatch()
        .create(now_request(program, event_type, 1_000_000))
        .await
        .unwrap();
    assert_eq!(
        (created.id, created.status, created.recipients),
        (1, Status::Sending, 100)
    );
    until(&engine, created.id, "done", |v| v.status == Status::Done).await;
    let view = engine.dispatch().get(created.id).await.unwrap();
    assert_eq!(view.notifications, expected);
    assert_eq!(view.counts, [0, 0, expected, 0]);
    let accepted = provider.accepted.lock().unwrap().clone();
    assert_eq!(accepted.len() as u64, expected);
    assert_eq!(*provider.duplicates.lock().unwrap(), 0);
    let totals = engine.dispatch().totals().await.unwrap();
    assert_eq!(totals.notifications, [0, 0, expected, 0]);
    assert_eq!(
        (totals.dispatches, totals.possible_duplicates),
        ([0, 0, 0, 1], 0)
    );
    // Pages of 7 list each notification once, ascending; filters agree with the counts.
    let notes = all_notes(&engine, NoteFilter::default(), 7).await;
    assert_eq!(notes.len() as u64, expected);
    assert!(notes.windows(2).all(|w| w[0].id < w[1].id));
    assert!(notes
        .iter()
        .all(|n| n.status == NoteStatus::Sent && n.attempts == 1));
    let sent = NoteFilter {
        status: Some(NoteStatus::Sent),
        ..NoteFilter::default()
    };
    assert_eq!(all_notes(&engine, sent, 500).await.len() as u64, expected);
    // A dispatch id past the id space has no notifications (it once overflowed).
    let beyond = NoteFilter {
        dispatch_id: Some(u64::MAX),
        ..NoteFilter::default()
    };
    assert!(all_notes(&engine, beyond, 5).await.is_empty());
    let dead = NoteFilter {
        status: Some(NoteStatus::Dead),
        ..NoteFilter::default()
    };
    assert!(all_notes(&engine, dead, 500).await.is_empty());
    let (log, omitted) = engine.dispatch().log(created.id).await.unwrap();
    assert_eq!(omitted, 0);
    let text: Vec<&str> = log.iter().map(|l| l.text.as_str()).collect();
    assert!(
        text[0].starts_with("Transaction for Dispatch: 1"),
        "{text:?}"
    );
    assert!(
        text.iter().any(|l| l.contains("fan-out complete")),
        "{text:?}"
    );
    assert_eq!(*text.last().unwrap(), "Status: done");
    engine.shutdown().unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn retries_back_off_with_jitter_honour_retry_after_then_fail_over_or_die() {
    let dir = tempfile::tempdir().unwrap();
    let config = config(dir.path(), |n| {
        n.max_attempts = 3;
        n.retry_base_ms = 1_000;
        n.retry_max_ms = 1_500;
    });
    let start = 5_000_000;
    let clock = ManualClock::new(start);
    let provider = Arc::new(Provider::default());
    let engine = open(&config, Arc::new(clock.clone()), provider.clone(), None);
    let (program, event_type, groups) =
        catalog(&engine, vec![Channel::Webhook, Channel::Sms]).await;
    // Ann: her webhook fails three times (once with Retry-After 60 s), then SMS carries it.
    // Bob: his webhook refuses for good and he has no phone: dead.
    add(&engine, contact("ann", &[groups[0]], false, true, true)).await;
    add(&engine, contact("bob", &[groups[0]], false, false, true)).await;
    let retry = |after: Option<u64>| Outcome::Retry {
        error: "503 from the receiver".into(),
        retry_after_ms: after,
    };
    provider.script.lock().unwrap().insert(
        "http://127.0.0.1:9/ann".into(),
        vec![retry(None), retry(Some(60_000)), retry(None)],
    );
    provider.script.lock().unwrap().insert(
        "http://127.0.0.1:9/bob".into(),
        vec![Outcome::Refused {
            error: "410 Gone".into(),
        }],
    );
    let created = engine
        .dispatch()
        .create(now_request(program, event_type, start))
        .await
        .unwrap();
    async fn ann_webhook(engine: &Engine) -> switchyard_engine::dispatch::Notification {
        let notes = all_notes(engine, NoteFilter::default(), 50).await;
        notes
            .into_iter()
            .find(|n| n.channel == Channel::Webhook && n.contact_id == 1)
            .unwrap()
    }
    // First attempt fails: the retry is within full jitter of the first bound (0..=1000 ms).
    until(&engine, created.id, "the first attempt", |v| {
        v.counts[1] == 1 && v.counts[3] == 1
    })
    .await;
    let note = ann_webhook(&engine).await;
    assert_eq!((note.status, note.attempts), (NoteStatus::Failed, 1));
    assert!(
        note.next_ms >= start && note.next_ms <= start + 1_000,
        "{note:?}"
    );
    // Nothing is attempted before the retry time (no sleeping: the clock does not move).
    tokio::time::sleep(Duration::from_millis(100)).await;
    assert_eq!(
        provider.attempts.lock().unwrap().len(),
        3,
        "ann's webhook, ann's sms, bob's webhook"
    );
    // Second attempt: answered with Retry-After 60 s, longer than the bound (1500): honoured.
    clock.set_ms(note.next_ms);
    until(&engine, created.id, "the second attempt", |_| true).await;
    let second = loop {
        let note = ann_webhook(&engine).await;
        if note.attempts == 2 {
            break note;
        }
        engine.fire_due_timers().await;
        tokio::time::sleep(Duration::from_millis(5)).await;
    };
    assert_eq!(
        second.next_ms,
        switchyard_engine::clock::Clock::now_ms(&clock) + 60_000,
        "{second:?}"
    );
    // Third attempt fails: 3 attempts on the webhook, so it fails over to SMS, which Ann has.
    clock.set_ms(second.next_ms);
    let third = loop {
        let note = ann_webhook(&engine).await;
        if note.attempts == 3 {
            break note;
        }
        tokio::time::sleep(Duration::from_millis(5)).await;
    };
    // Ann's own SMS notification was already sent, so her webhook's has nowhere to go: dead.
    assert_eq!(third.status, NoteStatus::Dead, "{third:?}");
    assert!(third
        .last_error
        .as_deref()
        .unwrap()
        .contains("webhook failed 3 times"));
    until(&engine, created.id, "done", |v| v.status == Status::Done).await;
    let view = engine.dispatch().get(created.id).await.unwrap();
    // Ann: sms sent, webhook dead; Bob: webhook refused with no other address: dead.
    assert_eq!(view.counts, [0, 0, 1, 2], "{view:?}");
    let bob = all_notes(&engine, NoteFilter::default(), 50)
        .await
        .into_iter()
        .find(|n| n.to.ends_with("/bob"))
        .unwrap();
    assert_eq!((bob.status, bob.attempts), (NoteStatus::Dead, 1));
    assert!(bob.last_error.unwrap().contains("410 Gone"));
    engine.shutdown().unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_dead_channel_fails_over_to_the_next_one_not_yet_reached() {
    let dir = tempfile::tempdir().unwrap();
    let config = config(dir.path(), |n| n.max_attempts = 2);
    let start = 7_000_000;
    let clock = ManualClock::new(start);
    let provider = Arc::new(Provider::default());
    let engine = open(&config, Arc::new(clock.clone()), provider.clone(), None);
    let (program, event_type, groups) =
        catalog(&engine, vec![Channel::Webhook, Channel::Email]).await;
    add(&engine, contact("cy", &[groups[1]], true, false, true)).await;
    // Her webhook refuses; her e-mail is slow to be accepted (retried once), so when the
    // webhook's notification dies the e-mail has not reached her yet: it carries it too.
    provider.script.lock().unwrap().insert(
        "http://127.0.0.1:9/cy".into(),
        vec![Outcome::Refused {
            error: "404".into(),
        }],
    );
    provider.script.lock().unwrap().insert(
        "cy@example.com".into(),
        vec![Outcome::Retry {
            error: "421 try later".into(),
            retry_after_ms: None,
        }],
    );
    let created = engine
        .dispatch()
        .create(now_request(program, event_type, start))
        .await
        .unwrap();
    until(&engine, created.id, "the failover", |v| v.counts[1] >= 1).await;
    let notes = all_notes(&engine, NoteFilter::default(), 50).await;
    let webhook = notes
        .iter()
        .find(|n| n.channel == Channel::Webhook)
        .unwrap();
    assert_eq!(webhook.via, Channel::Email, "{webhook:?}");
    assert!(webhook
        .last_error
        .as_deref()
        .unwrap()
        .contains("failing over to email"));
    clock.advance_ms(1_000);
    until(&engine, created.id, "done", |v| v.status == Status::Done).await;
    let view = engine.dispatch().get(created.id).await.unwrap();
    assert_eq!(view.counts, [0, 0, 2, 0], "{view:?}");
    let accepted = provider.accepted.lock().unwrap().clone();
    assert_eq!(accepted.len(), 2);
    assert!(accepted
        .values()
        .all(|(channel, _)| *channel == Channel::Email));
    engine.shutdown().unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn scheduled_and_conditional_dispatches_wait_then_fire_once_across_a_restart() {
    let dir = tempfile::tempdir().unwrap();
    let config = config(dir.path(), |_| {});
    let start = 20_000_000;
    let clock = ManualClock::new(start);
    let provider = Arc::new(Provider::default());
    let feed = Arc::new(Feed(Mutex::new("60000".into())));
    let engine = open(
        &config,
        Arc::new(clock.clone()),
        provider.clone(),
        Some(feed.clone()),
    );
    let (program, event_type, groups) = catalog(&engine, vec![Channel::Email]).await;
    add(&engine, contact("dee", &[groups[0]], true, false, false)).await;
    // Waits for a price.
    let deadline = Instant::now() + Duration::from_secs(20);
    while engine.market().price().is_err() {
        assert!(Instant::now() < deadline);
        engine.fire_due_timers().await;
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    let below = |value: &str| Condition {
        op: Op::Le,
        value: Rate::parse(value).unwrap(),
    };
    // In an hour; waits on its durable timer.
    let scheduled = engine
        .dispatch()
        .create(now_request(program, event_type, start + 3_600_000))
        .await
        .unwrap();
    assert_eq!(scheduled.status, Status::Scheduled);
    // Now, when btc_eur <= 50000 (it is 60000).
    let conditional = engine
        .dispatch()
        .create(DispatchRequest {
            condition: Some(below("50000")),
            ..now_request(program, event_type, start)
        })
        .await
        .unwrap();
    assert_eq!(conditional.status, Status::WaitingCondition);
    // Holds at creation: fires at once.
    let at_once = engine
        .dispatch()
        .create(DispatchRequest {
            condition: Some(below("70000")),
            ..now_request(program, event_type, start)
        })
        .await
        .unwrap();
    assert_eq!(at_once.status, Status::Sending);
    // Ends before it could ever hold.
    let expiring = engine
        .dispatch()
        .create(DispatchRequest {
            condition: Some(below("1")),
            end_ms: Some(start + 60_000),
            ..now_request(program, event_type, start)
        })
        .await
        .unwrap();
    until(&engine, at_once.id, "the one that held", |v| {
        v.status == Status::Done
    })
    .await;

    // A restart: both still wait.
    engine.shutdown().unwrap();
    drop(engine);
    let engine = open(
        &config,
        Arc::new(clock.clone()),
        provider.clone(),
        Some(feed.clone()),
    );
    assert_eq!(
        engine.dispatch().get(scheduled.id).await.unwrap().status,
        Status::Scheduled
    );
    assert_eq!(
        engine.dispatch().get(conditional.id).await.unwrap().status,
        Status::WaitingCondition
    );

    // The price falls: the conditional one fires once (the next quote changes nothing).
    *feed.0.lock().unwrap() = "49000.5".into();
    clock.advance_ms(15_000);
    engine.fire_due_timers().await;
    until(&engine, conditional.id, "the condition", |v| {
        v.status == Status::Done
    })
    .await;
    let view = engine.dispatch().get(conditional.id).await.unwrap();
    let fired = view.fired.expect("it records the price that fired it");
    assert_eq!(fired.price, Rate::parse("49000.5").unwrap());
    clock.advance_ms(15_000);
    engine.fire_due_timers().await;
    // The end comes for the one that never held; the scheduled one starts at its hour.
    clock.set_ms(start + 3_600_000);
    until(&engine, expiring.id, "the end", |v| {
        v.status == Status::Done
    })
    .await;
    until(&engine, scheduled.id, "the start time", |v| {
        v.status == Status::Done
    })
    .await;
    assert_eq!(
        engine
            .dispatch()
            .get(expiring.id)
            .await
            .unwrap()
            .notifications,
        0
    );
    let accepted = provider.accepted.lock().unwrap().len();
    assert_eq!(
        accepted, 3,
        "at_once, conditional and scheduled, one e-mail each"
    );
    assert_eq!(*provider.duplicates.lock().unwrap(), 0);
    let (log, _) = engine.dispatch().log(conditional.id).await.unwrap();
    assert!(
        log.iter()
            .any(|l| l.text.contains("held: btc_eur was 49000.5")),
        "{log:?}"
    );
    engine.shutdown().unwrap();
    let _ = SourceSpec::parse("simulated");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_restart_in_the_middle_of_a_fan_out_delivers_the_rest_once() {
    let dir = tempfile::tempdir().unwrap();
    let config = config(dir.path(), |n| {
        n.batch_size = 8;
        n.batches_in_flight = 1;
    });
    let clock = ManualClock::new(1_000_000);
    let provider = Arc::new(Provider::default());
    // The first engine's provider answers only the first 3 batches' worth, then fails.
    let engine = open(&config, Arc::new(clock.clone()), provider.clone(), None);
    let (program, event_type, groups) = catalog(&engine, vec![Channel::Webhook]).await;
    for i in 0..200 {
        add(
            &engine,
            contact(&format!("r{i}"), &[groups[i % 2]], false, false, true),
        )
        .await;
    }
    for i in 24..200 {
        provider.script.lock().unwrap().insert(
            format!("http://127.0.0.1:9/r{i}"),
            vec![Outcome::Retry {
                error: "down".into(),
                retry_after_ms: Some(3_600_000),
            }],
        );
    }
    let created = engine
        .dispatch()
        .create(now_request(program, event_type, 1_000_000))
        .await
        .unwrap();
    until(&engine, created.id, "some delivered", |v| v.counts[2] >= 8).await;
    engine.shutdown().unwrap();
    drop(engine);
    provider.script.lock().unwrap().clear();
    clock.advance_ms(3_600_000);
    let engine = open(&config, Arc::new(clock.clone()), provider.clone(), None);
    until(&engine, created.id, "done after the restart", |v| {
        v.status == Status::Done
    })
    .await;
    let view = engine.dispatch().get(created.id).await.unwrap();
    assert_eq!(view.counts, [0, 0, 200, 0]);
    assert_eq!(provider.accepted.lock().unwrap().len(), 200);
    assert_eq!(*provider.duplicates.lock().unwrap(), 0);
    engine.shutdown().unwrap();
}
