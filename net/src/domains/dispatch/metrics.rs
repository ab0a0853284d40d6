//! The dispatch domain's `/metrics` lines, from the catalog's running totals (one read, whatever
//! the number of dispatches): `switchyard_dispatches{status}`,
//! `switchyard_notifications{status}` and `switchyard_notification_possible_duplicates` (sent
//! again after a restart found them claimed without a recorded outcome).

use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::{ConstGauge, Gauge};
use switchyard_engine::dispatch::{NoteStatus, Status};

use crate::app::App;
use crate::metrics::gauge;
use crate::domains::MetricsFuture;

#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
struct StatusLabels {
    status: &'static str,
}


pub(super) fn metrics<'a>(app: &'a App, out: &'a mut String) -> MetricsFuture<'a> {
    Box::pin(async move {
        let Some(engine) = app.engine() else {
            return;
        };
        let totals = match engine.dispatch().totals().await {
            Ok(totals) => totals,
            Err(error) => {
                tracing::debug!(%error, "dispatch totals unavailable for /metrics");
                return;
            }
        };
        crate::metrics::encode(out, |registry| {
            let dispatches = Family::<StatusLabels, Gauge>::default();
            for (status, count) in [
                Status::Scheduled,
                Status::WaitingCondition,
                Status::Sending,
                Status::Done,
            ]
            .into_iter()
            .zip(totals.dispatches)
            {
                dispatches
                    .get_or_create(&StatusLabels {
                        status: status.as_str(),
                    })
                    .set(gauge(count));
            }
            registry.register("switchyard_dispatches", "Dispatches by status", dispatches);
            let notifications = Family::<StatusLabels, Gauge>::default();
            for (status, count) in NoteStatus::ALL.into_iter().zip(totals.notifications) {
                notifications
                    .get_or_create(&StatusLabels {
                        status: status.as_str(),
                    })
                    .set(gauge(count));
            }
            registry.register(
                "switchyard_notifications",
                "Notifications by status",
                notifications,
            );
            registry.register(
                "switchyard_notification_possible_duplicates",
                "Notifications sent again after a restart found their attempt without a recorded outcome (the same idempotency key)",
                ConstGauge::new(gauge(totals.possible_duplicates)),
            );
        });
    })
}
