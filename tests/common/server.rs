//! Starting a test server: a free loopback port, and waiting until the
//! spawned process says in its log that it listens and the port accepts.

use std::net::{SocketAddr, TcpListener, TcpStream};
use std::path::Path;
use std::process::Child;
use std::time::{Duration, Instant};

/// A loopback port free at the time of the call.
pub fn free_port() -> u16 {
    let listener = TcpListener::bind("127.0.0.1:0").expect("bind a free loopback port");
    listener.local_addr().expect("local address").port()
}

/// Waits until `log` contains `ready` (proof that this very process bound
/// the port) and 127.0.0.1:`port` accepts, polling; kills the child and
/// returns the log when it exits or `limit` passes.
pub fn wait_ready(
    child: &mut Child,
    port: u16,
    log: &Path,
    ready: &str,
    limit: Duration,
) -> Result<(), String> {
    let addr = SocketAddr::from(([127, 0, 0, 1], port));
    let deadline = Instant::now() + limit;
    loop {
        if let Some(status) = child.try_wait().map_err(|e| format!("wait: {e}"))? {
            let log = std::fs::read_to_string(log).unwrap_or_default();
            return Err(format!("exited with {status} on port {port}; log:\n{log}"));
        }
        let said = std::fs::read_to_string(log).is_ok_and(|l| l.contains(ready));
        if said && TcpStream::connect_timeout(&addr, Duration::from_millis(200)).is_ok() {
            return Ok(());
        }
        if Instant::now() > deadline {
            let _ = child.kill();
            let _ = child.wait();
            let log = std::fs::read_to_string(log).unwrap_or_default();
            return Err(format!(
                "not ready on port {port} after {limit:?}; log:\n{log}"
            ));
        }
        std::thread::sleep(Duration::from_millis(20));
    }
}
