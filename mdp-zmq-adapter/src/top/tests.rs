//! `mdp top`'s steps, each with known answers.

use std::io::{Read, Write};
use std::net::TcpListener;
use std::thread;
use std::time::{Duration, Instant};

use super::*;

/// What `mdp-broker --metrics` serves, written by hand the way
/// prometheus-client's encoder writes it, with a service whose name holds
/// each escape, a timestamp, an exemplar, and a line after `# EOF`.
const EXPOSITION: &str = r##"# HELP mdp_requests Requests by service and outcome.
# TYPE mdp_requests counter
mdp_requests_total{service="echo",outcome="answered"} 100
mdp_requests_total{service="echo",outcome="expired"} 2
mdp_requests_total{service="echo",outcome="dropped"} 3
mdp_requests_total{service="a \"b\" \\c\nd",outcome="answered"} 7 1700000000000
# HELP mdp_requests_received Requests admitted to a service.
# TYPE mdp_requests_received counter
mdp_requests_received_total{service="echo"} 105
mdp_requests_received_total{service="a \"b\" \\c\nd"} 7
# TYPE mdp_requests_dispatched counter
mdp_requests_dispatched_total{service="echo"} 104
# TYPE mdp_requests_requeued counter
mdp_requests_requeued_total{service="echo"} 1
# HELP mdp_requests_dropped Requests dropped, by reason.
# TYPE mdp_requests_dropped counter
mdp_requests_dropped_total{reason="queue_full"} 4
mdp_requests_dropped_total{reason="unknown_service"} 1
# TYPE mdp_workers gauge
mdp_workers{service="echo",state="idle"} 2
mdp_workers{service="echo",state="busy"} 1
mdp_workers{service="a \"b\" \\c\nd",state="idle"} 0
mdp_workers{service="a \"b\" \\c\nd",state="busy"} 1
# TYPE mdp_queued_requests gauge
mdp_queued_requests{service="echo"} 5
# TYPE mdp_queued_bytes gauge
mdp_queued_bytes{service="echo"} 320
# HELP mdp_request_queue_seconds From arrival to first dispatch.
# TYPE mdp_request_queue_seconds histogram
# UNIT mdp_request_queue_seconds seconds
mdp_request_queue_seconds_sum{service="echo"} 0.25
mdp_request_queue_seconds_count{service="echo"} 104
mdp_request_queue_seconds_bucket{service="echo",le="0.0005"} 50
mdp_request_queue_seconds_bucket{service="echo",le="0.001"} 90
mdp_request_queue_seconds_bucket{service="echo",le="60.0"} 104
mdp_request_queue_seconds_bucket{service="echo",le="+Inf"} 104 # {trace_id="x"} 0.0004
# TYPE mdp_request_service_seconds histogram
mdp_request_service_seconds_sum{service="echo"} 1.5
mdp_request_service_seconds_count{service="echo"} 100
mdp_request_service_seconds_bucket{service="echo",le="0.01"} 20
mdp_request_service_seconds_bucket{service="echo",le="0.025"} 100
mdp_request_service_seconds_bucket{service="echo",le="+Inf"} 100
# TYPE mdp_misbehaviour counter
mdp_misbehaviour_total{kind="malformed"} 6
# TYPE mdp_limit_hits counter
mdp_limit_hits_total{limit="max_queue_per_service"} 4
# TYPE mdp_access_denied counter
mdp_access_denied_total 1
# TYPE mdp_services gauge
mdp_services 2
# TYPE mdp_held_bytes gauge
mdp_held_bytes 2048
# EOF
mdp_services 99
"##;

const HOSTILE: &str = "a \"b\" \\c\nd";

#[test]
fn parses_an_exposition_into_its_samples() {
    let samples = parse(EXPOSITION).unwrap();
    // Every line that is not a comment, and nothing after `# EOF`.
    assert_eq!(samples.len(), 32);
    let s = |name: &str| Sample { name: name.to_owned(), labels: vec![], value: 0.0 };
    let labelled = |name: &str, labels: &[(&str, &str)], value| Sample {
        labels: labels.iter().map(|&(n, v)| (n.to_owned(), v.to_owned())).collect(),
        value,
        ..s(name)
    };
    assert_eq!(samples[0], labelled("mdp_requests_total", &[("service", "echo"), ("outcome", "answered")], 100.0));
    // The escapes undone; the timestamp read and dropped.
    assert_eq!(samples[3], labelled("mdp_requests_total", &[("service", HOSTILE), ("outcome", "answered")], 7.0));
    assert_eq!(samples[3].label("service"), Some("a \"b\" \\c\nd"));
    assert_eq!(
        samples[21],
        labelled("mdp_request_queue_seconds_bucket", &[("service", "echo"), ("le", "+Inf")], 104.0)
    );
    assert_eq!(samples[29], labelled("mdp_access_denied_total", &[], 1.0));
    assert_eq!(samples.last().unwrap(), &labelled("mdp_held_bytes", &[], 2048.0));
}

#[test]
fn parse_takes_blanks_a_trailing_comma_and_special_values() {
    let samples = parse("  x { a = \"1\" , b=\"\", } +Inf\n\ny NaN\nz{} -2.5e-3 \n").unwrap();
    assert_eq!(samples[0].labels, [("a".to_owned(), "1".to_owned()), ("b".to_owned(), String::new())]);
    assert_eq!(samples[0].value, f64::INFINITY);
    assert!(samples[1].value.is_nan());
    assert_eq!((samples[2].name.as_str(), samples[2].value), ("z", -0.0025));
}

#[test]
fn parse_names_the_first_malformed_line() {
    for (text, line, reason) in [
        ("# TYPE a counter\na_total 1\nb_total\n", 3, "no value"),
        ("a{x=\"1\"} one\n", 1, "\"one\" is not a number"),
        ("a 1\n\na{x=\"\\t\"} 1\n", 3, "unknown escape `\\t` in a label value"),
        ("a{x=\"open} 1\n", 1, "a label value is not closed"),
        ("a{x=1} 1\n", 1, "expected `\"` to open a label value"),
        ("a{x=\"1\" y=\"2\"} 1\n", 1, "expected `,` or `}` after a label value"),
        ("9a 1\n", 1, "expected a metric name"),
        ("a 1 2 3\n", 1, "unexpected \"3\" after the timestamp"),
    ] {
        let e = parse(text).unwrap_err();
        assert_eq!((e.line, e.reason.as_str()), (line, reason), "{text:?}");
    }
}

#[test]
fn a_snapshot_gathers_the_samples_by_service() {
    let s = Snapshot::from_samples(&parse(EXPOSITION).unwrap());
    assert_eq!(s.services.keys().collect::<Vec<_>>(), [HOSTILE, "echo"]);
    let echo = &s.services["echo"];
    assert_eq!((echo.answered, echo.expired, echo.dropped), (100.0, 2.0, 3.0));
    assert_eq!((echo.received, echo.dispatched, echo.requeued), (105.0, 104.0, 1.0));
    assert_eq!((echo.idle, echo.busy, echo.queued, echo.queued_bytes), (2.0, 1.0, 5.0, 320.0));
    let q = &echo.queue_time;
    assert_eq!(q.buckets, [(0.0005, 50.0), (0.001, 90.0), (60.0, 104.0), (f64::INFINITY, 104.0)]);
    assert_eq!((q.sum, q.count), (0.25, 104.0));
    assert_eq!(echo.service_time.buckets, [(0.01, 20.0), (0.025, 100.0), (f64::INFINITY, 100.0)]);
    assert_eq!(s.services[HOSTILE].busy, 1.0);
    assert_eq!(s.dropped["queue_full"] + s.dropped["unknown_service"], 5.0);
    assert_eq!(s.misbehaviour["malformed"], 6.0);
    assert_eq!(s.limit_hits["max_queue_per_service"], 4.0);
    // The line after `# EOF` does not count.
    assert_eq!((s.service_count, s.held_bytes, s.access_denied), (Some(2.0), Some(2048.0), 1.0));
}

/// A scrape with one service, `svc`, answering `answered` requests in all
/// and queue-time buckets `le` 0.001, 0.0025, 0.005, +Inf of `buckets`.
fn scrape(answered: f64, buckets: [f64; 3]) -> Snapshot {
    let [a, b, c] = buckets;
    let text = format!(
        "mdp_requests_total{{service=\"svc\",outcome=\"answered\"}} {answered}\n\
         mdp_request_queue_seconds_bucket{{service=\"svc\",le=\"0.001\"}} {a}\n\
         mdp_request_queue_seconds_bucket{{service=\"svc\",le=\"0.0025\"}} {b}\n\
         mdp_request_queue_seconds_bucket{{service=\"svc\",le=\"0.005\"}} {c}\n\
         mdp_request_queue_seconds_bucket{{service=\"svc\",le=\"+Inf\"}} {c}\n"
    );
    Snapshot::from_samples(&parse(&text).unwrap())
}

fn close(q: Option<Quantile>, seconds: f64) {
    let q = q.expect("a percentile");
    assert!(!q.at_least);
    assert!((q.seconds - seconds).abs() < 1e-12, "{} is not {seconds}", q.seconds);
}

#[test]
fn the_view_takes_rates_and_percentiles_from_what_two_scrapes_differ_by() {
    let before = scrape(100.0, [10.0, 10.0, 10.0]);
    let now = scrape(200.0, [10.0, 50.0, 110.0]);
    let view = View::new("m", &now, Some((&before, Duration::from_secs(2))), Order::Rate);
    let row = &view.rows[0];
    // 100 answered over 2 s.
    assert_eq!(row.rate, Some(50.0));
    assert_eq!(view.totals.rate, Some(50.0));
    // In the interval: 0 up to 1 ms, 40 up to 2.5 ms, 60 more up to 5 ms.
    // The 50th of 100 is the 10th of the 60 in (2.5 ms, 5 ms].
    close(row.queue_p50, 0.0025 + 0.0025 * 10.0 / 60.0);
    // The 99th, the 59th of those 60.
    close(row.queue_p99, 0.0025 + 0.0025 * 59.0 / 60.0);
    // Nothing was observed: no percentile.
    assert_eq!(row.service_p50, None);

    // Without a scrape before: no rate, percentiles since the start. The
    // 55th of 110 is the 5th of the 60 in (2.5 ms, 5 ms].
    let first = View::new("m", &now, None, Order::Rate);
    assert_eq!((first.rows[0].rate, first.totals.rate), (None, None));
    close(first.rows[0].queue_p50, 0.0025 + 0.0025 * 5.0 / 60.0);
}

#[test]
fn a_counter_that_went_down_started_again() {
    // The broker restarted: 30 answered since, over 3 s.
    let before = scrape(1000.0, [10.0, 20.0, 30.0]);
    let now = scrape(30.0, [0.0, 30.0, 30.0]);
    let view = View::new("m", &now, Some((&before, Duration::from_secs(3))), Order::Rate);
    assert_eq!(view.rows[0].rate, Some(10.0));
    // The buckets too: all 30 in (1 ms, 2.5 ms], the 15th halfway.
    close(view.rows[0].queue_p50, 0.00175);
}

#[test]
fn a_percentile_past_the_last_bound_is_at_least_that_bound() {
    let h = Histogram { buckets: vec![(0.5, 10.0), (60.0, 90.0), (f64::INFINITY, 100.0)], sum: 0.0, count: 100.0 };
    assert_eq!(h.quantile(0.99), Some(Quantile { seconds: 60.0, at_least: true }));
    // 50th of 100: the 40th of the 80 in (0.5 s, 60 s].
    close(h.quantile(0.5), 0.5 + 59.5 * 40.0 / 80.0);
    assert_eq!(Histogram::default().quantile(0.5), None);
}

#[test]
fn rows_sort_by_rate_then_name_or_by_name() {
    let text = |a: f64, b: f64, c: f64| {
        let mut t = String::new();
        for (name, n) in [("alpha", a), ("beta", b), ("gamma", c)] {
            t += &format!("mdp_requests_total{{service=\"{name}\",outcome=\"answered\"}} {n}\n");
        }
        Snapshot::from_samples(&parse(&t).unwrap())
    };
    let (before, now) = (text(0.0, 0.0, 0.0), text(10.0, 30.0, 10.0));
    let names = |order| {
        let view = View::new("m", &now, Some((&before, Duration::from_secs(1))), order);
        view.rows.into_iter().map(|r| r.service).collect::<Vec<_>>()
    };
    assert_eq!(names(Order::Rate), ["beta", "alpha", "gamma"]);
    assert_eq!(names(Order::Name), ["alpha", "beta", "gamma"]);
    assert_eq!(View::new("m", &now, None, Order::Rate).totals.rate, None);
}

#[test]
fn totals_add_up_services_and_count_what_is_new() {
    let before = Snapshot::from_samples(&parse(EXPOSITION).unwrap());
    let text = EXPOSITION
        .replace("{reason=\"queue_full\"} 4", "{reason=\"queue_full\"} 6")
        .replace("{service=\"echo\",outcome=\"answered\"} 100", "{service=\"echo\",outcome=\"answered\"} 110");
    let now = Snapshot::from_samples(&parse(&text).unwrap());
    let view = View::new("m", &now, Some((&before, Duration::from_millis(500))), Order::Rate);
    let t = &view.totals;
    assert_eq!((t.services, t.idle, t.busy, t.queued), (2.0, 2.0, 2.0, 5.0));
    assert_eq!(t.rate, Some(20.0));
    assert_eq!(t.drops, Count { total: 7.0, new: Some(2.0) });
    assert_eq!(t.misbehaviour, Count { total: 6.0, new: Some(0.0) });
    assert_eq!(t.limit_hits.total, 4.0);
    assert_eq!(t.held_bytes, Some(2048.0));
    assert_eq!(view.rows[0].service, "echo");
    assert_eq!(view.rows[0].drops, 3.0);
}

fn known_view() -> View {
    let q = |seconds| Some(Quantile { seconds, at_least: false });
    View {
        source: "http://127.0.0.1:9464/metrics".to_owned(),
        status: None,
        order: Order::Rate,
        interval: Some(Duration::from_millis(1000)),
        totals: Totals {
            services: 3.0,
            idle: 3.0,
            busy: 2.0,
            queued: 12.0,
            rate: Some(50.0),
            drops: Count { total: 7.0, new: Some(2.0) },
            misbehaviour: Count { total: 1.0, new: Some(0.0) },
            limit_hits: Count { total: 0.0, new: Some(0.0) },
            access_denied: Count { total: 0.0, new: None },
            held_bytes: Some(1536.0),
        },
        rows: vec![
            Row {
                service: "echo".to_owned(),
                idle: 2.0,
                busy: 1.0,
                queued: 0.0,
                rate: Some(47.5),
                queue_p50: q(0.00025),
                queue_p99: q(0.0042),
                service_p50: q(0.0123),
                service_p99: Some(Quantile { seconds: 60.0, at_least: true }),
                drops: 3.0,
            },
            Row {
                service: "billing.invoices.monthly-report".to_owned(),
                idle: 1.0,
                busy: 1.0,
                queued: 12.0,
                rate: Some(2.5),
                queue_p50: q(1.5),
                queue_p99: q(250.0),
                service_p50: q(0.75),
                service_p99: q(2.0),
                drops: 0.0,
            },
            Row { service: "evil\n\u{1b}[2J".to_owned(), ..Row::default() },
        ],
    }
}

#[test]
fn render_is_exactly_the_golden_text() {
    let expected = "\
mdp top  http://127.0.0.1:9464/metrics  by req/s  over 1.0s
services 3   workers 3 idle 2 busy   queued 12   answered 50.0/s
drops 7 (+2)   misbehaviour 1   limit hits 0   access denied 0   held 1.5 KiB

SERVICE                         IDLE BUSY QUEUED    REQ/S QUEUE p50 QUEUE p99  SERV p50  SERV p99   DROPS
echo                               2    1      0     47.5     250us    4.20ms    12.3ms    >60.0s       3
billing.invoices.monthly-report    1    1     12      2.5      1.5s      250s   750.0ms      2.0s       0
evil\\n\\u{1b}[2J                    0    0      0        -         -         -         -         -       0
";
    assert_eq!(render(&known_view(), 120), expected);
}

#[test]
fn render_cuts_long_names_and_lines_to_the_width() {
    let mut view = known_view();
    view.status = Some("cannot connect to 127.0.0.1:9464: Connection refused (retrying)".to_owned());
    view.rows.truncate(2);
    let expected = "\
mdp top  http://127.0.0.1:9464/metrics  by req/s  over 1.0s
! cannot connect to 127.0.0.1:9464: Connection refused (retrying)
services 3   workers 3 idle 2 busy   queued 12   answered 50.0/s
drops 7 (+2)   misbehaviour 1   limit hits 0   access denied 0   held 1.5 KiB

SERVICE     IDLE BUSY QUEUED    REQ/S QUEUE p50 QUEUE p99  SERV p50  SERV p99   DROPS
echo           2    1      0     47.5     250us    4.20ms    12.3ms    >60.0s       3
billing.in…    1    1     12      2.5      1.5s      250s   750.0ms      2.0s       0
";
    assert_eq!(render(&view, 85), expected);
    // Narrower than the figures: every line cut at the width.
    let narrow = render(&view, 20);
    assert!(narrow.lines().all(|l| l.chars().count() <= 20), "{narrow}");
    assert_eq!(narrow.lines().nth(6), Some("echo       2    1   "));
    assert_eq!(narrow.lines().nth(7), Some("billin…    1    1   "));
}

#[test]
fn an_empty_scrape_adds_up_to_zeros() {
    let view = View::new("m", &Snapshot::default(), Some((&Snapshot::default(), Duration::from_secs(1))), Order::Rate);
    assert!(view.totals.misbehaviour.total.is_sign_positive() && view.totals.idle.is_sign_positive());
    assert_eq!(view.totals.rate, Some(0.0));
    assert_eq!(render(&view, 80).lines().nth(2), Some("drops 0   misbehaviour 0   limit hits 0   access denied 0"));
    let minus_zero = View { totals: Totals { queued: -0.0, ..Totals::default() }, ..View::default() };
    assert!(render(&minus_zero, 80).contains("queued 0 "));
}

#[test]
fn render_says_when_there_are_no_services_yet() {
    let view = View { source: "x".to_owned(), status: Some("waiting".to_owned()), ..View::default() };
    assert_eq!(
        render(&view, 200),
        "mdp top  x  by req/s\n! waiting\nservices 0   workers 0 idle 0 busy   queued 0   answered -/s\n\
         drops 0   misbehaviour 0   limit hits 0   access denied 0\n\n\
         SERVICE IDLE BUSY QUEUED    REQ/S QUEUE p50 QUEUE p99  SERV p50  SERV p99   DROPS\n(no services)\n"
    );
}

/// A server for one connection: reads the request head, hands it to the
/// test through the join handle, writes `response`, then (unless `linger`)
/// closes.
fn serve_once(response: &'static [u8], linger: bool) -> (String, thread::JoinHandle<String>) {
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = listener.local_addr().unwrap().to_string();
    let server = thread::spawn(move || {
        let (mut conn, _) = listener.accept().unwrap();
        let mut head = Vec::new();
        let mut byte = [0u8];
        while !head.ends_with(b"\r\n\r\n") {
            conn.read_exact(&mut byte).unwrap();
            head.push(byte[0]);
        }
        conn.write_all(response).unwrap();
        if linger {
            // Keep the connection open past the client's return.
            thread::sleep(Duration::from_secs(3));
        }
        String::from_utf8(head).unwrap()
    });
    (addr, server)
}

#[test]
fn fetch_gets_a_chunked_body_with_one_get() {
    let (addr, server) = serve_once(
        b"HTTP/1.1 200 OK\r\nContent-Type: text/plain\r\nTransfer-Encoding: chunked\r\n\r\n\
          a\r\nmdp_servic\r\na\r\nes 2\n# EOF\r\n0\r\n\r\n",
        false,
    );
    let target = Target::parse(&addr).unwrap();
    assert_eq!(fetch(&target, Duration::from_secs(5)).unwrap(), "mdp_services 2\n# EOF");
    let head = server.join().unwrap();
    assert!(head.starts_with("GET /metrics HTTP/1.1\r\n"), "{head}");
    assert!(head.contains(&format!("\r\nHost: {addr}\r\n")), "{head}");
    assert!(head.contains("\r\nConnection: close\r\n"), "{head}");
}

#[test]
fn fetch_stops_at_the_content_length_though_the_server_keeps_the_connection() {
    let (addr, _server) = serve_once(b"HTTP/1.1 200 OK\r\nContent-Length: 15\r\n\r\nmdp_services 2\n", true);
    let started = Instant::now();
    let target = Target::parse(&format!("http://{addr}/metrics")).unwrap();
    let body = fetch(&target, Duration::from_secs(2)).unwrap();
    assert_eq!(body, "mdp_services 2\n");
    assert!(started.elapsed() < Duration::from_secs(1), "waited {:?} for the close", started.elapsed());
}

#[test]
fn fetch_refuses_a_status_other_than_200() {
    let (addr, _server) = serve_once(b"HTTP/1.0 404 Not Found\r\n\r\nno such page", false);
    let target = Target::parse(&format!("{addr}/nope")).unwrap();
    let e = fetch(&target, Duration::from_secs(5)).unwrap_err();
    assert!(matches!(&e, FetchError::Status { status, .. } if status == "404 Not Found"), "{e}");
    assert_eq!(e.to_string(), format!("http://{addr}/nope answered 404 Not Found"));
}

#[test]
fn an_unreachable_broker_is_an_error() {
    // A port nothing listens on any more.
    let addr = TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap();
    let target = Target::parse(&addr.to_string()).unwrap();
    let e = fetch(&target, Duration::from_secs(2)).unwrap_err();
    assert!(matches!(e, FetchError::Connect { .. }), "{e}");
    assert!(e.to_string().starts_with(&format!("cannot connect to {addr}: ")), "{e}");
}

#[test]
fn a_broker_that_does_not_answer_times_out() {
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let target = Target::parse(&listener.local_addr().unwrap().to_string()).unwrap();
    let started = Instant::now();
    let e = fetch(&target, Duration::from_millis(300)).unwrap_err();
    assert!(matches!(e, FetchError::Io { .. }), "{e}");
    assert!(started.elapsed() < Duration::from_secs(2), "took {:?}", started.elapsed());
    drop(listener);
}

#[test]
fn a_scrape_goes_from_the_wire_to_the_screen() {
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = listener.local_addr().unwrap();
    let server = thread::spawn(move || {
        let (mut conn, _) = listener.accept().unwrap();
        let mut buf = [0u8; 1024];
        let _ = conn.read(&mut buf).unwrap();
        let head = format!("HTTP/1.1 200 OK\r\nContent-Length: {}\r\nConnection: close\r\n\r\n", EXPOSITION.len());
        conn.write_all(head.as_bytes()).unwrap();
        conn.write_all(EXPOSITION.as_bytes()).unwrap();
    });
    let target = Target::parse(&addr.to_string()).unwrap();
    let text = fetch(&target, Duration::from_secs(5)).unwrap();
    server.join().unwrap();
    let view = View::new(&target.url(), &Snapshot::from_samples(&parse(&text).unwrap()), None, Order::Name);
    let screen = render(&view, 100);
    assert!(screen.contains("\na \"b\" \\c\\nd "), "{screen}");
    assert!(screen.contains("\necho      "), "{screen}");
}
