//! A [`View`] as text: a pure function of the view and the screen's width,
//! so what the terminal shows can be tested as a string.

use std::fmt::Write as _;

use super::view::{Count, Order, Quantile, View};

/// The columns right of the service's name: header and width.
const COLUMNS: [(&str, usize); 9] = [
    ("IDLE", 5),
    ("BUSY", 5),
    ("QUEUED", 7),
    ("REQ/S", 9),
    ("QUEUE p50", 10),
    ("QUEUE p99", 10),
    ("SERV p50", 10),
    ("SERV p99", 10),
    ("DROPS", 8),
];

/// The name column is never narrower than this.
const NAME_MIN: usize = 7;

/// The view as lines of at most `width` characters, each ending in `\n`.
///
/// The title, the status if any, two lines of broker totals, a blank line,
/// then a table with one row per service. The name column is as wide as
/// the longest name, within what `width` leaves beside the figures; a
/// longer name is cut and ends in `…`. A name's control characters (a
/// newline, an escape that would drive the terminal) are shown escaped
/// (`\n`, `\u{1b}`). Any line still longer than `width` is cut there.
/// Width is counted in characters, taken to be one column each.
///
/// Latencies are in `us`, `ms` or `s`; `>60.0s` is a percentile past the
/// last finite bucket; `-` is a figure there is nothing to compute from
/// (no rate on the first scrape, no percentile without observations).
pub fn render(view: &View, width: usize) -> String {
    let mut lines = Vec::new();
    let order = match view.order {
        Order::Rate => "by req/s",
        Order::Name => "by name",
    };
    let mut title = format!("mdp top  {}  {order}", view.source);
    if let Some(d) = view.interval {
        let _ = write!(title, "  over {:.1}s", d.as_secs_f64());
    }
    lines.push(title);
    if let Some(status) = &view.status {
        lines.push(format!("! {}", printable(status)));
    }
    let t = &view.totals;
    lines.push(format!(
        "services {}   workers {} idle {} busy   queued {}   answered {}/s",
        whole(t.services),
        whole(t.idle),
        whole(t.busy),
        whole(t.queued),
        rate(t.rate)
    ));
    let mut second = format!(
        "drops {}   misbehaviour {}   limit hits {}   access denied {}",
        count(t.drops),
        count(t.misbehaviour),
        count(t.limit_hits),
        count(t.access_denied)
    );
    if let Some(b) = t.held_bytes {
        let _ = write!(second, "   held {}", bytes(b));
    }
    lines.push(second);
    lines.push(String::new());

    let figures: usize = COLUMNS.iter().map(|(_, w)| w).sum();
    let names: Vec<String> = view.rows.iter().map(|r| printable(&r.service)).collect();
    let longest = names.iter().map(|n| n.chars().count()).max().unwrap_or(0);
    let name_width = longest.max(NAME_MIN).min(width.saturating_sub(figures)).max(NAME_MIN);
    let mut header = format!("{:<name_width$}", "SERVICE");
    for (h, w) in COLUMNS {
        let _ = write!(header, "{h:>w$}");
    }
    lines.push(header);
    for (row, name) in view.rows.iter().zip(&names) {
        let cells = [
            whole(row.idle),
            whole(row.busy),
            whole(row.queued),
            rate(row.rate),
            latency(row.queue_p50),
            latency(row.queue_p99),
            latency(row.service_p50),
            latency(row.service_p99),
            whole(row.drops),
        ];
        let mut line = fit(name, name_width);
        for (cell, (_, w)) in cells.iter().zip(COLUMNS) {
            let _ = write!(line, "{cell:>w$}");
        }
        lines.push(line);
    }
    if view.rows.is_empty() {
        lines.push("(no services)".to_owned());
    }

    let mut out = String::new();
    for line in lines {
        out.extend(line.chars().take(width));
        out.push('\n');
    }
    out
}

/// `s` with control characters escaped.
fn printable(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for c in s.chars() {
        if c.is_control() {
            out.extend(c.escape_default());
        } else {
            out.push(c);
        }
    }
    out
}

/// `name` padded or cut to exactly `width` characters.
fn fit(name: &str, width: usize) -> String {
    if name.chars().count() <= width {
        format!("{name:<width$}")
    } else {
        let mut cut: String = name.chars().take(width.saturating_sub(1)).collect();
        cut.push('…');
        cut
    }
}

fn whole(v: f64) -> String {
    // -0 (or what rounds to it) prints as 0.
    let v = if v.round() == 0.0 { 0.0 } else { v };
    format!("{v:.0}")
}

fn rate(r: Option<f64>) -> String {
    r.map_or_else(|| "-".to_owned(), |r| format!("{r:.1}"))
}

fn count(c: Count) -> String {
    match c.new {
        Some(new) if new > 0.0 => format!("{} (+{})", whole(c.total), whole(new)),
        _ => whole(c.total),
    }
}

fn latency(q: Option<Quantile>) -> String {
    let Some(q) = q else { return "-".to_owned() };
    let s = q.seconds;
    let text = if s < 0.001 {
        format!("{:.0}us", s * 1e6)
    } else if s < 0.01 {
        format!("{:.2}ms", s * 1e3)
    } else if s < 1.0 {
        format!("{:.1}ms", s * 1e3)
    } else if s < 100.0 {
        format!("{s:.1}s")
    } else {
        format!("{s:.0}s")
    };
    if q.at_least {
        format!(">{text}")
    } else {
        text
    }
}

fn bytes(b: f64) -> String {
    const UNITS: [&str; 4] = ["KiB", "MiB", "GiB", "TiB"];
    if b < 1024.0 {
        return format!("{b:.0} B");
    }
    let mut v = b;
    let mut unit = "B";
    for u in UNITS {
        if v < 1024.0 {
            break;
        }
        v /= 1024.0;
        unit = u;
    }
    format!("{v:.1} {unit}")
}
