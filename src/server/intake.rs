//! The bodies of admission requests, read within bounds before a webhook sees them: a declared
//! length over the cap gets 413 at once, nothing is read until the request fits in the memory
//! budget of admission bodies (waiting at most [`QUEUE_WAIT`], then 429), as many requests may wait
//! as the budget holds (more get 429 at once, so waiting heads are bounded too), and a body must
//! arrive within [`BODY_TIMEOUT`] (else 408). Every answer, refusals included, is counted in the admission
//! metrics and timed from the moment the request arrived.

use crate::admission::Answered;
use crate::metrics::Metrics;
use axum::body::{Body, Bytes};
use axum::extract::{Request, State};
use axum::http::{HeaderValue, StatusCode, header};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use http_body_util::BodyExt;
use std::sync::Arc;
use std::time::{Duration, Instant};
use tokio::sync::{OwnedSemaphorePermit, Semaphore};

/// How long a request waits for room in the budget before it gets 429: well inside the API
/// server's 5 s webhook timeout, so the caller gets a clear answer instead of a timeout.
pub const QUEUE_WAIT: Duration = Duration::from_secs(2);
/// How long the whole body may take to arrive once reading starts.
pub const BODY_TIMEOUT: Duration = Duration::from_secs(10);
/// The least a request counts against the budget, so that many tiny requests are bounded too.
const MIN_WEIGHT: usize = 16 * 1024;

/// Why a request body was not read.
#[derive(Debug, thiserror::Error)]
pub enum IntakeRefusal {
    /// The declared or received length is over the cap.
    #[error("request body over the limit of {limit} bytes")]
    TooLarge {
        /// The cap.
        limit: usize,
    },
    /// The budget stayed full for [`QUEUE_WAIT`].
    #[error("too many admission requests in progress; try again")]
    Busy,
    /// The body did not arrive within [`BODY_TIMEOUT`].
    #[error("request body not received within {BODY_TIMEOUT:?}")]
    Slow,
    /// `Content-Length` is not a number.
    #[error("invalid Content-Length header")]
    BadLength,
    /// The client stopped sending.
    #[error("request body could not be read")]
    Aborted,
}

impl IntakeRefusal {
    fn status(&self) -> StatusCode {
        match self {
            Self::TooLarge { .. } => StatusCode::PAYLOAD_TOO_LARGE,
            Self::Busy => StatusCode::TOO_MANY_REQUESTS,
            Self::Slow => StatusCode::REQUEST_TIMEOUT,
            Self::BadLength | Self::Aborted => StatusCode::BAD_REQUEST,
        }
    }
}

impl IntoResponse for IntakeRefusal {
    fn into_response(self) -> Response {
        let mut response = (self.status(), format!("{self}\n")).into_response();
        if matches!(self, Self::Busy) {
            response.headers_mut().insert(header::RETRY_AFTER, HeaderValue::from_static("1"));
        }
        response
    }
}

/// The memory budget of admission bodies, shared by every webhook.
#[derive(Clone)]
pub struct Intake {
    budget: Arc<Semaphore>,
    waiting_room: Arc<Semaphore>,
    capacity: usize,
    max_body_bytes: usize,
    metrics: Arc<Metrics>,
}

impl Intake {
    /// A budget of `budget_bytes` for bodies of at most `max_body_bytes` each (the budget is at
    /// least one maximum body, so every allowed body can be read). As many requests may wait for
    /// room as the budget holds of the smallest ones: with HTTP/2's many streams per connection, the
    /// waiting requests' heads are then bounded by the budget, not by connections × streams.
    pub fn new(budget_bytes: usize, max_body_bytes: usize, metrics: Arc<Metrics>) -> Self {
        let capacity = budget_bytes.max(max_body_bytes).min(Semaphore::MAX_PERMITS).min(u32::MAX as usize);
        let waiting_room = Arc::new(Semaphore::new((capacity / MIN_WEIGHT).max(1)));
        Self { budget: Arc::new(Semaphore::new(capacity)), waiting_room, capacity, max_body_bytes, metrics }
    }

    /// Reads the body of `request` within the bounds; the permit holds its share of the budget
    /// until the answer is made.
    async fn read(&self, request: Request) -> Result<(Request, OwnedSemaphorePermit), IntakeRefusal> {
        let limit = self.max_body_bytes;
        let declared = match request.headers().get(header::CONTENT_LENGTH) {
            None => None,
            Some(value) => {
                Some(value.to_str().ok().and_then(|v| v.parse::<usize>().ok()).ok_or(IntakeRefusal::BadLength)?)
            }
        };
        if declared.is_some_and(|length| length > limit) {
            return Err(IntakeRefusal::TooLarge { limit });
        }
        let weight = declared.unwrap_or(limit).max(MIN_WEIGHT).min(self.capacity);
        let weight = u32::try_from(weight).map_err(|_| IntakeRefusal::TooLarge { limit })?;
        let place = self.waiting_room.try_acquire().map_err(|_| IntakeRefusal::Busy)?;
        let permit = tokio::time::timeout(QUEUE_WAIT, self.budget.clone().acquire_many_owned(weight))
            .await
            .map_err(|_| IntakeRefusal::Busy)?
            .map_err(|_| IntakeRefusal::Busy)?;
        drop(place);
        let (parts, body) = request.into_parts();
        let bytes = tokio::time::timeout(BODY_TIMEOUT, collect(body, declared.unwrap_or(0), limit))
            .await
            .map_err(|_| IntakeRefusal::Slow)??;
        Ok((Request::from_parts(parts, Body::from(bytes)), permit))
    }
}

/// The body in one buffer of exactly the declared size (no second copy), refused past `limit`.
async fn collect(mut body: Body, declared: usize, limit: usize) -> Result<Bytes, IntakeRefusal> {
    let mut buffer = Vec::with_capacity(declared);
    while let Some(frame) = body.frame().await {
        let frame = frame.map_err(|_| IntakeRefusal::Aborted)?;
        if let Ok(data) = frame.into_data() {
            if buffer.len() + data.len() > limit {
                return Err(IntakeRefusal::TooLarge { limit });
            }
            buffer.extend_from_slice(&data);
        }
    }
    Ok(Bytes::from(buffer))
}

/// Middleware of one webhook's route: reads the body within bounds, passes it on, and records the
/// answer in the admission metrics.
pub async fn admit(State((intake, webhook)): State<(Intake, &'static str)>, request: Request, next: Next) -> Response {
    let started = Instant::now();
    let response = match intake.read(request).await {
        Ok((request, permit)) => {
            let response = next.run(request).await;
            drop(permit);
            response
        }
        Err(refusal) => {
            tracing::debug!(webhook, %refusal, "admission request refused before reading it");
            refusal.into_response()
        }
    };
    let answered = response.extensions().get::<Answered>().copied().unwrap_or(Answered::UNREAD);
    intake.metrics.observe_admission(webhook, answered.operation, answered.allowed, started.elapsed().as_secs_f64());
    response
}

#[cfg(test)]
mod tests {
    use super::*;
    use tokio::time::Instant;

    fn review(length: usize) -> Request {
        Request::builder().header(header::CONTENT_LENGTH, length).body(Body::from(vec![b'x'; length])).unwrap()
    }

    #[tokio::test(start_paused = true)]
    async fn requests_past_the_waiting_room_are_refused_at_once_and_the_waiting_one_is_read_when_room_frees() {
        let metrics = Arc::new(Metrics::new().unwrap());
        // A budget of two minimum-weight requests: two may wait for room.
        let intake = Intake::new(2 * MIN_WEIGHT, MIN_WEIGHT, metrics);
        let held = intake.budget.clone().acquire_many_owned(u32::try_from(2 * MIN_WEIGHT).unwrap()).await.unwrap();
        let waiting: Vec<_> = (0..2)
            .map(|_| {
                let intake = intake.clone();
                tokio::spawn(async move { intake.read(review(10)).await.map(|(request, _)| request) })
            })
            .collect();
        while intake.waiting_room.available_permits() > 0 {
            tokio::task::yield_now().await;
        }

        let started = Instant::now();
        let refused = intake.read(review(10)).await;
        assert!(matches!(refused, Err(IntakeRefusal::Busy)), "a third waiter is refused");
        assert_eq!(started.elapsed(), Duration::ZERO, "at once, not after the queue wait");

        drop(held);
        for waiter in waiting {
            let request = waiter.await.unwrap().expect("read once room frees");
            let body = request.into_body().collect().await.unwrap().to_bytes();
            assert_eq!(body.len(), 10);
        }
        assert_eq!(intake.waiting_room.available_permits(), 2, "the waiting room is empty again");
    }
}
