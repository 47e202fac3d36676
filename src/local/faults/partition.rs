//! A partition of one proxy's replica from the API server, for a given time: its requests either
//! hang until the partition ends (packets dropped) or are refused at once (connections reset),
//! and the streams it has open are cut the same way.

use std::time::Duration;
use tokio::sync::watch;
use tokio::time::Instant;

/// How a partitioned replica's requests fail.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum PartitionMode {
    /// No answer until the partition ends, then the connection closes (a network that drops packets).
    Hang,
    /// The connection closes at once (a network that rejects them).
    Refuse,
}

/// A partition in force.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
struct Cut {
    mode: PartitionMode,
    until: Instant,
}

/// The partition state of one proxy; every request and stream watches it.
#[derive(Debug)]
pub struct Partition {
    state: watch::Sender<Option<Cut>>,
}

impl Default for Partition {
    fn default() -> Self {
        Self { state: watch::Sender::new(None) }
    }
}

impl Partition {
    /// Partitions the replica for `duration`, from now.
    pub fn start(&self, mode: PartitionMode, duration: Duration) {
        self.state.send_replace(Some(Cut { mode, until: Instant::now() + duration }));
    }

    /// Ends a partition now.
    pub fn heal(&self) {
        self.state.send_replace(None);
    }

    /// The partition in force now, if any.
    pub fn active(&self) -> Option<PartitionMode> {
        self.state.borrow().filter(|cut| cut.until > Instant::now()).map(|cut| cut.mode)
    }

    /// Waits until the partition in force (if any) no longer holds a request: at once when it
    /// refuses, at its end (or an early heal) when it hangs.
    pub async fn wait_out(&self) {
        let mut changes = self.state.subscribe();
        let current = *changes.borrow_and_update();
        let Some(Cut { mode: PartitionMode::Hang, until }) = current else { return };
        tokio::select! {
            () = tokio::time::sleep_until(until) => {}
            _ = changes.wait_for(|cut| cut.is_none_or(|cut| cut.until != until)) => {}
        }
    }

    /// Returns when an open stream must be cut: once a partition starts, at once if it refuses,
    /// at its end if it hangs (the stream delivers nothing meanwhile).
    pub async fn cut(&self) {
        let mut changes = self.state.subscribe();
        loop {
            let current = *changes.borrow_and_update();
            if current.is_some_and(|cut| cut.until > Instant::now()) {
                self.wait_out().await;
                return;
            }
            if changes.changed().await.is_err() {
                std::future::pending::<()>().await;
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test(start_paused = true)]
    async fn a_hanging_partition_holds_until_it_ends_and_a_refusing_one_not_at_all() {
        let partition = Partition::default();
        assert_eq!(partition.active(), None);
        partition.wait_out().await;

        partition.start(PartitionMode::Hang, Duration::from_secs(20));
        assert_eq!(partition.active(), Some(PartitionMode::Hang));
        let started = Instant::now();
        partition.wait_out().await;
        assert_eq!(started.elapsed(), Duration::from_secs(20));
        assert_eq!(partition.active(), None, "over by itself");

        partition.start(PartitionMode::Refuse, Duration::from_secs(20));
        let started = Instant::now();
        partition.wait_out().await;
        assert_eq!(started.elapsed(), Duration::ZERO);
    }

    #[tokio::test(start_paused = true)]
    async fn a_stream_is_cut_when_a_partition_starts_or_when_a_hanging_one_heals() {
        let partition = std::sync::Arc::new(Partition::default());
        let watching = partition.clone();
        let stream = tokio::spawn(async move {
            watching.cut().await;
            Instant::now()
        });
        tokio::time::sleep(Duration::from_secs(5)).await;
        assert!(!stream.is_finished(), "no partition, no cut");
        partition.start(PartitionMode::Hang, Duration::from_secs(60));
        let started = Instant::now();
        tokio::time::sleep(Duration::from_secs(10)).await;
        assert!(!stream.is_finished(), "a hanging partition holds the stream");
        partition.heal();
        let cut = stream.await.expect("stream");
        assert_eq!(cut - started, Duration::from_secs(10), "cut when healed early");

        let watching = partition.clone();
        let stream = tokio::spawn(async move { watching.cut().await });
        tokio::task::yield_now().await;
        partition.start(PartitionMode::Refuse, Duration::from_secs(60));
        tokio::time::timeout(Duration::from_millis(1), stream).await.expect("cut at once").expect("stream");
    }
}
