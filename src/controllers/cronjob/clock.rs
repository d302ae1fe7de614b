//! The CronJob controller's clock. Its speed is a testing knob (`[controllers]
//! cronjob_clock_speed`): "now" is the start time plus real elapsed time × speed, so at 60 a
//! cron minute passes in a real second. 1.0 is real time.

use std::time::{Duration, Instant};

use jiff::{SignedDuration, Timestamp};

pub struct Clock {
    base: Timestamp,
    start: Instant,
    speed: f64,
}

impl Clock {
    pub fn new(speed: f64) -> Self {
        Clock {
            base: Timestamp::now(),
            start: Instant::now(),
            speed: if speed.is_finite() && speed > 0.0 {
                speed
            } else {
                1.0
            },
        }
    }

    pub fn now(&self) -> Timestamp {
        let ahead = self.start.elapsed().as_secs_f64() * self.speed;
        SignedDuration::try_from_secs_f64(ahead)
            .ok()
            .and_then(|d| self.base.checked_add(d).ok())
            .unwrap_or(self.base)
    }

    /// The real time until `at` on this clock (zero if past).
    pub fn real_until(&self, at: Timestamp) -> Duration {
        let left = self.now().duration_until(at).as_secs_f64().max(0.0);
        Duration::try_from_secs_f64(left / self.speed).unwrap_or(Duration::MAX)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_fast_clock_runs_ahead_and_shortens_waits() {
        let c = Clock::new(60.0);
        let in_a_minute = c.now() + SignedDuration::from_secs(60);
        let wait = c.real_until(in_a_minute);
        assert!(
            wait <= Duration::from_secs(1) && wait > Duration::from_millis(500),
            "{wait:?}"
        );
        assert_eq!(Clock::new(-1.0).speed, 1.0);
    }
}
