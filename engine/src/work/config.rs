//! `WorkConfig`: the work domain's limits, the `work.*` section of the engine configuration.

use super::BUCKET_SIZE_MAX;
use crate::config::DomainConfig;

/// The work workload's limits (`work.*` in the server config: this struct is that section's
/// schema, and its `Default` the only statement of the defaults).
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct WorkConfig {
    /// Items per bucket (`work.bucket_size`). A bucket is also the unit of a report, so it
    /// bounds the size of one WAL record.
    pub bucket_size: usize,
    /// A lease expires this long after the last heartbeat or result (`work.lease_seconds`).
    pub lease_seconds: u64,
    /// Expiries after which a bucket is dead-lettered instead of reopened (`work.max_expiries`).
    pub max_expiries: u32,
    /// Largest `max_buckets` of one lease request (`work.max_buckets_per_request`).
    pub max_buckets_per_request: usize,
    /// Buckets one client may hold leased at once; a lease request beyond gets
    /// `too_many_buckets` (`work.leased_buckets_per_client_max`).
    pub leased_buckets_per_client_max: usize,
    /// Bucket formation picks at random among the oldest `formation_spread × bucket_size` items
    /// of the highest pending priority (`work.formation_spread`). 1 = strictly oldest first.
    pub formation_spread: usize,
    /// Registrations accepted per source address per minute; 0 = unlimited
    /// (`work.registrations_per_minute_per_source`). Costs one small entry per source.
    pub registrations_per_minute_per_source: u32,
    /// Items the pool may hold in all states; an add beyond gets `Overloaded`
    /// (`work.pool_items_max`). Costs about 150 bytes of memory per item.
    pub pool_items_max: usize,
    /// Registered clients (active or not) the registry may hold (`work.clients_max`).
    pub clients_max: usize,
    /// Discovered keys in one report (`work.discovered_per_report_max`).
    pub discovered_per_report_max: usize,
    /// Seed of bucket formation; unset = a fresh random seed per lease (`work.seed`). With a
    /// seed, the same operations form the same buckets.
    pub seed: Option<u64>,
}

impl Default for WorkConfig {
    fn default() -> Self {
        WorkConfig {
            bucket_size: 180,
            lease_seconds: 2 * 3600,
            max_expiries: 5,
            max_buckets_per_request: 10,
            leased_buckets_per_client_max: 100,
            formation_spread: 4,
            registrations_per_minute_per_source: 120,
            pool_items_max: 20_000_000,
            clients_max: 1_000_000,
            discovered_per_report_max: 1000,
            seed: None,
        }
    }
}

impl DomainConfig for WorkConfig {
    const SECTION: &'static str = "work";

    fn validate(&self) -> std::result::Result<(), String> {
        WorkConfig::validate(self)
    }
}

impl WorkConfig {
    /// Checks the limits and that the largest lease and report records fit the WAL.
    pub fn validate(&self) -> std::result::Result<(), String> {
        if self.bucket_size == 0 || self.bucket_size > BUCKET_SIZE_MAX {
            return Err(format!(
                "`work.bucket_size` must be 1..={BUCKET_SIZE_MAX}, got {}",
                self.bucket_size
            ));
        }
        if self.lease_seconds == 0 || self.lease_seconds > 30 * 24 * 3600 {
            return Err("`work.lease_seconds` must be 1..=2592000".into());
        }
        if self.max_expiries == 0 {
            return Err("`work.max_expiries` must be at least 1".into());
        }
        if self.max_buckets_per_request == 0 || self.leased_buckets_per_client_max == 0 {
            return Err(
                "`work.max_buckets_per_request` and `work.leased_buckets_per_client_max` must be at least 1"
                    .into(),
            );
        }
        if self.formation_spread == 0 || self.formation_spread > 64 {
            return Err("`work.formation_spread` must be 1..=64".into());
        }
        if self.pool_items_max == 0 || self.pool_items_max > u32::MAX as usize {
            return Err(format!("`work.pool_items_max` must be 1..={}", u32::MAX));
        }
        if self.clients_max == 0 {
            return Err("`work.clients_max` must be at least 1".into());
        }
        // Records stay within RECORD_BYTES_BUDGET by construction: one formed bucket always fits
        // (BUCKET_SIZE_MAX), a lease forms no more buckets than fit, and a report larger than
        // the budget is refused (`Work::validate_report`).
        Ok(())
    }

    /// Small buckets, short leases and a fixed seed, for tests.
    pub fn for_tests() -> Self {
        WorkConfig {
            bucket_size: 4,
            lease_seconds: 60,
            max_expiries: 3,
            seed: Some(7),
            ..WorkConfig::default()
        }
    }

    pub fn lease_ms(&self) -> u64 {
        self.lease_seconds * 1000
    }
}
