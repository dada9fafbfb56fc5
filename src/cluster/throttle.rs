//! Warnings about something that may happen thousands of times a second (forged Redis
//! messages, dropped announcements): the first at once, then at most one per period, each
//! counting what happened since the one before.

use std::time::Duration;

use tokio::time::Instant;

pub struct Throttle {
    period: Duration,
    last_warning: Option<Instant>,
    pending: u64,
}

impl Throttle {
    pub fn new(period: Duration) -> Throttle {
        Throttle {
            period,
            last_warning: None,
            pending: 0,
        }
    }

    /// Counts `events` at `now`. Returns how many to warn about now, if a warning is due.
    pub fn record(&mut self, events: u64, now: Instant) -> Option<u64> {
        self.pending += events;
        self.flush(now)
    }

    /// Events counted but not warned about, if the period since the last warning has passed.
    pub fn flush(&mut self, now: Instant) -> Option<u64> {
        if self.pending == 0 || self.due().is_some_and(|due| now < due) {
            return None;
        }
        self.last_warning = Some(now);
        Some(std::mem::take(&mut self.pending))
    }

    /// When the events counted but not yet warned about are due for a warning.
    pub fn due(&self) -> Option<Instant> {
        let last = self.last_warning.filter(|_| self.pending > 0)?;
        Some(last + self.period)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn warns_at_once_then_once_per_period_with_the_count_between() {
        let minute = Duration::from_secs(60);
        let start = Instant::now();
        let mut throttle = Throttle::new(minute);
        assert_eq!(throttle.record(0, start), None);
        assert_eq!(throttle.due(), None);
        assert_eq!(throttle.record(1, start), Some(1));
        assert_eq!(throttle.due(), None, "nothing pending");
        for n in 1..=4 {
            assert_eq!(throttle.record(1, start + Duration::from_secs(n)), None);
        }
        assert_eq!(throttle.due(), Some(start + minute));
        assert_eq!(
            throttle.flush(start + minute - Duration::from_millis(1)),
            None
        );
        assert_eq!(throttle.flush(start + minute), Some(4));
        assert_eq!(throttle.flush(start + minute * 3), None, "nothing new");
        // Long after the last warning, the next event is reported at once.
        assert_eq!(throttle.record(2, start + minute * 3), Some(2));
        assert_eq!(throttle.record(1, start + minute * 3), None);
    }
}
