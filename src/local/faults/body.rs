//! Response bodies through the fault proxy: the API server's answer streamed frame by frame
//! (never buffered), cut with an error (the connection aborts mid-answer) when a signal fires:
//! a watch's drop period ending, or a partition.

use bytes::Bytes;
use http_body_util::BodyExt;
use http_body_util::combinators::UnsyncBoxBody;
use hyper::body::{Body, Frame, SizeHint};
use std::future::Future;
use std::pin::Pin;
use std::task::{Context, Poll};

/// Why a body ended early.
pub type BodyError = Box<dyn std::error::Error + Send + Sync>;

/// Every body the proxy answers with.
pub type ProxyBody = UnsyncBoxBody<Bytes, BodyError>;

/// A stream cut by the proxy.
#[derive(Debug, thiserror::Error)]
#[error("the fault proxy cut the stream")]
pub struct StreamCut;

/// `inner`, cut when `cut` completes.
pub struct CutBody<B> {
    inner: B,
    cut: Pin<Box<dyn Future<Output = ()> + Send>>,
    done: bool,
}

impl<B> CutBody<B> {
    /// `inner`, ended with [`StreamCut`] once `cut` completes.
    pub fn new(inner: B, cut: impl Future<Output = ()> + Send + 'static) -> Self {
        Self { inner, cut: Box::pin(cut), done: false }
    }
}

impl<B> Body for CutBody<B>
where
    B: Body<Data = Bytes> + Unpin,
    B::Error: Into<BodyError>,
{
    type Data = Bytes;
    type Error = BodyError;

    fn poll_frame(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Result<Frame<Bytes>, BodyError>>> {
        if self.done {
            return Poll::Ready(None);
        }
        if self.cut.as_mut().poll(cx).is_ready() {
            self.done = true;
            return Poll::Ready(Some(Err(Box::new(StreamCut))));
        }
        Pin::new(&mut self.inner).poll_frame(cx).map_err(Into::into)
    }

    fn is_end_stream(&self) -> bool {
        self.done || self.inner.is_end_stream()
    }

    fn size_hint(&self) -> SizeHint {
        self.inner.size_hint()
    }
}

/// A whole body of `bytes`.
pub fn full(bytes: impl Into<Bytes>) -> ProxyBody {
    http_body_util::Full::new(bytes.into()).map_err(|never| match never {}).boxed_unsync()
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    #[tokio::test]
    async fn a_body_passes_whole_until_cut_then_ends_with_an_error() {
        let whole = CutBody::new(http_body_util::Full::new(Bytes::from_static(b"abc")), std::future::pending());
        assert_eq!(whole.collect().await.expect("whole").to_bytes(), Bytes::from_static(b"abc"));

        let (sender, receiver) = tokio::sync::oneshot::channel::<()>();
        let (mut frames, body) = futures::channel::mpsc::channel::<Result<Frame<Bytes>, std::convert::Infallible>>(4);
        let mut cut = CutBody::new(http_body_util::StreamBody::new(body), async move {
            let _ = receiver.await;
        });
        frames.try_send(Ok(Frame::data(Bytes::from_static(b"event 1\n")))).expect("send");
        let first = cut.frame().await.expect("a frame").expect("data");
        assert_eq!(first.into_data().expect("data"), Bytes::from_static(b"event 1\n"));
        sender.send(()).expect("cut");
        frames.try_send(Ok(Frame::data(Bytes::from_static(b"event 2\n")))).expect("send");
        let error = cut.frame().await.expect("an end").expect_err("cut");
        assert_eq!(error.to_string(), "the fault proxy cut the stream");
        assert!(cut.is_end_stream());
        assert!(tokio::time::timeout(Duration::from_secs(1), cut.frame()).await.expect("ended").is_none());
    }
}
