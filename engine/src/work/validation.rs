//! Input rules of the work API, checked before a command reaches an actor: item keys,
//! registrations, and the size of the record a report would make.

use super::{
    Registration, Report, EXTERNAL_ID_BYTES_MAX, EXTERNAL_ID_BYTES_MIN, KEY_BYTES_MAX,
    KEY_CHARS_MAX, KEY_RECORD_OVERHEAD_BYTES, RESULT_RECORD_OVERHEAD_BYTES, SCREEN_NAME_CHARS_MAX,
};
use crate::error::{Error, Result};

/// Checks an item key: 1..=`KEY_CHARS_MAX` characters, no control characters.
pub fn valid_key(key: &str) -> bool {
    !key.is_empty()
        && key.len() <= KEY_BYTES_MAX
        && key.chars().count() <= KEY_CHARS_MAX
        && !key.chars().any(char::is_control)
}

pub(super) fn key_error(field: &str) -> Error {
    Error::invalid_field(
        "invalid_field",
        field,
        format!("a key must be 1..={KEY_CHARS_MAX} characters without control characters"),
    )
}

/// Checks a registration's fields (API.md 400 `invalid_field`).
pub fn validate_registration(registration: &Registration) -> Result<()> {
    let name = &registration.screen_name;
    if name.trim().is_empty()
        || name.chars().count() > SCREEN_NAME_CHARS_MAX
        || name.chars().any(char::is_control)
    {
        return Err(Error::invalid_field(
            "invalid_field",
            "screen_name",
            format!("screen_name must be 1..={SCREEN_NAME_CHARS_MAX} characters of text"),
        ));
    }
    let id = &registration.external_id;
    if id.len() < EXTERNAL_ID_BYTES_MIN
        || id.len() > EXTERNAL_ID_BYTES_MAX
        || !id
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b"._:@-".contains(&b))
    {
        return Err(Error::invalid_field(
            "invalid_field",
            "external_id",
            format!(
                "external_id must be {EXTERNAL_ID_BYTES_MIN}..={EXTERNAL_ID_BYTES_MAX} characters of A-Z a-z 0-9 . _ : @ - (it is the client's secret)"
            ),
        ));
    }
    Ok(())
}

/// An upper bound of the WAL record a report makes: its keys, details and discovered keys, with
/// each entry's encoding overhead.
pub(super) fn report_record_bytes(report: &Report) -> usize {
    let results: usize = report
        .results
        .iter()
        .map(|result| {
            result.key.len()
                + result.detail.as_ref().map_or(0, String::len)
                + RESULT_RECORD_OVERHEAD_BYTES
        })
        .sum();
    let discovered: usize = report
        .discovered
        .iter()
        .map(|key| key.len() + KEY_RECORD_OVERHEAD_BYTES)
        .sum();
    results + discovered
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn registration_fields_are_checked() {
        let secret = "dora-secret-0001";
        assert_eq!(secret.len(), EXTERNAL_ID_BYTES_MIN);
        for (screen_name, external_id) in [
            ("Dora", secret),
            ("Dora", &"9".repeat(EXTERNAL_ID_BYTES_MAX)),
        ] {
            let ok = Registration {
                screen_name: screen_name.into(),
                external_id: external_id.into(),
            };
            assert!(validate_registration(&ok).is_ok(), "{ok:?}");
        }
        for (screen_name, external_id) in [
            ("", secret),
            ("  ", secret),
            ("dora", ""),
            ("dora", "1234"),
            ("dora", &secret[1..]),
            ("dora", "has space has space"),
            ("dora", &"9".repeat(EXTERNAL_ID_BYTES_MAX + 1)),
            (&"x".repeat(SCREEN_NAME_CHARS_MAX + 1), secret),
        ] {
            let registration = Registration {
                screen_name: screen_name.into(),
                external_id: external_id.into(),
            };
            assert!(
                validate_registration(&registration).is_err(),
                "{registration:?}"
            );
        }
    }

    #[test]
    fn limits_count_characters() {
        let wide = "\u{1F600}"; // four bytes of UTF-8
        assert!(valid_key(&wide.repeat(KEY_CHARS_MAX)));
        assert!(!valid_key(&wide.repeat(KEY_CHARS_MAX + 1)));
        assert!(!valid_key(&"k".repeat(KEY_CHARS_MAX + 1)));
        assert!(!valid_key("bell\u{7}"));
        assert!(!valid_key("c1\u{85}"));
        let named = |screen_name: String| Registration {
            screen_name,
            external_id: "dora-secret-0001".into(),
        };
        assert!(validate_registration(&named(wide.repeat(SCREEN_NAME_CHARS_MAX))).is_ok());
        assert!(validate_registration(&named(wide.repeat(SCREEN_NAME_CHARS_MAX + 1))).is_err());
    }
}
