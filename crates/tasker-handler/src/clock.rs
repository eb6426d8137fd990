//! Time for the engine: "now", and waiting until a time. [`SystemClock`] in production;
//! [`ManualClock`] in tests, where time moves only when the test advances it.

use std::sync::{Arc, Mutex};
use std::time::Duration;

use chrono::{DateTime, Utc};
use tokio::sync::Notify;

/// A source of time the engine can wait on.
#[async_trait::async_trait]
pub trait Clock: Send + Sync + 'static {
    /// The current time.
    fn now(&self) -> DateTime<Utc>;

    /// Returns once `now() >= at`.
    async fn sleep_until(&self, at: DateTime<Utc>);

    /// Returns after `duration` has passed on this clock.
    async fn sleep(&self, duration: Duration) {
        // Saturating: a hostile duration sleeps "forever" instead of panicking.
        let at = tasker_domain::duration::saturating_add(self.now(), duration);
        self.sleep_until(at).await;
    }
}

/// Wall-clock time.
#[derive(Debug, Clone, Copy, Default)]
pub struct SystemClock;

#[async_trait::async_trait]
impl Clock for SystemClock {
    fn now(&self) -> DateTime<Utc> {
        Utc::now()
    }

    async fn sleep_until(&self, at: DateTime<Utc>) {
        if let Ok(wait) = (at - Utc::now()).to_std() {
            tokio::time::sleep(wait).await;
        }
    }
}

/// A clock that stands still until [`advance`](ManualClock::advance) or
/// [`set`](ManualClock::set) moves it; sleepers wake when their time comes.
#[derive(Debug, Clone)]
pub struct ManualClock {
    inner: Arc<(Mutex<DateTime<Utc>>, Notify)>,
}

impl ManualClock {
    /// A clock reading `start`.
    pub fn new(start: DateTime<Utc>) -> Self {
        Self {
            inner: Arc::new((Mutex::new(start), Notify::new())),
        }
    }

    /// Moves time forward by `by` and wakes sleepers.
    pub fn advance(&self, by: Duration) {
        let (now, notify) = &*self.inner;
        let mut now = now.lock().expect("clock lock");
        *now = tasker_domain::duration::saturating_add(*now, by);
        drop(now);
        notify.notify_waiters();
    }

    /// Sets the time and wakes sleepers.
    pub fn set(&self, at: DateTime<Utc>) {
        let (now, notify) = &*self.inner;
        *now.lock().expect("clock lock") = at;
        notify.notify_waiters();
    }
}

#[async_trait::async_trait]
impl Clock for ManualClock {
    fn now(&self) -> DateTime<Utc> {
        *self.inner.0.lock().expect("clock lock")
    }

    async fn sleep_until(&self, at: DateTime<Utc>) {
        loop {
            let notified = self.inner.1.notified();
            tokio::pin!(notified);
            notified.as_mut().enable();
            if self.now() >= at {
                return;
            }
            notified.await;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn manual_sleepers_wake_only_when_time_reaches_them() {
        let start = DateTime::from_timestamp(1_000, 0).unwrap();
        let clock = ManualClock::new(start);
        let sleeper = tokio::spawn({
            let clock = clock.clone();
            async move { clock.sleep(Duration::from_secs(10)).await }
        });
        tokio::task::yield_now().await;
        clock.advance(Duration::from_secs(5));
        tokio::task::yield_now().await;
        assert!(!sleeper.is_finished());
        clock.advance(Duration::from_secs(5));
        sleeper.await.unwrap();
        assert_eq!(clock.now(), start + Duration::from_secs(10));
    }
}
