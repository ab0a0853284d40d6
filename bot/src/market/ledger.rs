//! The market scenario's plan and ledger: what the bot asked for ([`PlannedOrder`], one per
//! `Idempotency-Key`) and every answer the server gave for it ([`OrderRecord`]), and the exact
//! text forms of money the check reads (amounts in cents, BTC in satoshis, rates as
//! [`Rate`]s, through the engine's own money helpers; never a float).

use std::fmt;

use switchyard_engine::market::money::{self, format_cents, format_sats, SATS_PER_BTC};
use switchyard_engine::market::Rate;

use super::{OrderView, Placement};
use crate::rng::Rng;

/// How many times, and how, a planned order is sent (before any retry).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Copies {
    /// Once.
    Once,
    /// Twice at the same time, the same key and body: the server must make one order and
    /// answer both with it.
    Together,
    /// Twice, the second after the first was answered: the second must be a replay.
    InTurn,
}

impl Copies {
    pub fn count(self) -> usize {
        match self {
            Copies::Once => 1,
            Copies::Together | Copies::InTurn => 2,
        }
    }

    fn as_str(self) -> &'static str {
        match self {
            Copies::Once => "once",
            Copies::Together => "twice-together",
            Copies::InTurn => "twice-in-turn",
        }
    }
}

/// One order the bot means to place: its key and body, exactly as sent on every copy and
/// every retry.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PlannedOrder {
    /// Position in the plan (`o<index>` in the op log).
    pub index: usize,
    /// The user slot (`u<user>`), an index into the run's users.
    pub user: usize,
    /// `Idempotency-Key`: `bot-<seed in hex>-<index>`.
    pub key: String,
    /// As sent: `EUR`, `GBP` or `USD` in a random mix of cases (`eUr`).
    pub currency: String,
    /// As sent: a decimal string with 2 decimals.
    pub amount: String,
    /// `amount` in cents.
    pub cents: u64,
    pub copies: Copies,
}

impl PlannedOrder {
    /// The line of the op log.
    pub fn log_line(&self) -> String {
        format!(
            "o{} u{} {} {} {} {}",
            self.index,
            self.user,
            self.currency,
            self.amount,
            self.key,
            self.copies.as_str()
        )
    }

    /// The currency code, upper case (what an order carries).
    pub fn currency_code(&self) -> String {
        self.currency.to_ascii_uppercase()
    }
}

/// The whole plan of a run, from its seed alone: `orders` orders spread over `users` users,
/// each currency and case, amount (1 cent to `max_amount_cents`) and duplication drawn from
/// their own streams.
pub fn plan(
    seed: u64,
    users: usize,
    orders: usize,
    max_amount_cents: u64,
    retry_percent: u64,
) -> Vec<PlannedOrder> {
    assert!(users > 0 && max_amount_cents > 0, "an empty plan");
    let mut rng = Rng::derive(seed, "market-orders");
    (0..orders)
        .map(|index| {
            let user = rng.below(users as u64) as usize;
            let code = ["EUR", "GBP", "USD"][rng.below(3) as usize];
            let currency: String = code
                .chars()
                .map(|letter| {
                    if rng.below(2) == 0 {
                        letter
                    } else {
                        letter.to_ascii_lowercase()
                    }
                })
                .collect();
            let cents = rng.between(1, max_amount_cents);
            let copies = if rng.below(100) < retry_percent {
                if rng.below(2) == 0 {
                    Copies::Together
                } else {
                    Copies::InTurn
                }
            } else {
                Copies::Once
            };
            PlannedOrder {
                index,
                user,
                key: format!("bot-{seed:016x}-{index}"),
                currency,
                amount: format_cents(cents),
                cents,
                copies,
            }
        })
        .collect()
}

/// What became of one planned order: every answer over all its copies and retries.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct OrderRecord {
    pub planned: PlannedOrder,
    /// The id of the user who placed it.
    pub user_id: u64,
    /// Every success answer (201 or 200), in the order they arrived.
    pub answers: Vec<Placement>,
    /// Copies refused with `409 btc_cap_exceeded` (nothing was made; not retried).
    pub cap_refusals: u32,
    /// Any other refusal of this valid order (`409 idempotency_key_reused`, a 4xx): each is a
    /// difference.
    pub other_refusals: Vec<String>,
    /// Attempts that got no answer at all (their fate unknown until the retry's answer).
    pub unanswered: u32,
}

impl OrderRecord {
    pub fn new(planned: PlannedOrder, user_id: u64) -> Self {
        OrderRecord {
            planned,
            user_id,
            answers: Vec::new(),
            cap_refusals: 0,
            other_refusals: Vec::new(),
            unanswered: 0,
        }
    }

    /// The order the server acknowledged for this key (its first answer), if any.
    pub fn order(&self) -> Option<&OrderView> {
        self.answers.first().map(|answer| &answer.order)
    }
}

/// The bot's ledger at the end of the ordering phase: the run's users and one record per
/// planned order (index = the plan's index).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Ledger {
    /// The user id of each user slot.
    pub user_ids: Vec<u64>,
    pub records: Vec<OrderRecord>,
}

impl Ledger {
    /// Every acknowledged order, with its key.
    pub fn acknowledged(&self) -> impl Iterator<Item = (&str, &OrderView)> {
        self.records
            .iter()
            .filter_map(|record| Some((record.planned.key.as_str(), record.order()?)))
    }
}

/// A sum of BTC in satoshis, summed in `u128` so no count of orders overflows it.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, PartialOrd, Ord)]
pub struct Sats(pub u128);

impl fmt::Display for Sats {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match u64::try_from(self.0) {
            Ok(sats) => f.write_str(&format_sats(sats)),
            Err(_) => {
                let per_btc = u128::from(SATS_PER_BTC);
                write!(f, "{}.{:08}", self.0 / per_btc, self.0 % per_btc)
            }
        }
    }
}

/// Parses a BTC amount as API.md prints it (`"0.00123457"`: digits, a point, exactly 8
/// decimals) into satoshis; `None` for any other form.
pub fn parse_btc(text: &str) -> Option<u64> {
    let (whole, fraction) = text.split_once('.')?;
    let digits = |part: &str| !part.is_empty() && part.bytes().all(|b| b.is_ascii_digit());
    if !digits(whole) || !digits(fraction) || fraction.len() != 8 {
        return None;
    }
    let sats = whole
        .parse::<u64>()
        .ok()?
        .checked_mul(SATS_PER_BTC)?
        .checked_add(fraction.parse::<u64>().ok()?)?;
    // Canonical only: no leading zeros beyond the one before the point.
    (format_sats(sats) == text).then_some(sats)
}

/// Parses an amount as API.md prints it (exactly 2 decimals) into cents; `None` for any other
/// form.
pub fn parse_amount_exact(text: &str) -> Option<u64> {
    let cents = money::parse_amount(text).ok()?;
    (format_cents(cents) == text).then_some(cents)
}

/// Parses an exchange rate; `None` when it is not a rate.
pub fn parse_rate(text: &str) -> Option<Rate> {
    Rate::parse(text)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn btc_and_amounts_parse_only_in_their_printed_form() {
        assert_eq!(parse_btc("0.00123457"), Some(123_457));
        assert_eq!(parse_btc("100.00000000"), Some(100 * SATS_PER_BTC));
        for bad in [
            "0.0012345",
            "0.001234570",
            "00.00123457",
            "1",
            ".00000001",
            "-0.00000001",
        ] {
            assert_eq!(parse_btc(bad), None, "{bad}");
        }
        assert_eq!(parse_amount_exact("69.00"), Some(6900));
        for bad in ["69", "69.0", "069.00", "0.00", "-1.00"] {
            assert_eq!(parse_amount_exact(bad), None, "{bad}");
        }
        let big = Sats(u128::from(u64::MAX) + 1);
        assert_eq!(big.to_string(), "184467440737.09551616");
        assert_eq!(Sats(1).to_string(), "0.00000001");
    }

    #[test]
    fn the_plan_is_a_function_of_the_seed() {
        let first = plan(9, 4, 200, 100_000, 30);
        assert_eq!(first, plan(9, 4, 200, 100_000, 30));
        assert_ne!(first, plan(10, 4, 200, 100_000, 30));
        let keys: std::collections::BTreeSet<&str> =
            first.iter().map(|order| order.key.as_str()).collect();
        assert_eq!(keys.len(), 200, "one key per order");
        let twice = first
            .iter()
            .filter(|order| order.copies != Copies::Once)
            .count();
        assert!((30..=90).contains(&twice), "about 30 % of 200: {twice}");
        assert!(first.iter().any(|order| order.copies == Copies::Together));
        assert!(first.iter().any(|order| order.copies == Copies::InTurn));
        for order in &first {
            assert!(order.user < 4);
            assert!((1..=100_000).contains(&order.cents));
            assert_eq!(parse_amount_exact(&order.amount), Some(order.cents));
            assert!(["EUR", "GBP", "USD"].contains(&order.currency_code().as_str()));
        }
        // Cases are mixed: some currency is sent neither all upper nor all lower case.
        assert!(first.iter().any(|order| {
            order.currency != order.currency_code()
                && order.currency != order.currency.to_ascii_lowercase()
        }));
        assert!(plan(9, 4, 50, 100, 0)
            .iter()
            .all(|order| order.copies == Copies::Once));
    }
}
