//! `mdp top` as a user runs it, against a hand-made metrics page.
// The binary is there only with the `cli` feature.
#![cfg(feature = "cli")]

use std::io::{Read, Write};
use std::net::TcpListener;
use std::process::Command;
use std::thread;

/// Serves each body in turn, one connection each, as HTTP/1.1 with
/// `Content-Length`; returns the address.
fn serve(bodies: Vec<String>) -> (String, thread::JoinHandle<()>) {
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = listener.local_addr().unwrap().to_string();
    let server = thread::spawn(move || {
        for body in bodies {
            let (mut conn, _) = listener.accept().unwrap();
            let mut head = Vec::new();
            let mut byte = [0u8];
            while !head.ends_with(b"\r\n\r\n") {
                conn.read_exact(&mut byte).unwrap();
                head.push(byte[0]);
            }
            let response = format!("HTTP/1.1 200 OK\r\nContent-Length: {}\r\n\r\n{body}", body.len());
            conn.write_all(response.as_bytes()).unwrap();
        }
    });
    (addr, server)
}

fn page(answered: u32) -> String {
    format!(
        "# TYPE mdp_requests counter\n\
         mdp_requests_total{{service=\"echo\",outcome=\"answered\"}} {answered}\n\
         mdp_requests_total{{service=\"odd\\\\\\\"x\\ny\",outcome=\"answered\"}} 0\n\
         # TYPE mdp_workers gauge\n\
         mdp_workers{{service=\"echo\",state=\"idle\"}} 3\n\
         mdp_workers{{service=\"echo\",state=\"busy\"}} 1\n\
         mdp_services 2\n\
         # EOF\n"
    )
}

#[test]
fn top_once_prints_a_view_with_rates_from_two_scrapes() {
    let (addr, server) = serve(vec![page(100), page(200)]);
    let out = Command::new(env!("CARGO_BIN_EXE_mdp"))
        .args(["top", "--once", "--interval", "0.5", "--metrics", &addr])
        .env("COLUMNS", "100")
        .output()
        .unwrap();
    server.join().unwrap();
    assert!(out.status.success(), "{out:?}");
    let screen = String::from_utf8(out.stdout).unwrap();
    let lines: Vec<&str> = screen.lines().collect();
    assert!(lines[0].starts_with(&format!("mdp top  http://{addr}/metrics  by req/s  over 0.")), "{screen}");
    assert!(lines[1].starts_with("services 2   workers 3 idle 1 busy   queued 0   answered "), "{screen}");
    assert!(lines.iter().all(|l| l.chars().count() <= 100), "{screen}");
    let echo = lines.iter().find(|l| l.starts_with("echo ")).expect(&screen);
    // 100 answered over the half second (and what the scrapes took, on a
    // busy machine) between the two scrapes.
    let rate: f64 = echo.split_whitespace().nth(4).unwrap().parse().unwrap();
    assert!(rate > 20.0 && rate <= 200.0, "{echo}");
    // The name's backslash, quote and newline, shown without breaking the
    // line; the busiest row first.
    assert!(lines.iter().position(|l| l.starts_with("odd\\\"x\\ny ")) > lines.iter().position(|l| *l == *echo));
}

#[test]
fn top_reports_an_unreachable_broker_and_exits_non_zero() {
    let addr = TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().to_string();
    let out = Command::new(env!("CARGO_BIN_EXE_mdp")).args(["top", "--once", "--metrics", &addr]).output().unwrap();
    assert_eq!(out.status.code(), Some(1), "{out:?}");
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.starts_with(&format!("mdp: cannot connect to {addr}: ")), "{err}");
    assert!(!err.contains("panicked"), "{err}");
}

#[test]
fn top_without_a_terminal_says_so() {
    let out = Command::new(env!("CARGO_BIN_EXE_mdp")).args(["top", "--metrics", "127.0.0.1:9"]).output().unwrap();
    assert_eq!(out.status.code(), Some(1), "{out:?}");
    assert!(String::from_utf8_lossy(&out.stderr).contains("--once"), "{out:?}");
}

#[test]
fn top_refuses_a_url_it_cannot_fetch() {
    let out = Command::new(env!("CARGO_BIN_EXE_mdp"))
        .args(["top", "--once", "--metrics", "https://127.0.0.1:9464/metrics"])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(1), "{out:?}");
    assert!(String::from_utf8_lossy(&out.stderr).contains("only http://"), "{out:?}");
}

#[test]
fn top_help_tells_the_keys_and_the_columns() {
    let out = Command::new(env!("CARGO_BIN_EXE_mdp")).args(["top", "--help"]).output().unwrap();
    assert!(out.status.success());
    let help = String::from_utf8(out.stdout).unwrap();
    for text in
        ["-m, --metrics <URL>", "-i, --interval <SECONDS>", "[default: 1]", "--sort", "--once", "Ctrl-C", "linear"]
    {
        assert!(help.contains(text), "no {text:?} in:\n{help}");
    }
    let out = Command::new(env!("CARGO_BIN_EXE_mdp")).arg("--help").output().unwrap();
    assert!(String::from_utf8(out.stdout).unwrap().contains("top "), "mdp --help lists top");
}
