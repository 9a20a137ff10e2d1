//! `klosetd run` under a fake systemd (`Type=notify`): a datagram socket
//! as `$NOTIFY_SOCKET` with the watchdog on (`WATCHDOG_USEC`). The daemon
//! must say `READY=1` once it has applied its config, ping `WATCHDOG=1`
//! regularly, frame a SIGHUP reload with `RELOADING=1` (and
//! `MONOTONIC_USEC=`) then `READY=1`, and say `STOPPING=1` on SIGTERM
//! before exiting 0.

use crate::common;

use std::os::unix::net::UnixDatagram;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use common::daemon::{Daemon, LIMIT, lit, wait_for, write_like_ansible};

/// Datagrams received, each split into its `KEY=VALUE` lines, with when.
type Inbox = Arc<Mutex<Vec<(Instant, Vec<String>)>>>;

fn messages(inbox: &Inbox) -> Vec<(Instant, Vec<String>)> {
    inbox.lock().expect("lock").clone()
}

/// Index of the first datagram at or after `from` holding `line`.
fn find(inbox: &Inbox, from: usize, line: &str) -> Option<usize> {
    messages(inbox)
        .iter()
        .enumerate()
        .skip(from)
        .find(|(_, (_, lines))| lines.iter().any(|l| l == line))
        .map(|(i, _)| i)
}

fn wait_message(inbox: &Inbox, from: usize, line: &str) -> usize {
    let mut at = None;
    wait_for(&format!("{line} from the daemon"), LIMIT, || {
        at = find(inbox, from, line);
        at.map(|_| ())
            .ok_or_else(|| format!("{:?}", messages(inbox)))
    });
    at.expect("found")
}

#[test]
fn ready_watchdog_reloading_stopping() {
    let tmp = tempfile::tempdir().expect("tmp");
    let root = tmp.path().canonicalize().expect("canonical");
    let conf = root.join("conf");
    std::fs::create_dir_all(&conf).expect("mkdir");
    std::fs::create_dir_all(root.join("src")).expect("mkdir");
    std::fs::write(root.join("src/a.txt"), b"hello").expect("write");
    std::fs::write(root.join("pass"), b"systemd test passphrase\n").expect("write");
    write_like_ansible(
        &conf,
        "10-base.toml",
        &format!(
            "[daemon]\nlisten = \"127.0.0.1:0\"\nstate_dir = {}\n\n\
             [store.main]\nlocation = {}\npassphrase_file = {}\n\n\
             [source.src]\nlocation = {}\n\n\
             [schedule.nightly]\ntask = \"backup\"\nsource = \"src\"\nstore = \"main\"\ncron = \"0 3 * * *\"\n",
            lit(&root.join("state")),
            lit(&root.join("store")),
            lit(&root.join("pass")),
            lit(&root.join("src")),
        ),
    );

    let socket_path = root.join("notify.sock");
    let socket = UnixDatagram::bind(&socket_path).expect("bind the notify socket");
    socket
        .set_read_timeout(Some(Duration::from_millis(200)))
        .expect("timeout");
    let inbox: Inbox = Arc::default();
    let stop = Arc::new(AtomicBool::new(false));
    let reader = {
        let (inbox, stop) = (inbox.clone(), stop.clone());
        std::thread::spawn(move || {
            let mut buf = vec![0u8; 64 * 1024];
            while !stop.load(Ordering::SeqCst) {
                if let Ok(n) = socket.recv(&mut buf) {
                    let text = String::from_utf8_lossy(&buf[..n]).into_owned();
                    let lines = text.lines().map(str::to_owned).collect();
                    inbox.lock().expect("lock").push((Instant::now(), lines));
                }
            }
        })
    };

    let socket_env = socket_path.to_str().expect("utf-8").to_owned();
    let started = Instant::now();
    let mut d = Daemon::start(
        &conf,
        &root.join("run.log"),
        &[
            ("NOTIFY_SOCKET", socket_env.as_str()),
            ("WATCHDOG_USEC", "2000000"),
        ],
    );

    let ready = wait_message(&inbox, 0, "READY=1");
    let first = &messages(&inbox)[ready].1;
    assert!(
        first.iter().any(|l| l.starts_with("STATUS=")),
        "READY=1 comes with a STATUS: {first:?}"
    );
    // By READY=1 the configuration is applied.
    let status = d.status();
    assert_eq!(
        status["config"]["applied_revision"], status["config"]["attempted_revision"],
        "{status:#}"
    );
    assert!(
        status["config"]["applied_revision"].is_string(),
        "{status:#}"
    );

    // Pings at half the watchdog timeout (1 s): keep coming (their rate is
    // checked at the end).
    let one = wait_message(&inbox, 0, "WATCHDOG=1");
    let two = wait_message(&inbox, one + 1, "WATCHDOG=1");
    wait_message(&inbox, two + 1, "WATCHDOG=1");

    // SIGHUP: RELOADING=1 with MONOTONIC_USEC, then READY=1 again.
    let mark = messages(&inbox).len();
    d.signal("HUP");
    let reloading = wait_message(&inbox, mark, "RELOADING=1");
    let lines = &messages(&inbox)[reloading].1;
    let usec = lines
        .iter()
        .find_map(|l| l.strip_prefix("MONOTONIC_USEC="))
        .unwrap_or_else(|| panic!("RELOADING=1 without MONOTONIC_USEC: {lines:?}"));
    assert!(usec.parse::<u64>().is_ok_and(|u| u > 0), "{usec}");
    wait_message(&inbox, reloading + 1, "READY=1");
    assert!(d.alive());
    assert_eq!(d.get("/healthz").0, 200);

    // SIGTERM: STOPPING=1, exit 0.
    let mark = messages(&inbox).len();
    assert_eq!(d.sigterm_and_wait(Duration::from_secs(40)), 0);
    let stopping = find(&inbox, mark, "STOPPING=1");
    assert!(
        stopping.is_some(),
        "STOPPING=1 before the exit: {:?}",
        &messages(&inbox)[mark..]
    );
    assert!(
        find(&inbox, mark, "READY=1").is_none(),
        "no READY=1 while stopping"
    );
    stop.store(true, Ordering::SeqCst);
    reader.join().expect("reader");
    let all = messages(&inbox);
    let pings = all
        .iter()
        .filter(|(_, lines)| lines.iter().any(|l| l == "WATCHDOG=1"))
        .count();
    let lived = all[all.len() - 1].0 - started;
    assert!(
        pings as f64 <= lived.as_secs_f64() * 2.0 + 3.0,
        "about one ping a second, not a flood: {pings} in {lived:?}"
    );
}
