//! The binaries, run as a user runs them.

use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use bytes::Bytes;
use mdp_core::{BrokerCommand, Dialect, PeerCommand};

/// A free loopback port: bind to port 0, read it, release it.
fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port()
}

fn recv_within(socket: &zmq::Socket, limit: Duration) -> Option<Vec<Bytes>> {
    let deadline = Instant::now() + limit;
    while Instant::now() < deadline {
        if socket.poll(zmq::POLLIN, 50).unwrap() > 0 {
            let parts = socket.recv_multipart(0).unwrap();
            return Some(parts.into_iter().map(Bytes::from).collect());
        }
    }
    None
}

#[test]
fn broker_help_documents_every_flag_with_its_default() {
    let out = Command::new(env!("CARGO_BIN_EXE_mdp-broker")).arg("--help").output().unwrap();
    assert!(out.status.success());
    let help = String::from_utf8(out.stdout).unwrap();
    for flag in [
        "-b, --bind",
        "-i, --heartbeat-interval",
        "-t, --heartbeat-timeout",
        "-B, --busy-worker-timeout",
        "--liveness",
        "--max-job-time",
        "--request-timeout",
        "--max-dispatches",
        "--max-in-flight-per-client",
        "--max-services",
        "--max-workers",
        "--max-queue-per-service",
        "--max-queue-total",
        "--max-message-frames",
        "--max-message-bytes",
        "--max-queued-bytes",
        "--max-queued-bytes-per-service",
        "--max-service-name-bytes",
        "--curve-key",
        "--allow-keys",
        "--policy",
        "--metrics",
        "--log-format",
        "-v, --verbose",
        "-D, --debug",
    ] {
        // A flag's entry: its line, and its help text on the lines below
        // when clap puts it there (it does once a flag name is long).
        let lines: Vec<&str> = help.lines().collect();
        let at = lines
            .iter()
            .position(|l| {
                l.trim_start().starts_with('-') && l.split([' ', ',']).any(|w| w == flag.rsplit(' ').next().unwrap())
            })
            .unwrap_or_else(|| panic!("no {flag} in:\n{help}"));
        assert!(lines[at].contains(flag), "{flag}: {}", lines[at]);
        let entry: String = std::iter::once(lines[at])
            .chain(lines[at + 1..].iter().take_while(|l| !l.trim_start().starts_with('-')).copied())
            .collect::<Vec<_>>()
            .join(" ");
        // Switches, and the security flags, which are off unless given.
        let off_by_default = ["-v", "-D", "--curve-key", "--allow-keys", "--policy", "--metrics"];
        if !off_by_default.iter().any(|f| flag.starts_with(f)) {
            assert!(entry.contains("[default: "), "{flag} shows no default: {entry}");
        }
    }
}

#[test]
fn broker_sends_disconnect_to_workers_and_exits_0_on_sigterm() {
    let endpoint = format!("tcp://127.0.0.1:{}", free_port());
    let mut broker = Command::new(env!("CARGO_BIN_EXE_mdp-broker"))
        .args(["-b", &endpoint])
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let ctx = zmq::Context::new();
    let worker = ctx.socket(zmq::DEALER).unwrap();
    worker.set_linger(0).unwrap();
    worker.connect(&endpoint).unwrap();
    let ready = PeerCommand::Ready { service: Bytes::from_static(b"echo") }.encode(Dialect::V02).unwrap();
    // READY has no answer; a request through the broker shows it registered.
    let client = ctx.socket(zmq::DEALER).unwrap();
    client.set_linger(0).unwrap();
    client.connect(&endpoint).unwrap();
    let request = PeerCommand::Request { service: Bytes::from_static(b"echo"), body: vec![Bytes::from_static(b"x")] };
    worker.send_multipart(ready.iter().map(|f| f.as_ref()), 0).unwrap();
    client.send_multipart(request.encode(Dialect::V02).unwrap().iter().map(|f| f.as_ref()), 0).unwrap();
    let got = recv_within(&worker, Duration::from_secs(10)).expect("the worker gets the request");
    assert!(matches!(BrokerCommand::decode(got), Ok((Dialect::V02, BrokerCommand::Request { .. }))));

    let status = Command::new("kill").args(["-TERM", &broker.id().to_string()]).status().unwrap();
    assert!(status.success());
    let got = recv_within(&worker, Duration::from_secs(10)).expect("the worker gets DISCONNECT");
    assert_eq!(BrokerCommand::decode(got), Ok((Dialect::V02, BrokerCommand::Disconnect)));
    let deadline = Instant::now() + Duration::from_secs(10);
    let code = loop {
        if let Some(status) = broker.try_wait().unwrap() {
            break status.code();
        }
        assert!(Instant::now() < deadline, "mdp-broker did not exit on SIGTERM");
        std::thread::sleep(Duration::from_millis(20));
    };
    assert_eq!(code, Some(0));
}

#[test]
fn broker_reports_the_core_s_configuration_error_and_exits_2() {
    for (args, says) in [
        (&["--liveness", "0"][..], "invalid configuration: liveness is zero"),
        (&["-i", "0"][..], "invalid configuration: heartbeat_interval is zero"),
        (&["--max-dispatches", "0"][..], "invalid configuration: max_dispatches is zero"),
    ] {
        let out = Command::new(env!("CARGO_BIN_EXE_mdp-broker")).args(args).output().unwrap();
        assert_eq!(out.status.code(), Some(2), "{args:?}: {out:?}");
        assert!(String::from_utf8_lossy(&out.stderr).contains(says), "{args:?}: {out:?}");
    }
}

#[test]
fn mdp_call_exits_non_zero_on_timeout() {
    let endpoint = format!("tcp://127.0.0.1:{}", free_port());
    let out = Command::new(env!("CARGO_BIN_EXE_mdp"))
        .args(["--broker", &endpoint, "call", "--timeout", "0.3", "echo", "hi"])
        .output()
        .unwrap();
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("no reply"), "{out:?}");
}

/// Kills a child process when dropped, so a failing test leaves none behind.
struct Killed(std::process::Child);

impl Drop for Killed {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

#[test]
fn mdp_worker_call_and_service_against_mdp_broker() {
    let endpoint = format!("tcp://127.0.0.1:{}", free_port());
    let quiet = |c: &mut Command| c.stdout(Stdio::null()).stderr(Stdio::null()).spawn().unwrap();
    let _broker = Killed(quiet(Command::new(env!("CARGO_BIN_EXE_mdp-broker")).args(["-b", &endpoint])));
    let _worker = Killed(quiet(Command::new(env!("CARGO_BIN_EXE_mdp")).args([
        "--broker",
        &endpoint,
        "-d",
        "majortomo",
        "worker",
        "echo",
    ])));
    let mdp =
        |args: &[&str]| Command::new(env!("CARGO_BIN_EXE_mdp")).arg("--broker").arg(&endpoint).args(args).output();

    // The request waits in the broker's queue until the worker registers.
    let out = mdp(&["call", "--timeout", "10", "echo", "hello", "wide world"]).unwrap();
    assert!(out.status.success(), "{out:?}");
    assert_eq!(String::from_utf8_lossy(&out.stdout), "hello\nwide world\n");

    let out = mdp(&["-d", "0.2", "service", "echo"]).unwrap();
    assert!(out.status.success(), "{out:?}");
    assert_eq!(String::from_utf8_lossy(&out.stdout), "200\n");

    let out = mdp(&["service", "nope"]).unwrap();
    assert!(!out.status.success(), "a service with no workers is a failure: {out:?}");
    assert_eq!(String::from_utf8_lossy(&out.stdout), "404\n");

    // Many copies at once over several lanes (majortomo: one per lane).
    let out =
        mdp(&["-d", "majortomo", "call", "-n", "6", "--lanes", "3", "--timeout", "10", "echo", "x", "y"]).unwrap();
    assert!(out.status.success(), "{out:?}");
    assert_eq!(String::from_utf8_lossy(&out.stdout), "x\ny\n\n".repeat(6));

    let out = mdp(&["call", "--lanes", "0", "echo", "x"]).unwrap();
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("lanes is zero"), "{out:?}");
}

/// `mdp-broker` killed (SIGKILL: no DISCONNECT to anyone) and started again
/// on the same port. Heartbeats and the client's timeout are far longer than
/// the test may take, so only the adapter noticing the lost TCP connection
/// (libzmq's socket monitor, then `handle_connection_lost`) lets the client
/// resend its request and the worker register with the new broker in time.
#[test]
fn a_killed_broker_is_noticed_at_once_by_client_and_worker() {
    use mdp_core::{ClientConfig, ClientEvent, WorkerConfig};
    use mdp_zmq_adapter::{Client, Worker};

    let endpoint = format!("tcp://127.0.0.1:{}", free_port());
    let slow = Duration::from_secs(30);
    let start_broker = || {
        let args = ["-b", &endpoint, "-i", "30"];
        Killed(Command::new(env!("CARGO_BIN_EXE_mdp-broker")).args(args).stderr(Stdio::null()).spawn().unwrap())
    };
    let spawn_worker = |service: &'static [u8]| {
        let mut config = WorkerConfig::new(Bytes::from_static(service), Dialect::V02);
        config.heartbeat_interval = slow;
        let worker = Worker::connect(&endpoint, config).unwrap();
        let stop = worker.stop_handle();
        (stop, std::thread::spawn(move || worker.run(|body, _| body).unwrap()))
    };
    let mut broker = start_broker();
    let echo = spawn_worker(b"echo");
    let mut config = ClientConfig::new(Dialect::V02);
    config.timeout = Duration::from_secs(60);
    let mut client = Client::connect(&endpoint, config).unwrap();
    let body = |s: &'static str| vec![Bytes::from_static(s.as_bytes())];
    assert_eq!(client.request("echo", body("before"), Duration::from_secs(10)).unwrap(), body("before"));
    // No worker for "later" yet: the request waits at the broker and dies
    // with it. The echo worker's registration dies too.
    let id = client.send("later", body("lost with the broker")).unwrap();
    std::thread::sleep(Duration::from_millis(200));
    let _ = broker.0.kill();
    let _ = broker.0.wait();
    broker = start_broker();
    let later = spawn_worker(b"later");
    match client.recv(Duration::from_secs(10)).unwrap() {
        ClientEvent::Reply { id: got, body: reply } => assert_eq!((got, reply), (id, body("lost with the broker"))),
        other => panic!("unexpected {other:?}"),
    }
    assert_eq!(client.request("echo", body("after"), Duration::from_secs(10)).unwrap(), body("after"));
    for (stop, handle) in [echo, later] {
        stop.stop();
        handle.join().unwrap();
    }
    drop(broker);
}

/// The README's security example, step by step: keys from `mdp keygen`, a
/// CURVE broker admitting two of them under a policy, an allowed worker
/// and client, and a client the policy refuses.
#[test]
fn the_readme_security_example_works_with_the_binaries() {
    let dir = std::env::temp_dir().join(format!("mdp-secure-{}", std::process::id()));
    let allowed = dir.join("allowed");
    std::fs::create_dir_all(&allowed).unwrap();
    let keygen = |name: &std::path::Path| {
        let out = Command::new(env!("CARGO_BIN_EXE_mdp")).arg("keygen").arg(name).output().unwrap();
        assert!(out.status.success(), "{out:?}");
    };
    for name in [dir.join("broker"), allowed.join("pay-w"), allowed.join("shop"), dir.join("mallory")] {
        keygen(&name);
    }
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        let mode = std::fs::metadata(dir.join("broker.key")).unwrap().permissions().mode();
        assert_eq!(mode & 0o777, 0o600, "a secret key is for its owner only");
    }
    let again = Command::new(env!("CARGO_BIN_EXE_mdp")).arg("keygen").arg(dir.join("broker")).output().unwrap();
    assert!(!again.status.success(), "keygen overwrote a key");
    // The allowed directory holds only public keys in real life; the secret
    // keys beside them here are not *.pub and so are not read.
    let policy = dir.join("policy");
    std::fs::write(&policy, "serve pay-w payments\ncall shop payments shop.*\n").unwrap();

    let endpoint = format!("tcp://127.0.0.1:{}", free_port());
    let (broker_pub, broker_key) = (dir.join("broker.pub"), dir.join("broker.key"));
    let quiet = |c: &mut Command| c.stdout(Stdio::null()).stderr(Stdio::null()).spawn().unwrap();
    let _broker = Killed(quiet(Command::new(env!("CARGO_BIN_EXE_mdp-broker")).args(["-b", &endpoint]).args([
        "--curve-key".as_ref(),
        broker_key.as_os_str(),
        "--allow-keys".as_ref(),
        allowed.as_os_str(),
        "--policy".as_ref(),
        policy.as_os_str(),
    ])));
    let as_peer = |key: &std::path::Path| {
        let mut c = Command::new(env!("CARGO_BIN_EXE_mdp"));
        c.args(["--broker", &endpoint]).arg("--curve-server").arg(&broker_pub).arg("--curve-key").arg(key);
        c
    };
    let _worker = Killed(quiet(as_peer(&allowed.join("pay-w.key")).args(["worker", "echo", "-s", "payments"])));

    let out =
        as_peer(&allowed.join("shop.key")).args(["call", "--timeout", "10", "payments", "10 EUR"]).output().unwrap();
    assert!(out.status.success(), "{out:?}");
    assert_eq!(String::from_utf8_lossy(&out.stdout), "10 EUR\n");

    // mallory's key is not in the allowed directory: a clear error.
    let out = as_peer(&dir.join("mallory.key")).args(["call", "--timeout", "1", "payments", "x"]).output().unwrap();
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("no CURVE handshake"), "{out:?}");

    // Without keys, a plaintext client gets nothing.
    let out = Command::new(env!("CARGO_BIN_EXE_mdp"))
        .args(["--broker", &endpoint, "call", "--timeout", "1", "payments", "x"])
        .output()
        .unwrap();
    assert!(!out.status.success(), "{out:?}");
    let _ = std::fs::remove_dir_all(&dir);
}

#[test]
fn broker_refuses_a_policy_that_does_not_parse_and_exits_2() {
    let dir = std::env::temp_dir().join(format!("mdp-policy-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let key = dir.join("broker");
    assert!(Command::new(env!("CARGO_BIN_EXE_mdp")).arg("keygen").arg(&key).output().unwrap().status.success());
    std::fs::write(dir.join("policy"), "call * echo\nsrve w echo\n").unwrap();
    let out = Command::new(env!("CARGO_BIN_EXE_mdp-broker"))
        .arg("--curve-key")
        .arg(dir.join("broker.key"))
        .arg("--allow-keys")
        .arg(&dir)
        .arg("--policy")
        .arg(dir.join("policy"))
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(2), "{out:?}");
    assert!(String::from_utf8_lossy(&out.stderr).contains("policy line 2"), "{out:?}");
    let _ = std::fs::remove_dir_all(&dir);
}

/// Two `mdp-broker` processes on free ports, `a` and `b`, and one
/// `mdp worker echo` registered with both; all killed when dropped.
struct TwoBrokers {
    a: String,
    b: String,
    broker_a: Killed,
    _broker_b: Killed,
    _worker: Killed,
}

impl TwoBrokers {
    fn start() -> Self {
        let (a, b) = (format!("tcp://127.0.0.1:{}", free_port()), format!("tcp://127.0.0.1:{}", free_port()));
        let quiet = |c: &mut Command| c.stdout(Stdio::null()).stderr(Stdio::null()).spawn().unwrap();
        let broker_a = Killed(quiet(Command::new(env!("CARGO_BIN_EXE_mdp-broker")).args(["-b", &a])));
        let _broker_b = Killed(quiet(Command::new(env!("CARGO_BIN_EXE_mdp-broker")).args(["-b", &b])));
        let args = ["--broker", &a, "--broker", &b, "worker", "echo"];
        let _worker = Killed(quiet(Command::new(env!("CARGO_BIN_EXE_mdp")).args(args)));
        TwoBrokers { a, b, broker_a, _broker_b, _worker }
    }
}

/// `mdp worker` with two `--broker`s registers with both; killing one
/// broker leaves it serving the other.
#[test]
fn mdp_worker_serves_two_brokers_and_outlives_one() {
    let TwoBrokers { a, b, mut broker_a, _broker_b, _worker } = TwoBrokers::start();
    let call = |broker: &str, frame: &str| {
        Command::new(env!("CARGO_BIN_EXE_mdp"))
            .args(["--broker", broker, "call", "--timeout", "10", "echo", frame])
            .output()
    };
    for (broker, frame) in [(&a, "via a"), (&b, "via b")] {
        let out = call(broker, frame).unwrap();
        assert!(out.status.success(), "{out:?}");
        assert_eq!(String::from_utf8_lossy(&out.stdout), format!("{frame}\n"));
    }
    // A client of both: one lane to each, so four copies go through both.
    let call_both = |args: &[&str]| {
        Command::new(env!("CARGO_BIN_EXE_mdp")).args(["--broker", &a, "--broker", &b, "call"]).args(args).output()
    };
    let out = call_both(&["-n", "4", "--timeout", "10", "echo", "x"]).unwrap();
    assert!(out.status.success(), "{out:?}");
    assert_eq!(String::from_utf8_lossy(&out.stdout), "x\n\n".repeat(4));
    broker_a.0.kill().unwrap();
    broker_a.0.wait().unwrap();
    let out = call(&b, "after a died").unwrap();
    assert!(out.status.success(), "{out:?}");
    assert_eq!(String::from_utf8_lossy(&out.stdout), "after a died\n");
    // The client's first request goes to a, which is gone: it times out
    // there (2.5 s, the core's default) and is answered through b.
    let out = call_both(&["--timeout", "10", "echo", "a is gone"]).unwrap();
    assert!(out.status.success(), "{out:?}");
    assert_eq!(String::from_utf8_lossy(&out.stdout), "a is gone\n");
}

/// Failover over real processes: two `mdp-broker`s, one `mdp worker echo`
/// registered with both, and a library client of both
/// (`Client::connect_many`, 2 lanes per broker, 1 s timeout, the
/// default 3 tries) keeping 8 requests outstanding, each with a body of its
/// own. One broker is SIGKILLed mid-run (no DISCONNECT to anyone). With one
/// broker left and 3 tries, every request must be answered, each with its
/// own body, and answers must go on right after the kill and to the end.
/// The figures are printed for BENCHMARKS.md (`--nocapture`).
#[test]
fn a_client_of_two_brokers_loses_nothing_when_one_is_killed() {
    use std::collections::HashMap;

    use mdp_core::{ClientConfig, ClientEvent, RequestId};
    use mdp_zmq_adapter::{Client, ClientError};

    const OUTSTANDING: usize = 8;
    const BEFORE: Duration = Duration::from_millis(1500);
    const AFTER: Duration = Duration::from_millis(3000);

    let TwoBrokers { a, b, mut broker_a, _broker_b, _worker } = TwoBrokers::start();
    // Both brokers have the worker before the clock starts: a request waits
    // at a broker until the worker registers there.
    for endpoint in [&a, &b] {
        let mut one = Client::connect(endpoint, ClientConfig::new(Dialect::V01)).unwrap();
        let ready = vec![Bytes::from_static(b"ready")];
        assert_eq!(one.request("echo", ready.clone(), Duration::from_secs(10)).unwrap(), ready);
    }

    let mut config = ClientConfig::new(Dialect::V01).with_lanes(2);
    // Long enough that a stall of the loaded machine at B does not make B
    // look dead too (the lost connection at the kill has used one of the
    // tries of the requests at A already); short enough that A's probe
    // after its backoff times out before the run ends.
    config.timeout = Duration::from_secs(1);
    let mut client = Client::connect_many(&[&a, &b], config).unwrap();
    // Each request's body and when it was sent, from the start.
    let mut sent: HashMap<RequestId, (Bytes, Duration)> = HashMap::new();
    let (mut requests, mut failed, mut wrong) = (0u64, Vec::new(), 0u64);
    // When each answer came, from the start, and the longest wait for one.
    let (mut answers, mut slowest): (Vec<Duration>, Duration) = (Vec::new(), Duration::ZERO);
    let mut on_event = |event, sent: &mut HashMap<RequestId, (Bytes, Duration)>, at: Duration| match event {
        ClientEvent::Reply { id, body } => {
            let Some((want, sent_at)) = sent.remove(&id) else { return wrong += 1 };
            if body != [want] {
                wrong += 1;
            }
            answers.push(at);
            slowest = slowest.max(at - sent_at);
        }
        ClientEvent::Failed { id, reason } => {
            sent.remove(&id);
            failed.push(reason);
        }
        _ => {}
    };
    let start = Instant::now();
    let mut killed_at = None;
    while start.elapsed() < BEFORE + AFTER {
        while sent.len() < OUTSTANDING {
            let body = Bytes::from(format!("request {requests}"));
            sent.insert(client.send("echo", vec![body.clone()]).unwrap(), (body, start.elapsed()));
            requests += 1;
        }
        if killed_at.is_none() && start.elapsed() >= BEFORE {
            broker_a.0.kill().unwrap();
            broker_a.0.wait().unwrap();
            killed_at = Some(start.elapsed());
        }
        match client.recv(Duration::from_millis(50)) {
            Ok(event) => on_event(event, &mut sent, start.elapsed()),
            Err(ClientError::Timeout(_)) => {}
            Err(e) => panic!("{e}"),
        }
    }
    let end = start.elapsed();
    // What is still outstanding gets its answer or fails; nothing more is
    // sent. Retries through the live broker take a few timeouts at most.
    let drain = Instant::now();
    while !sent.is_empty() && drain.elapsed() < Duration::from_secs(3) {
        match client.recv(Duration::from_millis(50)) {
            Ok(event) => on_event(event, &mut sent, start.elapsed()),
            Err(ClientError::Timeout(_)) => {}
            Err(e) => panic!("{e}"),
        }
    }
    let unanswered = sent.len();

    let kill = killed_at.expect("the broker was killed");
    let count = |from: Duration, to: Duration| answers.iter().filter(|&&t| t >= from && t < to).count();
    let (before, after) = (count(Duration::ZERO, kill), count(kill, end));
    let gap_after = std::iter::once(kill)
        .chain(answers.iter().copied().filter(|&t| t >= kill && t < end))
        .chain(std::iter::once(end))
        .collect::<Vec<_>>()
        .windows(2)
        .map(|w| w[1] - w[0])
        .max()
        .unwrap_or_default();
    let gap = answers.windows(2).map(|w| w[1] - w[0]).max().unwrap_or_default();
    eprintln!(
        "failover: {requests} requests, {} answered ({wrong} wrong), {} failed {failed:?}, {unanswered} unanswered; \
         broker killed at {kill:.2?}; {:.0} answers/s before, {:.0} after; longest gap between answers {gap:.1?} \
         ({gap_after:.1?} from the kill to the end); {} answers in the second after the kill; \
         slowest answer {slowest:.1?} after its request",
        answers.len(),
        failed.len(),
        before as f64 / kill.as_secs_f64(),
        after as f64 / (end - kill).as_secs_f64(),
        count(kill, kill + Duration::from_secs(1)),
    );
    assert_eq!((failed.len(), unanswered, wrong), (0, 0, 0), "every request answered, each with its own body");
    assert_eq!(answers.len() as u64, requests);
    assert!(before > 0, "nothing answered before the kill");
    assert!(count(kill, kill + Duration::from_secs(1)) > 0, "no answer in the second after the kill");
    assert!(count(end - Duration::from_millis(500), end) > 0, "no answer in the last half second");
    // Generous for a loaded 2-core machine; failing over takes the monitor's
    // 50 ms period plus a round trip, and the live broker's lanes never stop.
    assert!(gap_after < Duration::from_secs(1), "answers stopped for {gap_after:?} after the kill");
}
