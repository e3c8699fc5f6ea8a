//! What stands in front of the handlers: staff tokens, per-address rate limits on public writes,
//! idempotency keys, and the wait that gives read-your-writes.

use super::problem::ApiError;
use super::{AppState, Shared};
use axum::extract::{ConnectInfo, FromRequestParts};
use axum::http::request::Parts;
use axum::http::{HeaderMap, StatusCode, header};
use sha2::{Digest, Sha256};
use sportello_engine::app::staff::{self, Role, StaffMember};
use sportello_projections::runner::has_reached;
use sportello_projections::{Projection, read_model};
use std::collections::HashMap;
use std::net::{IpAddr, SocketAddr};
use std::sync::Mutex;
use std::time::{Duration, Instant};
use uuid::Uuid;

/// Verified tokens, remembered briefly so that a busy operator does not cost a log read per
/// request; a revocation takes effect within [`TokenCache::TTL`].
#[derive(Default)]
pub struct TokenCache {
    verified: Mutex<HashMap<[u8; 32], (StaffMember, Instant)>>,
}

impl TokenCache {
    pub const TTL: Duration = Duration::from_secs(30);
}

/// The staff member behind the request's bearer token.
pub struct Staff(pub StaffMember);

impl Staff {
    /// Refuses roles that may not see cases and personal data (analysts).
    pub fn works_cases(&self) -> Result<(), ApiError> {
        if self.0.role.works_cases() {
            Ok(())
        } else {
            Err(ApiError::forbidden(
                "Il ruolo di analista consulta solo le statistiche, non le pratiche né i dati personali.",
            ))
        }
    }

    pub fn require(&self, role: Role) -> Result<(), ApiError> {
        if self.0.role == role {
            Ok(())
        } else {
            Err(ApiError::forbidden(
                "Questa operazione è riservata agli amministratori.",
            ))
        }
    }

    /// A supervisor or an administrator.
    pub fn require_supervisor(&self) -> Result<(), ApiError> {
        if matches!(self.0.role, Role::Supervisor | Role::Admin) {
            Ok(())
        } else {
            Err(ApiError::forbidden(
                "Questa operazione è riservata ai responsabili e agli amministratori.",
            ))
        }
    }

    /// The name recorded as the events' actor.
    pub fn actor_name(&self) -> String {
        format!("staff:{}", self.0.name)
    }
}

impl FromRequestParts<Shared> for Staff {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, state: &Shared) -> Result<Self, ApiError> {
        let token = parts
            .headers
            .get(header::AUTHORIZATION)
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.strip_prefix("Bearer "))
            .map(str::trim)
            .filter(|t| !t.is_empty())
            .ok_or_else(ApiError::unauthorized)?;
        let digest: [u8; 32] = Sha256::digest(token.as_bytes()).into();
        if let Some((member, at)) = state.tokens.verified.lock().unwrap().get(&digest)
            && at.elapsed() < TokenCache::TTL
        {
            return Ok(Staff(member.clone()));
        }
        let member = staff::verify(state.urp.log(), token)
            .await?
            .ok_or_else(ApiError::unauthorized)?;
        let mut cache = state.tokens.verified.lock().unwrap();
        if cache.len() > 10_000 {
            cache.retain(|_, (_, at)| at.elapsed() < TokenCache::TTL);
        }
        cache.insert(digest, (member.clone(), Instant::now()));
        Ok(Staff(member))
    }
}

/// A token bucket per client address for public writes.
pub struct RateLimiter {
    per_second: f64,
    burst: f64,
    buckets: Mutex<HashMap<IpAddr, (f64, Instant)>>,
}

impl RateLimiter {
    pub fn new(per_minute: u64, burst: u64) -> Self {
        Self {
            per_second: per_minute as f64 / 60.0,
            burst: burst.max(1) as f64,
            buckets: Mutex::new(HashMap::new()),
        }
    }

    /// Takes one request from the address's bucket, or says when to come back.
    pub fn check(&self, address: IpAddr) -> Result<(), ApiError> {
        let now = Instant::now();
        let mut buckets = self.buckets.lock().unwrap();
        if buckets.len() > 100_000 {
            // Forget addresses whose bucket has refilled: they lose nothing.
            let (rate, burst) = (self.per_second, self.burst);
            buckets.retain(|_, (tokens, at)| *tokens + at.elapsed().as_secs_f64() * rate < burst);
        }
        let (tokens, at) = buckets.entry(address).or_insert((self.burst, now));
        *tokens =
            (*tokens + now.duration_since(*at).as_secs_f64() * self.per_second).min(self.burst);
        *at = now;
        if *tokens >= 1.0 {
            *tokens -= 1.0;
            return Ok(());
        }
        let wait = ((1.0 - *tokens) / self.per_second.max(f64::MIN_POSITIVE)).ceil() as u64;
        let mut e = ApiError::new(
            StatusCode::TOO_MANY_REQUESTS,
            "rate_limited",
            "Troppe richieste da questo indirizzo: riprova tra poco.",
        );
        e.retry_after = Some(wait.max(1));
        Err(e)
    }
}

/// The client's address: the connection's, or the first `X-Forwarded-For` hop when configured
/// to trust a proxy.
pub struct ClientAddr(pub IpAddr);

impl FromRequestParts<Shared> for ClientAddr {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, state: &Shared) -> Result<Self, ApiError> {
        if state.settings.api.trust_forwarded_for
            && let Some(ip) = parts
                .headers
                .get("x-forwarded-for")
                .and_then(|v| v.to_str().ok())
                .and_then(|v| v.split(',').next())
                .and_then(|v| v.trim().parse().ok())
        {
            return Ok(ClientAddr(ip));
        }
        let ConnectInfo(addr) = ConnectInfo::<SocketAddr>::from_request_parts(parts, state)
            .await
            .map_err(|e| {
                tracing::error!(error = %e, "served without the peer's address");
                ApiError::internal()
            })?;
        Ok(ClientAddr(addr.ip()))
    }
}

/// 1 to 255 visible ASCII characters (the pattern the OpenAPI document publishes).
pub fn is_idempotency_key(key: &str) -> bool {
    (1..=255).contains(&key.len()) && key.bytes().all(|b| b.is_ascii_graphic())
}

/// The request's `Idempotency-Key`, if it has one; 422 when it is not 1 to 255 visible
/// characters.
pub fn idempotency_key(headers: &HeaderMap) -> Result<Option<&str>, ApiError> {
    let Some(raw) = headers.get("idempotency-key") else {
        return Ok(None);
    };
    raw.to_str()
        .ok()
        .filter(|k| is_idempotency_key(k))
        .map(Some)
        .ok_or_else(|| {
            ApiError::invalid(
                "Idempotency-Key",
                "idempotency_key_invalid",
                "La chiave di idempotenza deve avere da 1 a 255 caratteri stampabili, senza spazi.",
            )
        })
}

/// The pattern of an `Idempotency-Key`, as [`is_idempotency_key`] checks it.
pub const IDEMPOTENCY_KEY_PATTERN: &str = "^[!-~]{1,255}$";

/// The `Idempotency-Key` of a public write, if any, checked against the body it first came with.
/// Returns an id derived from the key and the body: a retry finds the resource the first request
/// made; the same key with another body is refused (422).
pub async fn idempotent_id(
    state: &AppState,
    headers: &HeaderMap,
    route: &str,
    fingerprint: &str,
) -> Result<Option<Uuid>, ApiError> {
    let Some(key) = idempotency_key(headers)? else {
        return Ok(None);
    };
    let scoped = format!("{route}|{key}");
    if !state
        .views
        .claim_idempotency_key(&scoped, fingerprint)
        .await?
    {
        return Err(ApiError::new(
            StatusCode::UNPROCESSABLE_ENTITY,
            "idempotency_key_reused",
            "Questa chiave di idempotenza è già stata usata con una richiesta diversa.",
        ));
    }
    Ok(Some(Uuid::new_v5(
        &Uuid::NAMESPACE_URL,
        format!("sportello:{scoped}|{fingerprint}").as_bytes(),
    )))
}

/// Waits until projection `P` has applied everything up to `min_position` (read your own
/// writes), up to the configured bound; 503 with `Retry-After` past it.
pub async fn wait_for<P: Projection>(
    state: &AppState,
    min_position: Option<u64>,
) -> Result<(), ApiError> {
    let Some(position) = min_position.filter(|p| *p > 0) else {
        return Ok(());
    };
    let deadline = Instant::now() + state.consistency_wait;
    let mut pause = Duration::from_millis(2);
    loop {
        if has_reached(state.urp.log(), &state.reader, read_model::<P>(), position).await? {
            return Ok(());
        }
        if Instant::now() >= deadline {
            let mut e = ApiError::new(
                StatusCode::SERVICE_UNAVAILABLE,
                "projection_behind",
                "I dati non sono ancora aggiornati all'ultima operazione: riprova tra un istante.",
            );
            e.retry_after = Some(1);
            return Err(e);
        }
        tokio::time::sleep(pause).await;
        pause = (pause * 2).min(Duration::from_millis(50));
    }
}

/// `min_position` from the query or the `X-Min-Position` header.
pub fn min_position(query: Option<u64>, headers: &HeaderMap) -> Option<u64> {
    query.or_else(|| {
        headers
            .get("x-min-position")
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.trim().parse().ok())
    })
}
