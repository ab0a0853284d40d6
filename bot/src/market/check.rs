//! The comparison of the ledger with what the server lists, exactly: [`compare`] is a pure
//! function of the [`Ledger`] and a [`ServerView`] (read by the scenario), so a tampered
//! ledger or a lying listing can be fed to it directly.
//!
//! Money is compared as integers: amounts in cents, BTC in satoshis (sums in `u128`), rates as
//! the engine's [`Rate`](switchyard_engine::market::Rate); every order's `btc_amount` is
//! recomputed from its own `amount` and `exchange_rate` with the engine's rule (rounded up at 8
//! decimals).

use std::collections::{BTreeMap, BTreeSet};

use switchyard_engine::market::Rate;

use super::ledger::{parse_amount_exact, parse_btc, parse_rate, Ledger, Sats};
use super::{OrderView, PriceView};

/// What the server holds at the end of a run, as the scenario read it.
#[derive(Debug, Clone, Default)]
pub struct ServerView {
    /// Each user slot's orders, every page in the order listed (newest first).
    pub per_user: Vec<Vec<OrderView>>,
    /// Every user's orders (admin, or the embedded engine), every page in the order listed.
    pub all: Vec<OrderView>,
    /// The server's own totals (satoshis, orders) where the transport reaches them.
    pub totals: Option<(u64, u64)>,
    /// The BTC total and order count of the server's listing before the run.
    pub before: (Sats, u64),
    /// The price read before the orders and after them.
    pub price_before: PriceView,
    pub price_after: PriceView,
    /// `market.cap_satoshis`.
    pub cap_satoshis: u64,
}

/// What the check found.
#[derive(Debug, Clone, Default)]
pub struct Checked {
    pub differences: Vec<String>,
    /// The BTC of the ledger's orders.
    pub ledger_sats: Sats,
    /// The BTC of every order the server lists, and their number.
    pub server_sats: Sats,
    pub server_orders: u64,
    /// The price did not move: cap refusals were checked against it.
    pub price_stable: bool,
}

/// A listing read page after page must be newest first with no order twice: ids strictly
/// descending.
fn check_listing(name: &str, listing: &[OrderView], differences: &mut Vec<String>) {
    for pair in listing.windows(2) {
        if pair[1].id >= pair[0].id {
            differences.push(format!(
                "{name}: order {} is listed after order {} (expected newest first, each once)",
                pair[1].id, pair[0].id
            ));
        }
    }
}

/// The rates of a price, by currency code; `None` when one does not parse.
fn rates(price: &PriceView) -> Option<BTreeMap<&'static str, Rate>> {
    Some(BTreeMap::from([
        ("EUR", parse_rate(&price.eur)?),
        ("GBP", parse_rate(&price.gbp)?),
        ("USD", parse_rate(&price.usd)?),
    ]))
}

/// Compares the ledger with the server's view; returns every difference and the totals.
pub fn compare(ledger: &Ledger, server: &ServerView) -> Checked {
    let mut differences = Vec::new();
    let quote = rates(&server.price_before);
    if quote.is_none() {
        differences.push(format!(
            "the price read before the run does not parse: {:?}",
            server.price_before
        ));
    }
    // Stable: the same rates before and after, and every acknowledged order used them.
    let mut price_stable = quote.is_some() && quote == rates(&server.price_after);

    // Per key: the answers agree with each other and with the request.
    let mut ledger_sats = Sats::default();
    let mut ledger_count = 0u64;
    let mut key_of_id: BTreeMap<u64, &str> = BTreeMap::new();
    for record in &ledger.records {
        let key = &record.planned.key;
        for refusal in &record.other_refusals {
            differences.push(format!(
                "key {key}: a valid order (the same key and body on every copy) was refused: \
                 {refusal}"
            ));
        }
        let Some(order) = record.order() else {
            continue;
        };
        for answer in &record.answers[1..] {
            if answer.order != *order {
                differences.push(format!(
                    "key {key}: a replay answered {:?}, the first answer was {order:?}",
                    answer.order
                ));
            }
        }
        let created = record
            .answers
            .iter()
            .filter(|answer| answer.created)
            .count();
        if created > 1 {
            differences.push(format!(
                "key {key}: {created} answers were 201 (a new order), expected one"
            ));
        } else if created == 0 && record.unanswered == 0 {
            differences.push(format!(
                "key {key}: every attempt was answered, none with 201 (a new order)"
            ));
        }
        if let Some(previous) = key_of_id.insert(order.id, key) {
            differences.push(format!(
                "order {}: the answer to two keys ({previous} and {key})",
                order.id
            ));
        }
        if order.user_id != record.user_id {
            differences.push(format!(
                "key {key}: order {} belongs to user {}, placed by user {}",
                order.id, order.user_id, record.user_id
            ));
        }
        let code = record.planned.currency_code();
        if order.currency != code {
            differences.push(format!(
                "key {key}: order {} is in {}, asked for {}",
                order.id, order.currency, record.planned.currency
            ));
        }
        if parse_amount_exact(&order.amount) != Some(record.planned.cents) {
            differences.push(format!(
                "key {key}: order {} is for {:?}, asked for {}",
                order.id, order.amount, record.planned.amount
            ));
        }
        let rate = parse_rate(&order.exchange_rate);
        let sats = parse_btc(&order.btc_amount);
        match (rate, sats) {
            (Some(rate), Some(sats)) => {
                if rate.btc_for(record.planned.cents) != Some(sats) {
                    differences.push(format!(
                        "key {key}: order {}: {} / {} rounded up is {}, the order says {}",
                        order.id,
                        record.planned.amount,
                        order.exchange_rate,
                        rate.btc_for(record.planned.cents)
                            .map(|sats| Sats(u128::from(sats)).to_string())
                            .unwrap_or_else(|| "out of range".into()),
                        order.btc_amount
                    ));
                }
                ledger_sats.0 += u128::from(sats);
                ledger_count += 1;
                if quote
                    .as_ref()
                    .and_then(|quote| quote.get(code.as_str()))
                    .is_some_and(|quoted| *quoted != rate)
                {
                    price_stable = false;
                }
            }
            _ => differences.push(format!(
                "key {key}: order {}: exchange_rate {:?} or btc_amount {:?} is not a number of \
                 API.md's form",
                order.id, order.exchange_rate, order.btc_amount
            )),
        }
    }

    // Every user's listing against the ledger, order by order and field by field.
    let mut ledger_by_user: Vec<BTreeMap<u64, (&str, &OrderView)>> =
        vec![BTreeMap::new(); ledger.user_ids.len()];
    for record in &ledger.records {
        if let Some(order) = record.order() {
            ledger_by_user[record.planned.user].insert(order.id, (&record.planned.key, order));
        }
    }
    for (slot, expected) in ledger_by_user.iter().enumerate() {
        let user_id = ledger.user_ids[slot];
        let name = format!("user {user_id} (u{slot})");
        let listed = server.per_user.get(slot).map(Vec::as_slice).unwrap_or(&[]);
        check_listing(&format!("{name}'s orders"), listed, &mut differences);
        compare_listing(
            &name,
            listed,
            expected,
            |order| order.user_id == user_id,
            &mut differences,
        );
    }

    // Every user's orders: the bot's are there as in the ledger; the sums hold.
    check_listing("all orders", &server.all, &mut differences);
    let ours: BTreeSet<u64> = ledger.user_ids.iter().copied().collect();
    let expected_all: BTreeMap<u64, (&str, &OrderView)> = ledger_by_user
        .iter()
        .flat_map(|orders| orders.iter().map(|(id, entry)| (*id, *entry)))
        .collect();
    compare_listing(
        "all orders",
        &server.all,
        &expected_all,
        |order| ours.contains(&order.user_id),
        &mut differences,
    );
    let mut server_sats = Sats::default();
    for order in &server.all {
        match parse_btc(&order.btc_amount) {
            Some(sats) => server_sats.0 += u128::from(sats),
            None => differences.push(format!(
                "all orders: order {}'s btc_amount {:?} is not a BTC amount of API.md's form",
                order.id, order.btc_amount
            )),
        }
    }
    let server_orders = server.all.len() as u64;
    let (before_sats, before_count) = server.before;
    if server_sats.0 != before_sats.0 + ledger_sats.0
        || server_orders != before_count + ledger_count
    {
        differences.push(format!(
            "the server's orders sum to {server_sats} BTC in {server_orders} orders; before the run \
             {before_sats} BTC in {before_count}, plus the ledger's {ledger_sats} BTC in \
             {ledger_count} makes {} BTC in {}",
            Sats(before_sats.0 + ledger_sats.0),
            before_count + ledger_count
        ));
    }
    let cap = Sats(u128::from(server.cap_satoshis));
    if server_sats > cap {
        differences.push(format!(
            "the server's orders sum to {server_sats} BTC, above the cap of {cap} BTC"
        ));
    }
    if let Some((sats, count)) = server.totals {
        if u128::from(sats) != server_sats.0 || count != server_orders {
            differences.push(format!(
                "the server's totals say {} BTC in {count} orders, its listing {server_sats} BTC \
                 in {server_orders}",
                Sats(u128::from(sats))
            ));
        }
    }

    // Cap refusals: against a stable price, an order refused as over the cap must not fit next
    // to the final total (the total only grows, so it did not fit when it was decided either),
    // and a key refused as over the cap never made an order.
    if price_stable {
        // Invariant: a stable price parsed (checked above).
        let quote = quote.as_ref().expect("a stable price parsed");
        for record in ledger
            .records
            .iter()
            .filter(|record| record.cap_refusals > 0)
        {
            let key = &record.planned.key;
            if let Some(order) = record.order() {
                differences.push(format!(
                    "key {key}: refused as over the cap, yet also answered with order {} at the \
                     same price",
                    order.id
                ));
                continue;
            }
            let rate = quote[record.planned.currency_code().as_str()];
            match rate.btc_for(record.planned.cents) {
                Some(sats) if server_sats.0 + u128::from(sats) <= cap.0 => {
                    differences.push(format!(
                        "key {key}: {} {} ({} BTC) was refused as over the cap, but it fits next \
                         to the final total of {server_sats} BTC (cap {cap} BTC)",
                        record.planned.amount,
                        record.planned.currency_code(),
                        Sats(u128::from(sats))
                    ));
                }
                _ => {}
            }
        }
    }

    Checked {
        differences,
        ledger_sats,
        server_sats,
        server_orders,
        price_stable,
    }
}

/// `listed` against `expected` (id → key and order): every expected order is listed with the
/// same fields, and every listed order that `ours` claims is expected.
fn compare_listing(
    name: &str,
    listed: &[OrderView],
    expected: &BTreeMap<u64, (&str, &OrderView)>,
    ours: impl Fn(&OrderView) -> bool,
    differences: &mut Vec<String>,
) {
    let mut seen = BTreeSet::new();
    for order in listed {
        if !ours(order) {
            // In a user's own listing every order must be the user's.
            if !name.starts_with("all") {
                differences.push(format!(
                    "{name}: lists order {} of user {}",
                    order.id, order.user_id
                ));
            }
            continue;
        }
        seen.insert(order.id);
        match expected.get(&order.id) {
            None => differences.push(format!(
                "{name}: order {} is on the server but not in the ledger: {order:?}",
                order.id
            )),
            Some((key, acknowledged)) if *acknowledged != order => differences.push(format!(
                "{name}: order {} (key {key}) is listed as {order:?}, acknowledged as \
                 {acknowledged:?}",
                order.id
            )),
            Some(_) => {}
        }
    }
    for (id, (key, _)) in expected {
        if !seen.contains(id) {
            differences.push(format!(
                "{name}: order {id} (key {key}) was acknowledged but is missing on the server"
            ));
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::market::ledger::{plan, OrderRecord};
    use crate::market::Placement;

    fn price() -> PriceView {
        PriceView {
            eur: "50000".into(),
            gbp: "40000".into(),
            usd: "60000".into(),
            source: "fixed".into(),
        }
    }

    /// A ledger of 6 orders over 2 users, all acknowledged at the fixed price, the last one
    /// refused as over the cap; and the server view that agrees with it.
    fn honest() -> (Ledger, ServerView) {
        let quote = rates(&price()).unwrap();
        let user_ids = vec![11, 22];
        let mut records = Vec::new();
        for (at, planned) in plan(3, 2, 6, 500_000, 0).into_iter().enumerate() {
            let user_id = user_ids[planned.user];
            let mut record = OrderRecord::new(planned.clone(), user_id);
            if at == 5 {
                record.cap_refusals = 1;
            } else {
                let rate = quote[planned.currency_code().as_str()];
                let order = OrderView {
                    id: at as u64 + 1,
                    user_id,
                    currency: planned.currency_code(),
                    amount: planned.amount.clone(),
                    exchange_rate: rate.to_string(),
                    btc_amount: Sats(u128::from(rate.btc_for(planned.cents).unwrap())).to_string(),
                    created_at: format!("t{at}"),
                };
                record.answers.push(Placement {
                    created: true,
                    order: order.clone(),
                });
                if at == 2 {
                    record.answers.push(Placement {
                        created: false,
                        order,
                    });
                }
            }
            records.push(record);
        }
        let ledger = Ledger { user_ids, records };
        let mut all: Vec<OrderView> = ledger.acknowledged().map(|(_, o)| o.clone()).collect();
        all.sort_by_key(|order| std::cmp::Reverse(order.id));
        let per_user = ledger
            .user_ids
            .iter()
            .map(|id| all.iter().filter(|o| o.user_id == *id).cloned().collect())
            .collect();
        let total: u64 = all.iter().map(|o| parse_btc(&o.btc_amount).unwrap()).sum();
        // The refused order (up to 5,000.00 at 40,000 or more: at most 0.125 BTC) does not fit.
        let server = ServerView {
            per_user,
            totals: Some((total, all.len() as u64)),
            all,
            before: (Sats(0), 0),
            price_before: price(),
            price_after: price(),
            cap_satoshis: total + 1,
        };
        (ledger, server)
    }

    fn differences(ledger: &Ledger, server: &ServerView) -> Vec<String> {
        compare(ledger, server).differences
    }

    fn assert_found(found: &[String], fragment: &str) {
        assert!(
            found.iter().any(|difference| difference.contains(fragment)),
            "no difference mentions {fragment:?}: {found:#?}"
        );
    }

    #[test]
    fn an_honest_view_agrees() {
        let (ledger, server) = honest();
        let checked = compare(&ledger, &server);
        assert!(checked.differences.is_empty(), "{:#?}", checked.differences);
        assert!(checked.price_stable);
        assert_eq!(checked.server_orders, 5);
        assert_eq!(checked.ledger_sats, checked.server_sats);
    }

    #[test]
    fn a_ledger_that_lost_an_acknowledged_order_is_a_mismatch() {
        let (mut ledger, server) = honest();
        ledger.records[1].answers.clear();
        let found = differences(&ledger, &server);
        assert_found(&found, "is on the server but not in the ledger");
        assert_found(&found, "the server's orders sum to");
    }

    #[test]
    fn an_altered_order_is_a_mismatch() {
        let (ledger, mut server) = honest();
        server.per_user[ledger.records[0].planned.user]
            .iter_mut()
            .find(|order| order.id == 1)
            .unwrap()
            .btc_amount = "0.00000001".into();
        assert_found(&differences(&ledger, &server), "acknowledged as");
        let (ledger, mut server) = honest();
        server.all.retain(|order| order.id != 4);
        let found = differences(&ledger, &server);
        assert_found(&found, "order 4 (key");
        assert_found(&found, "missing on the server");
    }

    #[test]
    fn replays_must_repeat_the_order_and_keys_make_one_order() {
        let (mut ledger, server) = honest();
        ledger.records[2].answers[1].order.id = 99;
        assert_found(&differences(&ledger, &server), "a replay answered");
        let (mut ledger, server) = honest();
        ledger.records[2].answers[1].created = true;
        assert_found(&differences(&ledger, &server), "2 answers were 201");
        let (mut ledger, server) = honest();
        ledger.records[0].answers[0].created = false;
        assert_found(&differences(&ledger, &server), "none with 201");
        // With an attempt unanswered, the 201 may have been the lost answer.
        ledger.records[0].unanswered = 1;
        assert!(differences(&ledger, &server).is_empty());
    }

    #[test]
    fn wrong_arithmetic_and_cap_refusals_are_mismatches() {
        let (mut ledger, mut server) = honest();
        // A rounding down: one satoshi less than amount / rate rounded up.
        let order = &mut ledger.records[0].answers[0].order;
        let sats = parse_btc(&order.btc_amount).unwrap() - 1;
        order.btc_amount = Sats(u128::from(sats)).to_string();
        let fixed = order.clone();
        for listing in server.per_user.iter_mut().chain([&mut server.all]) {
            for listed in listing.iter_mut().filter(|listed| listed.id == fixed.id) {
                *listed = fixed.clone();
            }
        }
        server.totals = server.totals.map(|(sats, count)| (sats - 1, count));
        assert_found(&differences(&ledger, &server), "rounded up is");

        // A refusal of an order that fits under the cap.
        let (ledger, mut server) = honest();
        server.cap_satoshis = 1_000 * 100_000_000;
        assert_found(
            &differences(&ledger, &server),
            "but it fits next to the final total",
        );
        // Over the cap at the end.
        let (ledger, mut server) = honest();
        server.cap_satoshis = 1;
        assert_found(&differences(&ledger, &server), "above the cap");
        // With a moving price refusals are not judged against a rate.
        let (ledger, mut server) = honest();
        server.cap_satoshis = 1_000 * 100_000_000;
        server.price_after.eur = "50001".into();
        let checked = compare(&ledger, &server);
        assert!(!checked.price_stable);
        assert!(checked.differences.is_empty(), "{:#?}", checked.differences);
    }

    #[test]
    fn a_listing_out_of_order_or_with_a_stranger_is_a_mismatch() {
        let (ledger, mut server) = honest();
        server.all.reverse();
        assert_found(&differences(&ledger, &server), "expected newest first");
        let (ledger, mut server) = honest();
        let stranger = server.per_user[1][0].clone();
        server.per_user[0].insert(
            0,
            OrderView {
                id: 1000,
                ..stranger
            },
        );
        assert_found(
            &differences(&ledger, &server),
            "lists order 1000 of user 22",
        );
    }
}
