//! A budget's period: a UTC day, an ISO week (from Monday), a calendar month, or all time.

use serde::Serialize;

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Period {
    Day,
    Week,
    Month,
    Total,
}

const DAY_MS: i64 = 86_400_000;

impl Period {
    pub const NAMES: &'static str = "day, week, month or total";

    pub fn parse(s: &str) -> Option<Period> {
        match s {
            "day" => Some(Period::Day),
            "week" => Some(Period::Week),
            "month" => Some(Period::Month),
            "total" => Some(Period::Total),
            _ => None,
        }
    }

    pub fn as_str(self) -> &'static str {
        match self {
            Period::Day => "day",
            Period::Week => "week",
            Period::Month => "month",
            Period::Total => "total",
        }
    }

    /// The period that holds `now_ms`: its number (counters are kept per number), and its
    /// start and end in Unix ms (the end of `total` is never).
    pub fn at(self, now_ms: u64) -> (u64, i64, i64) {
        let now = now_ms as i64;
        let day = now.div_euclid(DAY_MS);
        match self {
            Period::Day => (day as u64, day * DAY_MS, (day + 1) * DAY_MS),
            Period::Week => {
                // 1970-01-01 was a Thursday: weeks start three days before it.
                let week = (day + 3).div_euclid(7);
                let start = (week * 7 - 3) * DAY_MS;
                (week as u64, start, start + 7 * DAY_MS)
            }
            Period::Month => {
                let (y, m) = year_month(day);
                let n = y * 12 + (m - 1);
                let (ny, nm) = if m == 12 { (y + 1, 1) } else { (y, m + 1) };
                (
                    n as u64,
                    days_from_civil(y, m) * DAY_MS,
                    days_from_civil(ny, nm) * DAY_MS,
                )
            }
            Period::Total => (0, 0, i64::MAX),
        }
    }
}

/// The year and month of a day since 1970-01-01 (Howard Hinnant's `civil_from_days`).
fn year_month(days: i64) -> (i64, i64) {
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z - era * 146_097;
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let m = if mp < 10 { mp + 3 } else { mp - 9 };
    let y = yoe + era * 400 + i64::from(m <= 2);
    (y, m)
}

/// Days since 1970-01-01 of the first of a month (Howard Hinnant's `days_from_civil`).
fn days_from_civil(y: i64, m: i64) -> i64 {
    let y = if m <= 2 { y - 1 } else { y };
    let era = y.div_euclid(400);
    let yoe = y - era * 400;
    let mp = if m > 2 { m - 3 } else { m + 9 };
    let doy = (153 * mp + 2) / 5;
    let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    era * 146_097 + doe - 719_468
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ms(s: &str) -> u64 {
        chrono::DateTime::parse_from_rfc3339(s)
            .unwrap()
            .timestamp_millis() as u64
    }

    #[test]
    fn periods_start_and_end_on_their_calendar_bounds() {
        let now = ms("2026-12-04T17:58:33Z");
        let (_, s, e) = Period::Day.at(now);
        assert_eq!(
            (s as u64, e as u64),
            (ms("2026-12-04T00:00:00Z"), ms("2026-12-05T00:00:00Z"))
        );
        // 2026-12-04 is a Friday: its ISO week began on Monday the 30th of November.
        let (_, s, e) = Period::Week.at(now);
        assert_eq!(
            (s as u64, e as u64),
            (ms("2026-11-30T00:00:00Z"), ms("2026-12-07T00:00:00Z"))
        );
        let (_, s, e) = Period::Month.at(now);
        assert_eq!(
            (s as u64, e as u64),
            (ms("2026-12-01T00:00:00Z"), ms("2027-01-01T00:00:00Z"))
        );
        let (_, s, e) = Period::Month.at(ms("2028-02-29T23:59:59Z"));
        assert_eq!(
            (s as u64, e as u64),
            (ms("2028-02-01T00:00:00Z"), ms("2028-03-01T00:00:00Z"))
        );
        assert_eq!(Period::Total.at(now), (0, 0, i64::MAX));
    }

    #[test]
    fn a_new_period_has_a_new_number() {
        let last = ms("2026-12-31T23:59:59.999Z");
        let next = last + 1;
        for p in [Period::Day, Period::Month] {
            assert_eq!(p.at(last).0 + 1, p.at(next).0, "{p:?}");
        }
        // Sunday night to Monday morning is a new week; Monday to Tuesday is not.
        let sunday = ms("2026-12-06T23:59:59Z");
        assert_eq!(
            Period::Week.at(sunday).0 + 1,
            Period::Week.at(sunday + 1000).0
        );
        assert_eq!(
            Period::Week.at(sunday + 1000).0,
            Period::Week.at(sunday + 86_400_000).0
        );
    }
}
