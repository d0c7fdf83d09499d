//! The Overview's chart of logins per hour over the last 24 hours, drawn on the server as
//! SVG geometry that the template turns into elements (escaped like any other value):
//! no script and no assets from anywhere.

/// Chart width in SVG units.
pub(crate) const WIDTH: i64 = 720;
/// Chart height in SVG units, labels included.
pub(crate) const HEIGHT: i64 = 180;
/// Height of the bar area.
const PLOT: i64 = 150;
const HOURS: i64 = 24;
/// Room at the left for the y-axis scale.
pub(crate) const LEFT: i64 = 40;

/// One hour's bar.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Bar {
    pub x: i64,
    pub y: i64,
    pub width: i64,
    pub height: i64,
    /// What a pointer hovering it (and a screen reader) is told.
    pub label: String,
}

/// A label under the bars, or on the y axis.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Tick {
    pub x: i64,
    pub y: i64,
    pub text: String,
    /// SVG `text-anchor`: the first label starts at its tick and the last ends at it, so
    /// that neither is cut by the chart's edge.
    pub anchor: &'static str,
}

/// The whole chart.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Chart {
    pub bars: Vec<Bar>,
    pub ticks: Vec<Tick>,
    /// The y-axis scale: 0, half the peak and the peak, with a grid line each.
    pub scale: Vec<Tick>,
    pub total: usize,
    pub peak: usize,
    /// The chart said in words (its accessible name).
    pub summary: String,
    /// The caption: "1 login in the last 24 hours; busiest hour 1." (singular for one).
    pub caption: String,
}

fn logins(n: usize) -> String {
    format!("{n} login{}", if n == 1 { "" } else { "s" })
}

/// Draws `counts`, the logins of each of the 24 hours before `now`, oldest first (the
/// backend counts them; hours past 24 are not drawn, missing ones are empty).
pub(crate) fn logins_per_hour(now: i64, counts: &[u64]) -> Chart {
    let start = now - HOURS * 3600;
    let counts: Vec<usize> = (0..HOURS as usize)
        .map(|i| {
            counts
                .get(i)
                .map_or(0, |&n| usize::try_from(n).unwrap_or(usize::MAX))
        })
        .collect();
    let peak = counts.iter().copied().max().unwrap_or(0);
    let total: usize = counts.iter().fold(0, |a, &n| a.saturating_add(n));
    let slot = (WIDTH - LEFT) / HOURS;
    let bars = counts
        .iter()
        .enumerate()
        .map(|(i, &n)| {
            let i = i as i64;
            // A minimal sliver keeps empty hours visible as a baseline.
            let height = if peak == 0 {
                1
            } else {
                ((n as i64 * PLOT) / peak as i64).max(1)
            };
            let from = start + i * 3600;
            Bar {
                x: LEFT + i * slot + 3,
                y: PLOT - height,
                width: slot - 6,
                height,
                label: format!(
                    "{} {}:00–{}:00 UTC",
                    logins(n),
                    hour_of(from),
                    hour_of(from + 3600)
                ),
            }
        })
        .collect();
    let ticks = (0..=HOURS)
        .step_by(6)
        .map(|i| Tick {
            x: LEFT + i * slot,
            y: HEIGHT - 8,
            text: if i == HOURS {
                "now".to_owned()
            } else {
                format!("{}:00", hour_of(start + i * 3600))
            },
            anchor: match i {
                0 => "start",
                HOURS => "end",
                _ => "middle",
            },
        })
        .collect();
    // Whole numbers only: with a peak of 1 the middle line would read 0.5.
    let mut levels = vec![0, peak / 2, peak];
    levels.dedup();
    let scale = levels
        .into_iter()
        .map(|v| Tick {
            x: LEFT - 6,
            y: if peak == 0 {
                PLOT
            } else {
                PLOT - (v as i64 * PLOT) / peak as i64
            },
            text: v.to_string(),
            anchor: "end",
        })
        .collect();
    Chart {
        bars,
        ticks,
        scale,
        total,
        peak,
        caption: format!(
            "{} in the last 24 hours; busiest hour {peak}. Times in UTC.",
            logins(total)
        ),
        summary: format!(
            "Logins per hour over the last 24 hours: {total} in all, at most {peak} in one hour"
        ),
    }
}

fn hour_of(unix: i64) -> String {
    format!("{:02}", unix.rem_euclid(86_400) / 3600)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn each_hour_is_a_bar() {
        let now = 1_800_000_000;
        let mut counts = [0; 24];
        counts[0] = 1;
        counts[22] = 1;
        counts[23] = 2;
        let c = logins_per_hour(now, &counts);
        assert_eq!(c.total, 4);
        assert_eq!(c.bars.len(), 24);
        assert_eq!(c.bars[0].label.split(' ').next(), Some("1"));
        assert!(c.bars[23].label.starts_with("2 logins"), "{:?}", c.bars[23]);
        assert!(c.bars[22].label.starts_with("1 login "), "{:?}", c.bars[22]);
        assert_eq!(c.peak, 2);
        assert_eq!(c.bars[23].height, PLOT);
        assert_eq!(c.bars[23].y, 0);
        assert_eq!(c.ticks.len(), 5);
        assert_eq!(c.ticks[4].text, "now");
        assert_eq!((c.ticks[0].anchor, c.ticks[4].anchor), ("start", "end"));
        assert!(c.ticks[0].x >= LEFT, "the first label is not cut");
        let scale: Vec<&str> = c.scale.iter().map(|t| t.text.as_str()).collect();
        assert_eq!(scale, ["0", "1", "2"]);
        assert_eq!(c.scale[2].y, 0);
        assert!(c.caption.starts_with("4 logins in"), "{}", c.caption);
    }

    #[test]
    fn one_login_reads_one_login() {
        let mut counts = [0; 24];
        counts[5] = 1;
        let c = logins_per_hour(1_800_000_000, &counts);
        assert!(c.caption.starts_with("1 login in"), "{}", c.caption);
        let scale: Vec<&str> = c.scale.iter().map(|t| t.text.as_str()).collect();
        assert_eq!(scale, ["0", "1"], "no half logins on the scale");
    }

    #[test]
    fn an_empty_day_draws_a_baseline() {
        let c = logins_per_hour(0, &[]);
        assert_eq!(c.total, 0);
        assert!(c.bars.iter().all(|b| b.height == 1));
    }
}
