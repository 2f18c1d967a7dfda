//! `mdp-broker --metrics` and `--log-format json`, over real sockets, and
//! the encoder on a hand-built snapshot. The exposition text is parsed
//! (by the small parser below), not searched for substrings.

use std::io::{BufRead, BufReader, Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::process::{Child, Command, Stdio};
use std::sync::mpsc;
use std::thread;
use std::time::{Duration, Instant};

use bytes::Bytes;
use mdp_core::{ClientConfig, Dialect, Histogram, PeerCommand, ServiceCounters, WorkerConfig, LATENCY_BOUNDS};
use mdp_zmq_adapter::metrics::{MetricsSnapshot, ServiceSnapshot};
use mdp_zmq_adapter::{Client, Worker};

// ---------------------------------------------------------------------------
// The exposition format (Prometheus text, version 0.0.4), parsed strictly.

#[derive(Debug, Clone, PartialEq)]
struct Sample {
    name: String,
    labels: Vec<(String, String)>,
    value: f64,
}

/// Every sample of `text`. Panics on any line that is not a comment, blank,
/// or a well-formed sample, and on a sample whose family has no `# TYPE`.
fn parse(text: &str) -> Vec<Sample> {
    let mut typed: Vec<String> = Vec::new();
    let mut samples = Vec::new();
    for line in text.lines() {
        if line.is_empty() {
            continue;
        }
        if let Some(comment) = line.strip_prefix('#') {
            let words: Vec<&str> = comment.trim_start().splitn(3, ' ').collect();
            match words[..] {
                ["TYPE", name, kind] => {
                    assert!(["counter", "gauge", "histogram", "summary", "untyped"].contains(&kind), "{line}");
                    assert!(valid_name(name), "{line}");
                    typed.push(name.to_owned());
                }
                ["HELP", name, _] => assert!(valid_name(name), "{line}"),
                _ => {}
            }
            continue;
        }
        let sample = parse_sample(line).unwrap_or_else(|e| panic!("bad sample line {line:?}: {e}"));
        let family = ["_bucket", "_sum", "_count"]
            .iter()
            .find_map(|suffix| sample.name.strip_suffix(suffix).filter(|f| typed.iter().any(|t| t == f)))
            .unwrap_or(&sample.name);
        assert!(typed.iter().any(|t| t == family), "no # TYPE before {line:?}");
        samples.push(sample);
    }
    samples
}

fn valid_name(name: &str) -> bool {
    let mut chars = name.chars();
    chars.next().is_some_and(|c| c.is_ascii_alphabetic() || c == '_' || c == ':')
        && chars.all(|c| c.is_ascii_alphanumeric() || c == '_' || c == ':')
}

fn parse_sample(line: &str) -> Result<Sample, String> {
    let name_end = line.find(['{', ' ']).ok_or("no value")?;
    let name = &line[..name_end];
    if !valid_name(name) {
        return Err(format!("bad name {name:?}"));
    }
    let mut rest = &line[name_end..];
    let mut labels = Vec::new();
    if let Some(after) = rest.strip_prefix('{') {
        let mut chars = after.char_indices().peekable();
        loop {
            // A label name, `=`, a quoted value with escapes, then `,` or `}`.
            let start = chars.peek().map(|&(i, _)| i).ok_or("unterminated labels")?;
            if after[start..].starts_with('}') {
                chars.next();
                break;
            }
            let eq = after[start..].find('=').ok_or("label without =")? + start;
            let key = &after[start..eq];
            if !valid_name(key) || key.contains(':') {
                return Err(format!("bad label name {key:?}"));
            }
            while chars.peek().is_some_and(|&(i, _)| i <= eq) {
                chars.next();
            }
            if chars.next().map(|(_, c)| c) != Some('"') {
                return Err("label value not quoted".into());
            }
            let mut value = String::new();
            loop {
                match chars.next().ok_or("unterminated label value")?.1 {
                    '"' => break,
                    '\n' => return Err("raw newline in a label value".into()),
                    '\\' => match chars.next().ok_or("dangling escape")?.1 {
                        '\\' => value.push('\\'),
                        '"' => value.push('"'),
                        'n' => value.push('\n'),
                        c => return Err(format!("bad escape \\{c}")),
                    },
                    c => value.push(c),
                }
            }
            labels.push((key.to_owned(), value));
            match chars.next().ok_or("unterminated labels")?.1 {
                ',' => {}
                '}' => break,
                c => return Err(format!("{c:?} after a label")),
            }
        }
        let consumed = chars.peek().map_or(after.len(), |&(i, _)| i);
        rest = &after[consumed..];
    }
    let mut words = rest.strip_prefix(' ').ok_or("no space before the value")?.split(' ');
    let value = match words.next().ok_or("no value")? {
        "+Inf" => f64::INFINITY,
        "-Inf" => f64::NEG_INFINITY,
        "NaN" => f64::NAN,
        v => v.parse().map_err(|e| format!("value {v:?}: {e}"))?,
    };
    if let Some(ts) = words.next() {
        ts.parse::<i64>().map_err(|e| format!("timestamp {ts:?}: {e}"))?;
    }
    if words.next().is_some() {
        return Err("trailing words".into());
    }
    Ok(Sample { name: name.to_owned(), labels, value })
}

/// The value of the one sample named `name` with exactly `labels`.
fn value(samples: &[Sample], name: &str, labels: &[(&str, &str)]) -> Option<f64> {
    let mut found = samples.iter().filter(|s| {
        s.name == name
            && s.labels.len() == labels.len()
            && labels.iter().all(|(k, v)| s.labels.iter().any(|(sk, sv)| sk == k && sv == v))
    });
    let first = found.next()?;
    assert!(found.next().is_none(), "two samples {name}{labels:?}");
    Some(first.value)
}

/// A histogram's buckets (`le`, cumulative count), in order, with `_count`
/// and `_sum`; checks that the bounds rise, the counts never fall, and the
/// `+Inf` bucket equals `_count`.
fn histogram(samples: &[Sample], name: &str, service: &str) -> (Vec<(f64, f64)>, f64, f64) {
    let buckets: Vec<(f64, f64)> = samples
        .iter()
        .filter(|s| s.name == format!("{name}_bucket") && s.labels.iter().any(|(k, v)| k == "service" && v == service))
        .map(|s| {
            let le = &s.labels.iter().find(|(k, _)| k == "le").expect("le").1;
            let le = if le == "+Inf" { f64::INFINITY } else { le.parse().expect("le is a number") };
            (le, s.value)
        })
        .collect();
    assert_eq!(buckets.len(), LATENCY_BOUNDS.len() + 1, "{name}: {buckets:?}");
    for pair in buckets.windows(2) {
        assert!(pair[0].0 < pair[1].0, "{name}: bounds not rising: {buckets:?}");
        assert!(pair[0].1 <= pair[1].1, "{name}: counts not monotone: {buckets:?}");
    }
    let count = value(samples, &format!("{name}_count"), &[("service", service)]).expect("_count");
    let sum = value(samples, &format!("{name}_sum"), &[("service", service)]).expect("_sum");
    assert_eq!(buckets.last().unwrap(), &(f64::INFINITY, count), "{name}");
    (buckets, count, sum)
}

// ---------------------------------------------------------------------------
// The broker binary and HTTP.

/// `mdp-broker` with its stderr read line by line on a thread, killed
/// when dropped.
struct Broker {
    child: Child,
    lines: mpsc::Receiver<String>,
    endpoint: String,
}

impl Broker {
    /// Starts it with `--metrics 127.0.0.1:0 --log-format json` and `extra`.
    fn start(extra: &[&str]) -> (Broker, SocketAddr) {
        let port = std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port();
        let endpoint = format!("tcp://127.0.0.1:{port}");
        let mut child = Command::new(env!("CARGO_BIN_EXE_mdp-broker"))
            .args(["-b", &endpoint, "--metrics", "127.0.0.1:0", "--log-format", "json"])
            .args(extra)
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap();
        let stderr = child.stderr.take().unwrap();
        let (tx, lines) = mpsc::channel();
        thread::spawn(move || {
            for line in BufReader::new(stderr).lines() {
                let Ok(line) = line else { return };
                if tx.send(line).is_err() {
                    return;
                }
            }
        });
        let mut broker = Broker { child, lines, endpoint };
        let addr = broker.wait_for_metrics_addr();
        (broker, addr)
    }

    /// The address in the "serving metrics" line, read as JSON.
    fn wait_for_metrics_addr(&mut self) -> SocketAddr {
        let deadline = Instant::now() + Duration::from_secs(20);
        loop {
            let left = deadline.saturating_duration_since(Instant::now());
            let line = self.lines.recv_timeout(left).expect("mdp-broker logs its metrics address");
            let json: serde_json::Value = serde_json::from_str(&line).unwrap_or_else(|e| panic!("{e}: {line}"));
            if json["message"] == "serving metrics" {
                return json["addr"].as_str().expect("addr").parse().expect("a socket address");
            }
        }
    }

    /// SIGTERM, wait for the exit, and every line logged since start
    /// (those not read already).
    fn stop(mut self) -> Vec<String> {
        let status = Command::new("kill").args(["-TERM", &self.child.id().to_string()]).status().unwrap();
        assert!(status.success());
        let code = self.child.wait().unwrap().code();
        assert_eq!(code, Some(0), "mdp-broker exits 0 on SIGTERM");
        let mut lines = Vec::new();
        while let Ok(line) = self.lines.recv_timeout(Duration::from_secs(5)) {
            lines.push(line);
        }
        lines
    }
}

impl Drop for Broker {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// One HTTP/1.1 request; the status code and the body.
fn http(addr: SocketAddr, method: &str, path: &str) -> (u16, String) {
    let mut conn = TcpStream::connect(addr).unwrap();
    conn.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
    write!(conn, "{method} {path} HTTP/1.1\r\nHost: {addr}\r\nConnection: close\r\n\r\n").unwrap();
    let mut response = Vec::new();
    conn.read_to_end(&mut response).unwrap();
    let response = String::from_utf8(response).expect("UTF-8");
    let (head, body) = response.split_once("\r\n\r\n").expect("a head and a body");
    let status = head.split(' ').nth(1).expect("a status").parse().expect("a numeric status");
    let length: usize =
        head.lines().find_map(|l| l.strip_prefix("Content-Length: ")).expect("Content-Length").parse().unwrap();
    assert_eq!(length, body.len(), "Content-Length");
    (status, body.to_owned())
}

fn scrape(addr: SocketAddr) -> Vec<Sample> {
    let (status, body) = http(addr, "GET", "/metrics");
    assert_eq!(status, 200, "{body}");
    parse(&body)
}

/// Scrapes until `ok` holds of the samples, for at most 10 s.
fn scrape_until(addr: SocketAddr, ok: impl Fn(&[Sample]) -> bool) -> Vec<Sample> {
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let samples = scrape(addr);
        if ok(&samples) {
            return samples;
        }
        assert!(Instant::now() < deadline, "never held; last scrape: {samples:?}");
        thread::sleep(Duration::from_millis(50));
    }
}

// ---------------------------------------------------------------------------

#[test]
fn a_scrape_counts_every_answered_request_and_every_idle_worker() {
    const N: usize = 25;
    const WORKERS: usize = 2;
    let (broker, addr) = Broker::start(&[]);

    let mut workers = Vec::new();
    for _ in 0..WORKERS {
        let config = WorkerConfig::new(Bytes::from_static(b"echo"), Dialect::V02);
        let worker = Worker::connect(&broker.endpoint, config).unwrap();
        let stop = worker.stop_handle();
        workers.push((stop, thread::spawn(move || worker.run(|body, _| body))));
    }
    // A hostile worker: a service name that would break the text format
    // if it were written as it is.
    let ctx = zmq::Context::new();
    let hostile = ctx.socket(zmq::DEALER).unwrap();
    hostile.set_linger(0).unwrap();
    hostile.connect(&broker.endpoint).unwrap();
    let name = "a\"b\nc} mdp_services 99\n\\";
    let ready = PeerCommand::Ready { service: Bytes::from(name) }.encode(Dialect::V02).unwrap();
    hostile.send_multipart(ready.iter().map(|f| f.as_ref()), 0).unwrap();

    let mut client = Client::connect(&broker.endpoint, ClientConfig::new(Dialect::V02)).unwrap();
    for i in 0..N {
        let body = vec![Bytes::from(format!("request {i}"))];
        let reply = client.request("echo", body.clone(), Duration::from_secs(10)).unwrap();
        assert_eq!(reply, body);
    }

    let idle = WORKERS as f64;
    let samples = scrape_until(addr, |s| {
        value(s, "mdp_workers", &[("service", "echo"), ("state", "idle")]) == Some(idle)
            && value(s, "mdp_workers", &[("service", name), ("state", "idle")]) == Some(1.0)
    });
    let n = N as f64;
    let echo = [("service", "echo")];
    let outcome = |o| value(&samples, "mdp_requests_total", &[("service", "echo"), ("outcome", o)]);
    assert_eq!(outcome("answered"), Some(n));
    assert_eq!(outcome("expired"), Some(0.0));
    assert_eq!(outcome("dropped"), Some(0.0));
    assert_eq!(value(&samples, "mdp_workers", &[("service", "echo"), ("state", "busy")]), Some(0.0));
    assert_eq!(value(&samples, "mdp_requests_received_total", &echo), Some(n));
    assert_eq!(value(&samples, "mdp_requests_dispatched_total", &echo), Some(n));
    assert_eq!(value(&samples, "mdp_requests_requeued_total", &echo), Some(0.0));
    assert_eq!(value(&samples, "mdp_queued_requests", &echo), Some(0.0));
    assert_eq!(value(&samples, "mdp_queued_bytes", &echo), Some(0.0));
    for name in ["mdp_request_queue_seconds", "mdp_request_service_seconds"] {
        let (_, count, sum) = histogram(&samples, name, "echo");
        assert_eq!(count, n, "{name}");
        assert!(sum >= 0.0 && sum < 10.0 * n, "{name}_sum {sum}");
    }
    // The hostile name is one label value, and forged nothing.
    assert_eq!(value(&samples, "mdp_services", &[]), Some(2.0));
    assert_eq!(value(&samples, "mdp_held_bytes", &[]), Some(0.0));
    // Two echo workers and the hostile one; the client is answered, so
    // the broker holds nothing for it.
    assert_eq!(value(&samples, "mdp_peers", &[("role", "worker")]), Some(3.0));
    assert_eq!(value(&samples, "mdp_peers", &[("role", "client")]), Some(0.0));
    assert_eq!(value(&samples, "mdp_access_denied_total", &[]), Some(0.0));
    for reason in ["too_many_dispatches", "reply_too_large", "shutdown", "partly_answered", "evicted"] {
        assert_eq!(value(&samples, "mdp_requests_dropped_total", &[("reason", reason)]), Some(0.0), "{reason}");
    }
    assert_eq!(value(&samples, "mdp_misbehaviour_total", &[("kind", "malformed")]), Some(0.0));
    assert_eq!(value(&samples, "mdp_limit_hits_total", &[("limit", "message_frames")]), Some(0.0));

    // Other paths and methods.
    assert_eq!(http(addr, "GET", "/").0, 404);
    assert_eq!(http(addr, "GET", "/metricsx").0, 404);
    assert_eq!(http(addr, "POST", "/metrics").0, 405);

    for (stop, _) in &workers {
        stop.stop();
    }
    for (_, thread) in workers {
        thread.join().unwrap().unwrap();
    }
    // Every line logged, the last ("mdp-broker stopped") included, is JSON.
    for line in broker.stop() {
        serde_json::from_str::<serde_json::Value>(&line).unwrap_or_else(|e| panic!("{e}: {line}"));
    }
}

#[test]
fn a_flood_of_malformed_messages_logs_a_bounded_number_of_json_lines() {
    const FLOOD: u64 = 3000;
    let (broker, addr) = Broker::start(&[]);
    let ctx = zmq::Context::new();
    let peer = ctx.socket(zmq::DEALER).unwrap();
    peer.set_linger(0).unwrap();
    peer.connect(&broker.endpoint).unwrap();
    let started = Instant::now();
    for i in 0..FLOOD {
        peer.send(format!("not MDP {i}").as_bytes(), 0).unwrap();
    }
    let samples = scrape_until(addr, |s| {
        value(s, "mdp_misbehaviour_total", &[("kind", "malformed")]).is_some_and(|n| n >= FLOOD as f64)
    });
    assert_eq!(value(&samples, "mdp_misbehaviour_total", &[("kind", "malformed")]), Some(FLOOD as f64));
    // Past the end of the flood's last window, so its summary is out.
    thread::sleep(Duration::from_millis(1500));
    let elapsed = started.elapsed().as_secs_f64();
    let lines = broker.stop();

    let mut misbehaved = 0;
    let mut suppressed = 0;
    for line in &lines {
        let json: serde_json::Value = serde_json::from_str(line).unwrap_or_else(|e| panic!("{e}: {line}"));
        for field in ["timestamp", "level", "message", "target"] {
            assert!(json.get(field).is_some(), "no {field}: {line}");
        }
        match json["message"].as_str().unwrap() {
            "peer misbehaved" => {
                assert_eq!(json["kind"], "malformed", "{line}");
                misbehaved += 1;
            }
            m if m.starts_with("log lines suppressed") => {
                assert_eq!(json["kind"], "misbehaviour", "{line}");
                suppressed += json["suppressed"].as_u64().expect("a count");
            }
            _ => {}
        }
    }
    // At most 10 a second (a window starts at its first line, so the run
    // spans at most ceil(elapsed) + 1 of them).
    let windows = elapsed.ceil() as u64 + 1;
    assert!(misbehaved <= 10 * windows, "{misbehaved} lines in {elapsed:.1} s");
    assert!(misbehaved >= 10, "the first 10 are logged: {misbehaved}");
    assert!(lines.len() as u64 <= 12 * windows + 5, "{} lines in all", lines.len());
    // None is lost without a trace: logged or counted in a summary.
    assert_eq!(misbehaved + suppressed, FLOOD);
}

#[test]
fn the_encoder_escapes_a_hostile_service_name_and_keeps_every_bucket() {
    let mut counters = ServiceCounters::default();
    (counters.received, counters.dispatched, counters.answered, counters.requeued, counters.expired) = (4, 5, 3, 1, 1);
    let mut queue_time = Histogram::default();
    for ms in [0, 3, 3, 70_000] {
        queue_time.record(Duration::from_millis(ms));
    }
    counters.queue_time = queue_time;
    let hostile = "a\"b\nc";
    let mut snap = MetricsSnapshot::default();
    snap.stats.services = 2;
    snap.stats.held_bytes = 1234;
    (snap.stats.idle_workers, snap.stats.busy_workers) = (2, 1);
    snap.stats.denied = 7;
    snap.services = vec![
        ServiceSnapshot {
            name: hostile.to_owned(),
            idle_workers: 2,
            busy_workers: 1,
            queued_requests: 6,
            queued_bytes: 600,
            clients: 4,
            counters,
        },
        ServiceSnapshot { name: "echo".to_owned(), ..Default::default() },
    ];
    let text = snap.encode();
    // Escaped as the format wants, on one line.
    assert!(text.lines().any(|l| l == r#"mdp_requests_total{service="a\"b\nc",outcome="answered"} 3"#), "{text}");
    let samples = parse(&text);
    let s = [("service", hostile)];
    let outcome = |o| value(&samples, "mdp_requests_total", &[("service", hostile), ("outcome", o)]);
    assert_eq!((outcome("answered"), outcome("expired"), outcome("dropped")), (Some(3.0), Some(1.0), Some(0.0)));
    assert_eq!(value(&samples, "mdp_requests_received_total", &s), Some(4.0));
    assert_eq!(value(&samples, "mdp_requests_dispatched_total", &s), Some(5.0));
    assert_eq!(value(&samples, "mdp_requests_requeued_total", &s), Some(1.0));
    assert_eq!(value(&samples, "mdp_workers", &[("service", hostile), ("state", "idle")]), Some(2.0));
    assert_eq!(value(&samples, "mdp_workers", &[("service", hostile), ("state", "busy")]), Some(1.0));
    assert_eq!(value(&samples, "mdp_queued_requests", &s), Some(6.0));
    assert_eq!(value(&samples, "mdp_queued_bytes", &s), Some(600.0));
    assert_eq!(value(&samples, "mdp_workers", &[("service", "echo"), ("state", "idle")]), Some(0.0));
    assert_eq!(value(&samples, "mdp_services", &[]), Some(2.0));
    assert_eq!(value(&samples, "mdp_held_bytes", &[]), Some(1234.0));
    assert_eq!(value(&samples, "mdp_peers", &[("role", "worker")]), Some(3.0));
    assert_eq!(value(&samples, "mdp_peers", &[("role", "client")]), Some(4.0));
    assert_eq!(value(&samples, "mdp_access_denied_total", &[]), Some(7.0));

    // The bounds in seconds, cumulative counts, +Inf the total.
    let (buckets, count, sum) = histogram(&samples, "mdp_request_queue_seconds", hostile);
    let bounds: Vec<f64> = LATENCY_BOUNDS.iter().map(|b| b.as_secs_f64()).chain([f64::INFINITY]).collect();
    assert_eq!(buckets.iter().map(|b| b.0).collect::<Vec<_>>(), bounds);
    let at = |le: f64| buckets.iter().find(|b| b.0 == le).unwrap().1;
    assert_eq!((at(0.0005), at(0.0025), at(0.005), at(60.0), at(f64::INFINITY)), (1.0, 1.0, 3.0, 3.0, 4.0));
    assert_eq!(count, 4.0);
    assert!((sum - 70.006).abs() < 1e-9, "{sum}");
    let (_, count, _) = histogram(&samples, "mdp_request_service_seconds", hostile);
    assert_eq!(count, 0.0);

    // Every kind, limit and reason, zeros included.
    let count_of = |name: &str| samples.iter().filter(|s| s.name == name).count();
    assert_eq!(count_of("mdp_misbehaviour_total"), mdp_core::Misbehavior::KINDS.len());
    assert_eq!(count_of("mdp_limit_hits_total"), mdp_core::Limit::ALL.len());
    assert_eq!(count_of("mdp_requests_dropped_total"), mdp_core::DropReason::ALL.len());
}

#[test]
fn the_parser_rejects_what_the_format_forbids() {
    for bad in ["x{a=\"1} 2", "x{a=\"\\q\"} 1", "x 1 2 3", "x{a=1} 1", "9x 1"] {
        assert!(parse_sample(bad).is_err(), "{bad}");
    }
    let s = parse_sample(r#"x_bucket{le="+Inf",s="a\\b\"c\n"} 3 1700000000"#).unwrap();
    assert_eq!(s.labels, [("le".to_owned(), "+Inf".to_owned()), ("s".to_owned(), "a\\b\"c\n".to_owned())]);
    assert_eq!(s.value, 3.0);
}

/// What one scrape costs the broker's loop (the snapshot) and the
/// listener's thread (the text), with as many services as
/// `max_services` allows by default, each with a worker. A measurement,
/// not a check: `cargo test --release -p mdp-zmq-adapter --test metrics
/// -- --ignored --nocapture snapshot_cost` (BENCHMARKS.md, "Metrics").
#[test]
#[ignore]
fn snapshot_cost() {
    use mdp_core::{Broker, BrokerConfig, PeerId};
    for services in [1, 100, 10_000] {
        let now = Instant::now();
        let mut broker = Broker::new(BrokerConfig::default(), now).unwrap();
        for i in 0..services {
            let ready = PeerCommand::Ready { service: Bytes::from(format!("service-{i:05}")) };
            broker.handle_message(now, PeerId::from(Bytes::from(format!("w{i}"))), ready.encode(Dialect::V02).unwrap());
        }
        while broker.poll_transmit().is_some() || broker.poll_event().is_some() {}
        assert_eq!(broker.stats().services, services);
        let rounds = (100_000 / services).clamp(10, 10_000);
        let t = Instant::now();
        let mut snap = MetricsSnapshot::default();
        for _ in 0..rounds {
            snap = MetricsSnapshot::of(&broker);
        }
        let copy = t.elapsed() / rounds as u32;
        let copies: Vec<MetricsSnapshot> = (0..rounds).map(|_| snap.clone()).collect();
        let t = Instant::now();
        let mut bytes = 0;
        for copy in copies {
            bytes = copy.into_text().len();
        }
        let text = t.elapsed() / rounds as u32;
        println!("{services:>6} services: snapshot {copy:>10.1?} in the loop, text {text:>10.1?} ({bytes} bytes) on the listener's thread");
    }
}
