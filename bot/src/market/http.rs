//! [`HttpMarket`]: the Market routes of API.md over the bot's HTTP client ([`HttpTransport`]),
//! with the admin token that lists every user's orders. `POST /api/v1/orders` carries the
//! `Idempotency-Key` header; its 201 and 200 are told apart (a new order, a replay), and a 429's
//! or 503's `Retry-After` reaches the scenario in [`BotError::retry_after_ms`].

use std::time::Duration;

use bytes::Bytes;
use hyper::Method;
use serde::{Deserialize, Serialize};

use super::{MarketTransport, OrderView, OrdersPage, Placement, PriceView};
use crate::error::BotError;
use crate::transport::http::percent_encode;
use crate::transport::{Answer, HttpTransport, NewUser, Session, Transport};

/// A server at a base URL, and its admin token.
pub struct HttpMarket {
    http: HttpTransport,
    admin_token: String,
}

impl HttpMarket {
    /// A client for `url` keeping up to `connections` idle keep-alive connections.
    pub fn new(
        url: &str,
        connections: usize,
        timeout: Duration,
        admin_token: impl Into<String>,
    ) -> Answer<Self> {
        Ok(HttpMarket {
            http: HttpTransport::new(url, connections, timeout)?,
            admin_token: admin_token.into(),
        })
    }

    pub fn http(&self) -> &HttpTransport {
        &self.http
    }
}

#[derive(Serialize)]
struct PlaceBody<'a> {
    currency: &'a str,
    amount: &'a str,
}

#[derive(Deserialize)]
struct PageBody {
    items: Vec<OrderView>,
    next_cursor: Option<String>,
}

#[derive(Deserialize)]
struct PriceBody {
    rates: RatesBody,
    source: String,
}

#[derive(Deserialize)]
struct RatesBody {
    #[serde(rename = "EUR")]
    eur: String,
    #[serde(rename = "GBP")]
    gbp: String,
    #[serde(rename = "USD")]
    usd: String,
}

fn page_path(cursor: Option<&str>, limit: usize) -> String {
    let mut path = format!("/api/v1/orders?limit={limit}");
    if let Some(cursor) = cursor {
        path.push_str("&cursor=");
        path.push_str(&percent_encode(cursor));
    }
    path
}

impl MarketTransport for HttpMarket {
    fn name(&self) -> &'static str {
        "http"
    }

    async fn sign_up(&self, user: &NewUser) -> Answer<()> {
        self.http.sign_up(user).await.map(|_| ())
    }

    async fn login(&self, email: &str, password: &str) -> Answer<Session> {
        self.http.login(email, password).await
    }

    async fn place(
        &self,
        session: &Session,
        key: &str,
        currency: &str,
        amount: &str,
    ) -> Answer<Placement> {
        let path = "/api/v1/orders";
        let body = serde_json::to_vec(&PlaceBody { currency, amount })
            .map(Bytes::from)
            .map_err(|error| BotError::transport("bad_request", error.to_string()))?;
        let reply = self
            .http
            .exchange(
                Method::POST,
                path,
                session.token.as_deref(),
                &[("idempotency-key", key)],
                Some(body),
            )
            .await?;
        let order: OrderView = reply.decode(path)?;
        match reply.status {
            201 => Ok(Placement {
                created: true,
                order,
            }),
            200 => Ok(Placement {
                created: false,
                order,
            }),
            status => Err(BotError::transport(
                "bad_response",
                format!("{path}: status {status}, expected 201 or 200"),
            )),
        }
    }

    async fn orders(
        &self,
        session: &Session,
        cursor: Option<String>,
        limit: usize,
    ) -> Answer<OrdersPage> {
        let page: PageBody = self
            .http
            .call_bytes(
                Method::GET,
                &page_path(cursor.as_deref(), limit),
                session.token.as_deref(),
                None,
            )
            .await?;
        Ok(OrdersPage {
            items: page.items,
            next: page.next_cursor,
        })
    }

    async fn all_orders(&self, cursor: Option<String>, limit: usize) -> Answer<OrdersPage> {
        let page: PageBody = self
            .http
            .call_bytes(
                Method::GET,
                &page_path(cursor.as_deref(), limit),
                Some(&self.admin_token),
                None,
            )
            .await?;
        Ok(OrdersPage {
            items: page.items,
            next: page.next_cursor,
        })
    }

    async fn price(&self) -> Answer<PriceView> {
        let price: PriceBody = self
            .http
            .call_bytes(Method::GET, "/api/v1/price", None, None)
            .await?;
        Ok(PriceView {
            eur: price.rates.eur,
            gbp: price.rates.gbp,
            usd: price.rates.usd,
            source: price.source,
        })
    }

    async fn totals(&self) -> Answer<Option<(u64, u64)>> {
        Ok(None)
    }
}
