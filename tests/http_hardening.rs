//! Hardening of the HTTP endpoint against clients that misbehave, with raw
//! sockets: a client that sends its request head too slowly is cut off; an
//! oversized head is refused; many idle connections do not stop others
//! from being served; a Unix socket listener is private to owner and group.

use crate::common;

use std::io::{Read, Write};
use std::net::TcpStream;
use std::os::unix::fs::PermissionsExt;
use std::time::{Duration, Instant};

use common::daemon::{Daemon, wait_for, write_like_ansible};

fn config(conf: &std::path::Path, listen: &str) {
    std::fs::create_dir_all(conf).expect("mkdir");
    std::fs::write(conf.join("pass"), "hardening passphrase\n").expect("pass");
    write_like_ansible(
        conf,
        "00.toml",
        &format!(
            "[daemon]\nlisten = \"{listen}\"\nstate_dir = \"../state\"\n\n\
             [store.main]\nlocation = \"../store\"\npassphrase_file = \"pass\"\n"
        ),
    );
}

/// Reads until the server closes the connection or `limit` passes;
/// returns what was read and whether it closed.
fn read_until_closed(stream: &mut TcpStream, limit: Duration) -> (String, bool) {
    stream
        .set_read_timeout(Some(Duration::from_millis(500)))
        .expect("timeout");
    let deadline = Instant::now() + limit;
    let mut got = Vec::new();
    let mut buf = [0u8; 4096];
    while Instant::now() < deadline {
        match stream.read(&mut buf) {
            Ok(0) => return (String::from_utf8_lossy(&got).into_owned(), true),
            Ok(n) => got.extend_from_slice(&buf[..n]),
            Err(e)
                if matches!(
                    e.kind(),
                    std::io::ErrorKind::WouldBlock | std::io::ErrorKind::TimedOut
                ) => {}
            Err(_) => return (String::from_utf8_lossy(&got).into_owned(), true),
        }
    }
    (String::from_utf8_lossy(&got).into_owned(), false)
}

#[test]
fn slow_and_oversized_requests_are_cut_off_and_others_still_served() {
    let tmp = tempfile::tempdir().expect("tmp");
    let conf = tmp.path().join("conf");
    config(&conf, "127.0.0.1:0");
    let mut d = Daemon::start(&conf, &tmp.path().join("log"), &[]);
    let port = d.port().expect("port");
    let addr = format!("127.0.0.1:{port}");

    // Slowloris: an unfinished request head is dropped (the limit is 10 s;
    // the bound here is generous for a loaded machine).
    let mut slow = TcpStream::connect(&addr).expect("connect");
    slow.write_all(b"GET /status HTTP/1.1\r\nHost: x\r\nX-Slow: ")
        .expect("partial head");
    let started = Instant::now();
    let (_, closed) = read_until_closed(&mut slow, Duration::from_secs(45));
    assert!(closed, "a slow request head kept its connection open");
    assert!(
        started.elapsed() >= Duration::from_secs(5),
        "cut off too early: {:?}",
        started.elapsed()
    );

    // An oversized head (64 KiB of headers) is refused, never served.
    let mut big = TcpStream::connect(&addr).expect("connect");
    let mut head = String::from("GET /status HTTP/1.1\r\nHost: x\r\n");
    for i in 0..1024 {
        head.push_str(&format!("X-Filler-{i}: {}\r\n", "a".repeat(60)));
    }
    head.push_str("\r\n");
    let _ = big.write_all(head.as_bytes());
    let (answer, closed) = read_until_closed(&mut big, Duration::from_secs(30));
    assert!(closed, "the oversized request's connection stayed open");
    assert!(
        answer.is_empty()
            || answer.starts_with("HTTP/1.1 431")
            || answer.starts_with("HTTP/1.1 400"),
        "an oversized head must not be served: {answer:?}"
    );

    // 200 idle connections do not keep a normal client out.
    let idle: Vec<TcpStream> = (0..200)
        .map(|_| TcpStream::connect(&addr).expect("idle connect"))
        .collect();
    wait_for(
        "status while 200 connections idle",
        Duration::from_secs(30),
        || {
            let (code, body) = d.get("/healthz");
            (code == 200).then_some(()).ok_or(body)
        },
    );
    drop(idle);
    assert_eq!(d.sigterm_and_wait(Duration::from_secs(40)), 0);
}

#[test]
fn a_unix_socket_listener_is_private() {
    let tmp = tempfile::tempdir().expect("tmp");
    let conf = tmp.path().join("conf");
    let socket = tmp.path().join("http.sock");
    config(&conf, &format!("unix:{}", socket.display()));
    let mut child = std::process::Command::new(env!("CARGO_BIN_EXE_klosetd"))
        .args(["run", "--config"])
        .arg(&conf)
        .stderr(std::fs::File::create(tmp.path().join("log")).expect("log"))
        .spawn()
        .expect("start");
    let deadline = Instant::now() + Duration::from_secs(60);
    while !socket.exists() {
        assert!(Instant::now() < deadline, "no socket");
        std::thread::sleep(Duration::from_millis(50));
    }
    let mode = std::fs::metadata(&socket)
        .expect("socket")
        .permissions()
        .mode()
        & 0o777;
    assert_eq!(mode, 0o660, "socket mode {mode:o}");
    let mut stream = std::os::unix::net::UnixStream::connect(&socket).expect("connect");
    stream
        .write_all(b"GET /healthz HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
        .expect("request");
    let mut answer = String::new();
    stream.read_to_string(&mut answer).expect("answer");
    assert!(answer.starts_with("HTTP/1.1 200"), "{answer}");
    std::process::Command::new("kill")
        .args(["-TERM", &child.id().to_string()])
        .status()
        .expect("kill");
    assert!(child.wait().expect("wait").success());
}
