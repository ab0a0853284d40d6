//! The HTTP price source: GET a CoinDesk-v1-shaped document (`market.price_source` is its URL)
//! and read `bpi.{USD,GBP,EUR}.rate_float`. The numbers are read from their JSON text
//! (`RawValue`), never through a binary float, so `57035.8467` is exactly that rate.
//!
//! A fetch runs on the `market.price` effect worker (never an actor thread), blocking on a
//! small runtime of its own for at most `market.price_fetch_timeout_ms`. Every failure (no
//! answer, a status other than 2xx, a body that is not that document, a rate that is not a
//! positive decimal) is reported to the feed, which keeps the last price until it is too old.

use std::sync::Arc;
use std::time::Duration;

use serde::Deserialize;
use serde_json::value::RawValue;
use switchyard_engine::market::source::Rates;
use switchyard_engine::market::{PriceSource, Quote, Rate};

use crate::adapters::AdapterClient;
use crate::error::Error;

/// The largest document read; CoinDesk's is under 1 KiB.
const PRICE_DOCUMENT_BYTES_MAX: usize = 64 * 1024;

pub struct HttpPriceSource {
    url: String,
    timeout: Duration,
    runtime: Arc<tokio::runtime::Runtime>,
    client: AdapterClient,
}

impl HttpPriceSource {
    pub fn new(url: String, timeout: Duration) -> Result<HttpPriceSource, Error> {
        let runtime = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .map_err(|e| Error::io("starting the price source's runtime", e))?;
        let client = {
            let _entered = runtime.enter();
            AdapterClient::new(None)?
        };
        Ok(HttpPriceSource {
            url,
            timeout,
            runtime: Arc::new(runtime),
            client,
        })
    }
}

#[derive(Deserialize)]
struct Document<'a> {
    #[serde(borrow)]
    bpi: Bpi<'a>,
}

#[derive(Deserialize)]
struct Bpi<'a> {
    #[serde(rename = "USD", borrow)]
    usd: Entry<'a>,
    #[serde(rename = "GBP", borrow)]
    gbp: Entry<'a>,
    #[serde(rename = "EUR", borrow)]
    eur: Entry<'a>,
}

#[derive(Deserialize)]
struct Entry<'a> {
    #[serde(borrow)]
    rate_float: &'a RawValue,
}

/// The rates of a CoinDesk-v1-shaped document.
pub fn parse_document(body: &[u8]) -> Result<Rates, String> {
    let document: Document =
        serde_json::from_slice(body).map_err(|e| format!("not a CoinDesk document: {e}"))?;
    let rate = |code: &str, entry: &Entry| {
        Rate::parse(entry.rate_float.get()).ok_or_else(|| {
            format!(
                "bpi.{code}.rate_float is {}, not a positive decimal below 10^12",
                entry.rate_float.get()
            )
        })
    };
    Ok(Rates {
        eur: rate("EUR", &document.bpi.eur)?,
        gbp: rate("GBP", &document.bpi.gbp)?,
        usd: rate("USD", &document.bpi.usd)?,
    })
}

impl PriceSource for HttpPriceSource {
    fn describe(&self) -> String {
        self.url.clone()
    }

    fn fetch(&self, _seq: u64, _previous: Option<&Quote>) -> Result<Rates, String> {
        let (status, body) = self
            .runtime
            .block_on(
                self.client
                    .get(&self.url, self.timeout, PRICE_DOCUMENT_BYTES_MAX),
            )
            .map_err(|failure| failure.0)?;
        if !status.is_success() {
            return Err(format!("answered {status}"));
        }
        parse_document(&body)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rates_are_read_from_the_number_text() {
        let body = br#"{"time":{"updated":"Jun 20, 2021 19:15:00 UTC"},"bpi":{
            "USD":{"code":"USD","rate":"35,123.4567","rate_float":35123.4567},
            "GBP":{"code":"GBP","rate":"25,000.1","rate_float":25000.1},
            "EUR":{"code":"EUR","rate":"29,500.0000","rate_float":2.95e4}}}"#;
        let rates = parse_document(body).unwrap();
        assert_eq!(rates.usd.to_string(), "35123.4567");
        assert_eq!(rates.gbp.to_string(), "25000.1");
        assert_eq!(rates.eur.to_string(), "29500");
        for bad in [
            &br#"{"bpi":{"USD":{"rate_float":1},"GBP":{"rate_float":1}}}"#[..],
            br#"{"bpi":{"USD":{"rate_float":"1"},"GBP":{"rate_float":1},"EUR":{"rate_float":1}}}"#,
            br#"{"bpi":{"USD":{"rate_float":-1},"GBP":{"rate_float":1},"EUR":{"rate_float":1}}}"#,
            br#"{"bpi":{"USD":{"rate_float":0},"GBP":{"rate_float":1},"EUR":{"rate_float":1}}}"#,
            b"<html>",
            b"",
        ] {
            assert!(parse_document(bad).is_err(), "{}", String::from_utf8_lossy(bad));
        }
    }
}
