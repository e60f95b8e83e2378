//! `/fleet/trends`: what the fleet page draws beside each server's live status (which comes from
//! `/servers`): the recent transaction rate and how fresh the collected data is, for every server in
//! one answer.

use crate::auth::Auth;
use crate::error::ApiResult;
use crate::payload::SerdeJson;
use crate::state::AppState;
use chrono::{DateTime, Duration, Utc};
use pgmon_shared::store::{fleet, stats_read};
use poem::web::Data;
use poem_openapi::param::Query;
use poem_openapi::{Object, OpenApi, Tags};

#[derive(Tags)]
enum Tag {
    /// The whole fleet at a glance.
    Fleet,
}

#[derive(Debug, Object, serde::Serialize)]
pub struct FleetTrends {
    /// Start of the window (`hours` before now).
    pub since: DateTime<Utc>,
    pub servers: Vec<ServerTrend>,
}

#[derive(Debug, Object, serde::Serialize)]
pub struct ServerTrend {
    pub name: String,
    /// Slot ends, seconds since the epoch; a slot whose delta was refused (reset, restart) is absent.
    pub time: Vec<i64>,
    /// Transactions (commits + rollbacks) per second over each slot, all databases.
    pub tps: Vec<f64>,
    /// When the collector last reached the server, or tried to (null: not in the last day).
    pub last_collected_at: Option<DateTime<Utc>>,
    /// Whether that last attempt reached it.
    pub last_up: Option<bool>,
}

impl crate::payload::JsonSizeHint for FleetTrends {
    fn json_size_hint(&self) -> usize {
        256 + self
            .servers
            .iter()
            .map(|s| 160 + s.time.len() * 32)
            .sum::<usize>()
    }
}

pub struct FleetApi;

#[OpenApi(tag = "Tag::Fleet")]
impl FleetApi {
    /// Every server's transaction rate over the last `hours` (default 6, at most 48) and the age of
    /// its data (any role).
    #[oai(path = "/fleet/trends", method = "get")]
    async fn trends(
        &self,
        state: Data<&AppState>,
        _auth: Auth,
        #[oai(validator(minimum(value = "1"), maximum(value = "48")))] hours: Query<Option<i64>>,
    ) -> ApiResult<SerdeJson<FleetTrends>> {
        let since = Utc::now() - Duration::hours(hours.0.unwrap_or(6));
        let rows = super::servers::server_rows(&state).await?;
        let ids: Vec<i64> = rows.iter().map(|r| r.id).collect();
        let (mut tps, mut seen) = tokio::try_join!(
            fleet::tps_since(&state.pool, since),
            stats_read::last_seen(&state.pool, &ids)
        )?;
        let servers = rows
            .iter()
            .map(|r| {
                let points = tps.remove(&r.id).unwrap_or_default();
                let last = seen.remove(&r.id).unwrap_or_default();
                ServerTrend {
                    name: r.name.clone(),
                    time: points.iter().map(|p| p.0).collect(),
                    tps: points.iter().map(|p| (p.1 * 100.0).round() / 100.0).collect(),
                    last_collected_at: last.collected_at,
                    last_up: last.up,
                }
            })
            .collect();
        SerdeJson::new(&FleetTrends { since, servers })
    }
}
