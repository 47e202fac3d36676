//! Bounds on connections: at most `max_connections` open at once, and a connection that has no
//! request in progress for `idle_timeout` (since it was accepted or since its last answer) is
//! closed, whatever bytes it sends meanwhile: idle keep-alive connections, headers sent a byte at a
//! time and HTTP/2 connections kept alive by pings all count as idle.

use std::future::{Future, Ready};
use std::io;
use std::pin::Pin;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, PoisonError};
use std::task::{Context, Poll};
use std::time::Duration;
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::net::TcpStream;
use tokio::sync::{OwnedSemaphorePermit, Semaphore};
use tokio::time::{Instant, Sleep};
use tower_service::Service;

/// The first step of accepting a TCP connection (before TLS): takes a connection slot, or closes
/// the connection at once when all are taken.
#[derive(Clone)]
pub struct ConnectionGuard {
    slots: Arc<Semaphore>,
    idle_timeout: Duration,
}

impl ConnectionGuard {
    /// A guard allowing `max_connections` open connections, each closed after `idle_timeout`
    /// without a request in progress.
    pub fn new(max_connections: usize, idle_timeout: Duration) -> Self {
        Self { slots: Arc::new(Semaphore::new(max_connections)), idle_timeout }
    }
}

impl ConnectionGuard {
    /// Takes a slot for `stream` and starts its idle clock, or refuses it when all slots are taken.
    fn guard<I, S>(&self, stream: I, service: S) -> io::Result<(Guarded<I>, Tracked<S>)> {
        let Ok(slot) = self.slots.clone().try_acquire_owned() else {
            tracing::debug!("connection limit reached; closed a new connection");
            return Err(io::Error::other("connection limit reached"));
        };
        let activity = Arc::new(Activity::new());
        let deadline = Instant::now() + self.idle_timeout;
        let stream = Guarded {
            inner: stream,
            activity: activity.clone(),
            idle_timeout: self.idle_timeout,
            timer: Box::pin(tokio::time::sleep_until(deadline)),
            _slot: slot,
        };
        Ok((stream, Tracked { inner: service, activity }))
    }
}

/// Also turns Nagle's algorithm off: HTTP/2 writes each answer, window update and ping as its own
/// small frame, and with Nagle on, a frame written while an earlier one waits for its ACK is held
/// until the caller's delayed ACK (40 ms on Linux), which stalled concurrent HTTP/2 streams.
impl<S> axum_server::accept::Accept<TcpStream, S> for ConnectionGuard {
    type Stream = Guarded<TcpStream>;
    type Service = Tracked<S>;
    type Future = Ready<io::Result<(Self::Stream, Self::Service)>>;

    fn accept(&self, stream: TcpStream, service: S) -> Self::Future {
        std::future::ready(stream.set_nodelay(true).and_then(|()| self.guard(stream, service)))
    }
}

/// What a connection is doing: requests in progress and when the last one ended.
struct Activity {
    in_progress: AtomicUsize,
    last_answer: Mutex<Instant>,
}

impl Activity {
    fn new() -> Self {
        Self { in_progress: AtomicUsize::new(0), last_answer: Mutex::new(Instant::now()) }
    }

    /// When the connection counts as idle, `None` while a request is in progress.
    fn idle_since(&self) -> Option<Instant> {
        if self.in_progress.load(Ordering::Acquire) > 0 {
            return None;
        }
        Some(*self.last_answer.lock().unwrap_or_else(PoisonError::into_inner))
    }
}

/// Marks a request in progress until dropped (answered or abandoned).
struct InProgress(Arc<Activity>);

impl InProgress {
    fn start(activity: Arc<Activity>) -> Self {
        activity.in_progress.fetch_add(1, Ordering::AcqRel);
        Self(activity)
    }
}

impl Drop for InProgress {
    fn drop(&mut self) {
        *self.0.last_answer.lock().unwrap_or_else(PoisonError::into_inner) = Instant::now();
        self.0.in_progress.fetch_sub(1, Ordering::AcqRel);
    }
}

/// A connection's byte stream that fails once the connection has been idle too long, and that
/// holds the connection's slot until it is dropped.
pub struct Guarded<S> {
    inner: S,
    activity: Arc<Activity>,
    idle_timeout: Duration,
    timer: Pin<Box<Sleep>>,
    _slot: OwnedSemaphorePermit,
}

impl<S> Guarded<S> {
    /// Whether the idle timeout has passed; otherwise the timer is set to wake the task when it may.
    fn idle_too_long(&mut self, cx: &mut Context<'_>) -> bool {
        loop {
            if self.timer.as_mut().poll(cx).is_pending() {
                return false;
            }
            let now = Instant::now();
            let deadline = match self.activity.idle_since() {
                None => now + self.idle_timeout,
                Some(since) => since + self.idle_timeout,
            };
            if deadline <= now {
                return true;
            }
            self.timer.as_mut().reset(deadline);
        }
    }

    fn closed() -> io::Error {
        io::Error::new(io::ErrorKind::TimedOut, "connection idle too long")
    }
}

impl<S: AsyncRead + Unpin> AsyncRead for Guarded<S> {
    fn poll_read(self: Pin<&mut Self>, cx: &mut Context<'_>, buf: &mut ReadBuf<'_>) -> Poll<io::Result<()>> {
        let this = self.get_mut();
        match Pin::new(&mut this.inner).poll_read(cx, buf) {
            Poll::Pending if this.idle_too_long(cx) => Poll::Ready(Err(Self::closed())),
            other => other,
        }
    }
}

impl<S: AsyncWrite + Unpin> AsyncWrite for Guarded<S> {
    fn poll_write(self: Pin<&mut Self>, cx: &mut Context<'_>, buf: &[u8]) -> Poll<io::Result<usize>> {
        let this = self.get_mut();
        match Pin::new(&mut this.inner).poll_write(cx, buf) {
            Poll::Pending if this.idle_too_long(cx) => Poll::Ready(Err(Self::closed())),
            other => other,
        }
    }

    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        let this = self.get_mut();
        match Pin::new(&mut this.inner).poll_flush(cx) {
            Poll::Pending if this.idle_too_long(cx) => Poll::Ready(Err(Self::closed())),
            other => other,
        }
    }

    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.get_mut().inner).poll_shutdown(cx)
    }

    fn poll_write_vectored(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        let this = self.get_mut();
        match Pin::new(&mut this.inner).poll_write_vectored(cx, bufs) {
            Poll::Pending if this.idle_too_long(cx) => Poll::Ready(Err(Self::closed())),
            other => other,
        }
    }

    fn is_write_vectored(&self) -> bool {
        self.inner.is_write_vectored()
    }
}

/// The connection's service, marking each request in progress until it is answered.
#[derive(Clone)]
pub struct Tracked<S> {
    inner: S,
    activity: Arc<Activity>,
}

impl<S, R> Service<R> for Tracked<S>
where
    S: Service<R>,
    S::Future: Send + 'static,
{
    type Response = S::Response;
    type Error = S::Error;
    type Future = Pin<Box<dyn Future<Output = Result<S::Response, S::Error>> + Send>>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, request: R) -> Self::Future {
        let in_progress = InProgress::start(self.activity.clone());
        let answer = self.inner.call(request);
        Box::pin(async move {
            let response = answer.await;
            drop(in_progress);
            response
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use axum_server::accept::Accept;
    use tokio::io::{AsyncReadExt, AsyncWriteExt};

    async fn guarded(idle: Duration) -> (Guarded<tokio::io::DuplexStream>, tokio::io::DuplexStream, Arc<Activity>) {
        let guard = ConnectionGuard::new(1, idle);
        let (ours, theirs) = tokio::io::duplex(64);
        let (stream, tracked) = guard.guard(ours, ()).expect("a free slot");
        (stream, theirs, tracked.activity)
    }

    #[tokio::test(start_paused = true)]
    async fn bytes_without_a_request_do_not_keep_a_connection_open() {
        let (mut stream, mut peer, _) = guarded(Duration::from_secs(10)).await;
        let trickle = tokio::spawn(async move {
            for _ in 0..100 {
                if peer.write_all(b"G").await.is_err() {
                    break;
                }
                tokio::time::sleep(Duration::from_secs(1)).await;
            }
        });
        let started = Instant::now();
        let mut buf = [0u8; 8];
        let error = loop {
            match stream.read(&mut buf).await {
                Ok(_) => continue,
                Err(error) => break error,
            }
        };
        assert_eq!(error.kind(), io::ErrorKind::TimedOut);
        assert_eq!(started.elapsed().as_secs(), 10);
        trickle.abort();
    }

    #[tokio::test(start_paused = true)]
    async fn a_request_in_progress_keeps_it_open_and_its_answer_restarts_the_clock() {
        let (mut stream, _peer, activity) = guarded(Duration::from_secs(10)).await;
        let busy = InProgress::start(activity);
        let read = tokio::time::timeout(Duration::from_secs(60), stream.read(&mut [0u8; 8])).await;
        assert!(read.is_err(), "still open after 60 s while a request is in progress");
        drop(busy);
        let started = Instant::now();
        let error = stream.read(&mut [0u8; 8]).await.expect_err("closed when idle");
        assert_eq!(error.kind(), io::ErrorKind::TimedOut);
        assert_eq!(started.elapsed().as_secs(), 10);
    }

    /// A server-side TCP stream of a loopback connection (the client side is returned to keep it open).
    async fn accepted_tcp() -> (TcpStream, TcpStream) {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.expect("bind");
        let client = TcpStream::connect(listener.local_addr().expect("addr")).await.expect("connect");
        let (server, _) = listener.accept().await.expect("accept");
        (server, client)
    }

    #[tokio::test]
    async fn connections_over_the_limit_are_refused_and_accepted_ones_send_without_delay() {
        let guard = ConnectionGuard::new(1, Duration::from_secs(10));
        let (tcp, _client) = accepted_tcp().await;
        let first = Accept::accept(&guard, tcp, ()).await.expect("a free slot");
        assert!(first.0.inner.nodelay().expect("nodelay readable"), "Nagle's algorithm is off");
        let (tcp, _second_client) = accepted_tcp().await;
        let second = Accept::accept(&guard, tcp, ()).await;
        assert_eq!(second.err().map(|e| e.to_string()), Some("connection limit reached".to_owned()));
        drop(first);
        let (tcp, _third_client) = accepted_tcp().await;
        assert!(Accept::accept(&guard, tcp, ()).await.is_ok());
    }
}
