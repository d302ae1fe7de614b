//! Cron schedules (5 fields and the @yearly … @hourly macros) in a time zone: the next run,
//! and the runs missed since a time (upstream's mostRecentScheduleTime).

use croner::parser::{CronParser, Seconds, Year};
use croner::Cron;
use jiff::tz::TimeZone;
use jiff::Timestamp;

/// Upstream warns when more than this many start times were missed.
pub const TOO_MANY_MISSED: usize = 100;

pub fn parse(schedule: &str) -> Result<Cron, String> {
    let s = schedule.trim();
    if s.starts_with("TZ=") || s.starts_with("CRON_TZ=") {
        return Err("TZ in the schedule is not supported, use spec.timeZone".into());
    }
    let s = match s.to_ascii_lowercase().as_str() {
        "@midnight" => "@daily",
        _ => s,
    };
    CronParser::builder()
        .seconds(Seconds::Disallowed)
        .year(Year::Disallowed)
        .build()
        .parse(s)
        .map_err(|e| e.to_string())
}

/// The zone of `spec.timeZone`, or the controller's own zone without one (as upstream).
pub fn zone(name: Option<&str>) -> Result<TimeZone, String> {
    match name {
        None => Ok(TimeZone::system()),
        Some(n) => TimeZone::get(n).map_err(|e| e.to_string()),
    }
}

/// The first run strictly after `t`.
pub fn next_after(cron: &Cron, tz: &TimeZone, t: Timestamp) -> Option<Timestamp> {
    cron.find_next_occurrence(&t.to_zoned(tz.clone()), false)
        .ok()
        .map(|z| z.timestamp())
}

/// Runs in (earliest, now]: the latest, and how many (counted up to TOO_MANY_MISSED + 1).
#[derive(Debug, PartialEq)]
pub struct Missed {
    pub latest: Option<Timestamp>,
    pub count: usize,
}

pub fn missed(cron: &Cron, tz: &TimeZone, earliest: Timestamp, now: Timestamp) -> Missed {
    let latest = cron
        .find_previous_occurrence(&now.to_zoned(tz.clone()), true)
        .ok()
        .map(|z| z.timestamp())
        .filter(|t| *t > earliest && *t <= now);
    let mut count = 0;
    if latest.is_some() {
        let mut t = earliest;
        while count <= TOO_MANY_MISSED {
            match next_after(cron, tz, t) {
                Some(n) if n <= now => {
                    count += 1;
                    t = n;
                }
                _ => break,
            }
        }
    }
    Missed { latest, count }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ts(s: &str) -> Timestamp {
        s.parse().expect("time")
    }

    fn next(schedule: &str, zone_name: &str, after: &str) -> String {
        let cron = parse(schedule).expect("schedule");
        let tz = zone(Some(zone_name)).expect("zone");
        next_after(&cron, &tz, ts(after)).expect("next").to_string()
    }

    #[test]
    fn five_fields_and_macros() {
        let at = "2026-03-10T10:17:30Z";
        assert_eq!(next("*/15 * * * *", "UTC", at), "2026-03-10T10:30:00Z");
        assert_eq!(next("@hourly", "UTC", at), "2026-03-10T11:00:00Z");
        assert_eq!(next("@daily", "UTC", at), "2026-03-11T00:00:00Z");
        assert_eq!(next("@midnight", "UTC", at), "2026-03-11T00:00:00Z");
        assert_eq!(next("@weekly", "UTC", at), "2026-03-15T00:00:00Z");
        assert_eq!(next("@monthly", "UTC", at), "2026-04-01T00:00:00Z");
        assert_eq!(next("@yearly", "UTC", at), "2027-01-01T00:00:00Z");
        assert_eq!(next("@annually", "UTC", at), "2027-01-01T00:00:00Z");
        // Day of month OR day of week when both are restricted (Vixie cron, as robfig).
        assert_eq!(next("0 0 13 * 5", "UTC", at), "2026-03-13T00:00:00Z");
        assert!(parse("* * * * * *").is_err(), "no seconds field");
        assert!(parse("61 * * * *").is_err());
        assert!(parse("TZ=UTC * * * * *").is_err());
    }

    #[test]
    fn time_zones() {
        let at = "2026-01-10T10:00:00Z";
        assert_eq!(next("0 9 * * *", "Asia/Tokyo", at), "2026-01-11T00:00:00Z");
        assert_eq!(
            next("0 9 * * *", "America/New_York", at),
            "2026-01-10T14:00:00Z"
        );
        assert!(zone(Some("Mars/Olympus")).is_err());
    }

    #[test]
    fn missed_runs_since_the_last() {
        let cron = parse("*/1 * * * *").expect("schedule");
        let tz = TimeZone::UTC;
        let m = missed(
            &cron,
            &tz,
            ts("2026-01-01T00:00:00Z"),
            ts("2026-01-01T00:03:30Z"),
        );
        assert_eq!(
            m,
            Missed {
                latest: Some(ts("2026-01-01T00:03:00Z")),
                count: 3
            }
        );
        let none = missed(
            &cron,
            &tz,
            ts("2026-01-01T00:03:00Z"),
            ts("2026-01-01T00:03:59Z"),
        );
        assert_eq!(
            none,
            Missed {
                latest: None,
                count: 0
            }
        );
        let many = missed(
            &cron,
            &tz,
            ts("2026-01-01T00:00:00Z"),
            ts("2026-01-02T00:00:00Z"),
        );
        assert_eq!(many.latest, Some(ts("2026-01-02T00:00:00Z")));
        assert!(many.count > TOO_MANY_MISSED);
    }
}
