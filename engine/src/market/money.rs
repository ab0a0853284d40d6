//! Exact money: fiat amounts in cents, BTC in satoshis, exchange rates as a decimal mantissa and
//! scale. Every value is an integer; no binary floating point touches the money path, and the
//! one division (`btc = amount / rate`, rounded up at 8 decimals) is done on `u128` integers, so
//! it is exact: no intermediate rounding can hide a remainder (a 96-bit decimal type rounds the
//! quotient to 28 significant digits first, which for the largest amount and the smallest rate
//! can turn "one satoshi over" into "exact").
//!
//! Text forms: amounts parse from `"69"`, `"69.5"`, `"69.50"` (at most 2 decimals, no sign, no
//! exponent, no spaces) and print with exactly 2 decimals; BTC prints with exactly 8; rates parse
//! from a decimal literal (an exponent is allowed, as a JSON number may carry one) with at most
//! [`RATE_SCALE_MAX`] decimals, below 10^12, and at most 19 significant digits (a `u64`
//! mantissa), and print without trailing zeros.

use std::fmt;

use serde::{Deserialize, Serialize};

/// Satoshis in one BTC.
pub const SATS_PER_BTC: u64 = 100_000_000;
/// Decimals a rate may carry.
pub const RATE_SCALE_MAX: u32 = 12;
/// Integer digits a rate may carry (rates below 10^12 per BTC).
pub const RATE_INTEGER_DIGITS_MAX: u32 = 12;

/// Why an amount's text was refused.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum AmountError {
    /// Not a decimal with at most 2 decimals (a 400).
    Malformed,
    /// Well formed, but not 0 < amount < 1,000,000,000 (a 422).
    OutOfRange,
}

/// The largest amount accepted, in cents (999,999,999.99).
pub const AMOUNT_CENTS_MAX: u64 = 99_999_999_999;

/// Parses an amount (`"69.00"`) into cents. A leading `-` is well formed and out of range.
pub fn parse_amount(text: &str) -> Result<u64, AmountError> {
    let (negative, digits) = match text.strip_prefix('-') {
        Some(rest) => (true, rest),
        None => (false, text),
    };
    let (whole, fraction) = match digits.split_once('.') {
        Some((whole, fraction)) => (whole, Some(fraction)),
        None => (digits, None),
    };
    let all_digits = |s: &str| !s.is_empty() && s.bytes().all(|b| b.is_ascii_digit());
    if !all_digits(whole) || fraction.is_some_and(|f| !all_digits(f) || f.len() > 2) {
        return Err(AmountError::Malformed);
    }
    let whole = whole.trim_start_matches('0');
    if whole.len() > 9 {
        return Err(AmountError::OutOfRange);
    }
    let whole: u64 = if whole.is_empty() {
        0
    } else {
        whole.parse().map_err(|_| AmountError::Malformed)?
    };
    let cents = match fraction {
        None => 0,
        Some(f) if f.len() == 1 => u64::from(f.as_bytes()[0] - b'0') * 10,
        Some(f) => u64::from(f.as_bytes()[0] - b'0') * 10 + u64::from(f.as_bytes()[1] - b'0'),
    };
    let total = whole * 100 + cents;
    if negative || total == 0 || total > AMOUNT_CENTS_MAX {
        return Err(AmountError::OutOfRange);
    }
    Ok(total)
}

/// Cents as text with exactly 2 decimals (`6900` → `"69.00"`).
pub fn format_cents(cents: u64) -> String {
    format!("{}.{:02}", cents / 100, cents % 100)
}

/// Satoshis as BTC text with exactly 8 decimals (`123457` → `"0.00123457"`).
pub fn format_sats(sats: u64) -> String {
    format!("{}.{:08}", sats / SATS_PER_BTC, sats % SATS_PER_BTC)
}

/// An exchange rate, fiat per BTC: `units / 10^scale`, always above zero.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct Rate {
    units: u64,
    scale: u8,
}

impl Rate {
    /// `units / 10^scale`; `None` for zero, a scale above [`RATE_SCALE_MAX`], or a value of
    /// 10^12 or more.
    pub fn new(units: u64, scale: u32) -> Option<Rate> {
        if units == 0 || scale > RATE_SCALE_MAX {
            return None;
        }
        let rate = Rate {
            units,
            scale: scale as u8,
        }
        .normalized();
        let limit = 10u128.pow(RATE_INTEGER_DIGITS_MAX + u32::from(rate.scale));
        (u128::from(rate.units) < limit).then_some(rate)
    }

    /// The mantissa and scale.
    pub fn parts(self) -> (u64, u32) {
        (self.units, u32::from(self.scale))
    }

    /// Without trailing zeros in the mantissa, so equal rates compare equal.
    fn normalized(mut self) -> Rate {
        while self.scale > 0 && self.units.is_multiple_of(10) {
            self.units /= 10;
            self.scale -= 1;
        }
        self
    }

    /// Parses a decimal literal: digits with an optional fraction and an optional exponent
    /// (`"57035.8467"`, `"5.70358467e4"`). No sign, no spaces.
    pub fn parse(text: &str) -> Option<Rate> {
        if text.len() > 64 {
            return None;
        }
        let (mantissa, exponent) = match text.find(['e', 'E']) {
            Some(at) => (&text[..at], Some(&text[at + 1..])),
            None => (text, None),
        };
        let exponent: i32 = match exponent {
            None => 0,
            Some(e) => {
                let digits = e.strip_prefix('+').unwrap_or(e);
                let (negative, digits) = match digits.strip_prefix('-') {
                    Some(d) if !e.starts_with('+') => (true, d),
                    _ => (false, digits),
                };
                if digits.is_empty() || digits.len() > 3 || !digits.bytes().all(|b| b.is_ascii_digit())
                {
                    return None;
                }
                let value: i32 = digits.parse().ok()?;
                if negative {
                    -value
                } else {
                    value
                }
            }
        };
        let (whole, fraction) = match mantissa.split_once('.') {
            Some((w, f)) => (w, f),
            None => (mantissa, ""),
        };
        if whole.is_empty() || !(whole.bytes().chain(fraction.bytes())).all(|b| b.is_ascii_digit())
        {
            return None;
        }
        if mantissa.contains('.') && fraction.is_empty() {
            return None;
        }
        // value = digits × 10^(exponent − fraction.len()), the digits without leading zeros.
        let digits = format!("{whole}{fraction}");
        let digits = digits.trim_start_matches('0');
        let mut digits = digits.to_string();
        let mut scale = fraction.len() as i32 - exponent;
        // Trailing zeros of the mantissa can go while the scale stays at or above zero.
        while scale > 0 && digits.ends_with('0') {
            digits.pop();
            scale -= 1;
        }
        if digits.is_empty() {
            return None;
        }
        if scale < 0 {
            digits.extend(std::iter::repeat_n('0', scale.unsigned_abs() as usize));
            scale = 0;
        }
        if digits.len() > 19 {
            return None;
        }
        let units: u64 = digits.parse().ok()?;
        Rate::new(units, u32::try_from(scale).ok()?)
    }

    /// `amount / self` in satoshis, rounded up: `ceil(cents × 10^(6 + scale) / units)`. Exact.
    /// `None` only when the quotient does not fit a `u64` (far above any cap).
    pub fn btc_for(self, cents: u64) -> Option<u64> {
        let numerator = u128::from(cents) * 10u128.pow(6 + u32::from(self.scale));
        let units = u128::from(self.units);
        u64::try_from(numerator.div_ceil(units)).ok()
    }
}

impl fmt::Display for Rate {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let scale = u32::from(self.scale);
        if scale == 0 {
            return write!(f, "{}", self.units);
        }
        let divisor = 10u64.pow(scale);
        write!(
            f,
            "{}.{:0width$}",
            self.units / divisor,
            self.units % divisor,
            width = scale as usize
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn amounts_parse_exactly_and_refuse_what_is_not_two_decimals() {
        let table: &[(&str, Result<u64, AmountError>)] = &[
            ("69", Ok(6900)),
            ("69.0", Ok(6900)),
            ("69.5", Ok(6950)),
            ("69.05", Ok(6905)),
            ("0.01", Ok(1)),
            ("000069.00", Ok(6900)),
            ("999999999.99", Ok(AMOUNT_CENTS_MAX)),
            ("1000000000", Err(AmountError::OutOfRange)),
            ("1000000000.00", Err(AmountError::OutOfRange)),
            ("99999999999999999999999", Err(AmountError::OutOfRange)),
            ("0", Err(AmountError::OutOfRange)),
            ("0.00", Err(AmountError::OutOfRange)),
            ("-1", Err(AmountError::OutOfRange)),
            ("-0.01", Err(AmountError::OutOfRange)),
            ("69.001", Err(AmountError::Malformed)),
            ("69.", Err(AmountError::Malformed)),
            (".5", Err(AmountError::Malformed)),
            ("", Err(AmountError::Malformed)),
            ("1e3", Err(AmountError::Malformed)),
            ("+5", Err(AmountError::Malformed)),
            (" 5", Err(AmountError::Malformed)),
            ("5 ", Err(AmountError::Malformed)),
            ("1,000", Err(AmountError::Malformed)),
            ("NaN", Err(AmountError::Malformed)),
            ("--1", Err(AmountError::Malformed)),
            ("٣", Err(AmountError::Malformed)),
        ];
        for (text, expected) in table {
            assert_eq!(parse_amount(text), *expected, "{text:?}");
        }
        assert_eq!(format_cents(6900), "69.00");
        assert_eq!(format_cents(1), "0.01");
        assert_eq!(format_cents(AMOUNT_CENTS_MAX), "999999999.99");
    }

    #[test]
    fn rates_parse_from_decimal_literals_and_print_canonically() {
        let table: &[(&str, Option<&str>)] = &[
            ("57035.8467", Some("57035.8467")),
            ("57035.84670", Some("57035.8467")),
            ("5.70358467e4", Some("57035.8467")),
            ("5.70358467E+4", Some("57035.8467")),
            ("570358467e-4", Some("57035.8467")),
            ("1", Some("1")),
            ("1.0", Some("1")),
            ("0.000000000001", Some("0.000000000001")),
            ("0.0000000000001", None),
            ("1e12", None),
            // 19 significant digits fit the mantissa; 24 do not.
            ("999999999999.9999999", Some("999999999999.9999999")),
            ("999999999999.999999999999", None),
            ("0", None),
            ("0.0", None),
            ("-1", None),
            ("1.", None),
            (".1", None),
            ("", None),
            ("1e", None),
            ("1e-", None),
            ("1,5", None),
            ("inf", None),
        ];
        for (text, expected) in table {
            assert_eq!(
                Rate::parse(text).map(|r| r.to_string()).as_deref(),
                *expected,
                "{text:?}"
            );
        }
        assert_eq!(Rate::parse("57035.8467"), Rate::parse("57035.846700"));
    }

    /// The rounding edge cases of the issue, as a table: (amount, rate) → BTC, rounded up.
    #[test]
    fn btc_is_the_quotient_rounded_up_at_eight_decimals() {
        let table: &[(&str, &str, &str)] = &[
            // An exact quotient stays as it is.
            ("69.00", "69", "1.00000000"),
            ("50.00", "40000", "0.00125000"),
            ("1.00", "100000000", "0.00000001"),
            // One satoshi over: any remainder rounds up.
            ("69.00", "55890.2", "0.00123457"),
            ("1.00", "100000001", "0.00000001"),
            ("1.00", "99999999", "0.00000002"),
            ("0.01", "57035.8467", "0.00000018"),
            // The largest amount with the smallest rate (the quotient needs 29 digits).
            ("999999999.99", "0.000000000001", "999999999990000000000.00000000"),
            // The largest amount with a rate just above one: one satoshi over an exact value.
            ("999999999.99", "1.000000000001", "999999999.98900001"),
            // The smallest amount with the largest rate.
            ("0.01", "999999999999.9999999", "0.00000001"),
        ];
        for (amount, rate, btc) in table {
            let cents = parse_amount(amount).unwrap();
            let rate = Rate::parse(rate).unwrap();
            let numerator = u128::from(cents) * 10u128.pow(6 + rate.parts().1);
            let exact = numerator.div_ceil(u128::from(rate.parts().0));
            let text = format!(
                "{}.{:08}",
                exact / u128::from(SATS_PER_BTC),
                exact % u128::from(SATS_PER_BTC)
            );
            assert_eq!(text, *btc, "{amount} / {rate}");
            match rate.btc_for(cents) {
                Some(sats) => assert_eq!(format_sats(sats), *btc, "{amount} / {rate}"),
                None => assert!(exact > u128::from(u64::MAX), "{amount} / {rate}"),
            }
        }
    }

    #[test]
    fn rounding_up_is_never_below_the_exact_quotient_and_never_a_satoshi_above() {
        use rand::rngs::Xoshiro256PlusPlus;
        use rand::{RngExt as _, SeedableRng};
        let mut rng = Xoshiro256PlusPlus::seed_from_u64(7);
        for _ in 0..20_000 {
            let cents = rng.random_range(1..=AMOUNT_CENTS_MAX);
            let scale = rng.random_range(0..=RATE_SCALE_MAX);
            let units = rng.random_range(1..10u64.pow(12));
            let Some(rate) = Rate::new(units, scale) else {
                continue;
            };
            let Some(sats) = rate.btc_for(cents) else {
                continue;
            };
            let (units, scale) = rate.parts();
            // sats × rate ≥ amount > (sats − 1) × rate, in integers scaled to 10^(6+scale).
            let amount = u128::from(cents) * 10u128.pow(6 + scale);
            assert!(u128::from(sats) * u128::from(units) >= amount);
            assert!(u128::from(sats - 1) * u128::from(units) < amount);
        }
    }
}
