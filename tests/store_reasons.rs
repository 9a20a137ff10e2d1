//! A store's readiness gives the reason its integration's connection test
//! gives, through the real daemon: an SFTP server whose host key does not
//! match `known_hosts` is `HostKeyMismatch` for a store as for a source (an
//! operator must suspect a man in the middle, not the network), and a
//! silent S3 endpoint makes a store `Unreachable` within seconds, as it
//! does a source, not after object_store's minutes of retries.

use crate::common;

use std::time::{Duration, Instant};

use common::daemon::lit;
use common::e2e::{Setup, settled_condition};
use common::sshd::{Sshd, keygen};

#[test]
fn a_changed_host_key_is_host_key_mismatch_for_stores_and_sources_alike() {
    let sshd = Sshd::start();
    let setup = Setup::new();
    let remote = sshd.dir.path().join("remote");
    std::fs::create_dir_all(remote.join("data")).expect("mkdir");
    // known_hosts lists another key for this host and port.
    let other = setup.path("other_host_ed25519");
    keygen(&other, "");
    let public = std::fs::read_to_string(other.with_extension("pub")).expect("pub");
    let mut fields = public.split_whitespace();
    let (kind, key) = (fields.next().expect("type"), fields.next().expect("key"));
    let changed = setup.path("known_hosts.changed");
    std::fs::write(
        &changed,
        format!("[127.0.0.1]:{} {kind} {key}\n", sshd.port),
    )
    .expect("write known_hosts");
    setup.write(
        "10.toml",
        &format!(
            r#"{daemon}
[resource.moved]
class = "server"
subclass = "ssh"
host = "127.0.0.1"
port = {port}
user = "root"
path = {remote}
key_file = {client_key}
known_hosts_file = {changed}

[store.remote]
resource = "moved"
path = "store"
passphrase_file = "pass"

[source.remote]
resource = "moved"
path = "data"
"#,
            daemon = setup.daemon_table(),
            port = sshd.port,
            remote = lit(&remote),
            client_key = lit(&sshd.client_key),
            changed = lit(&changed),
        ),
    );
    let d = setup.start("run", &[]);
    for kind in ["stores", "sources"] {
        let c = settled_condition(&d, kind, "remote", Duration::from_secs(60));
        assert_eq!(c["ready"], false, "{kind}: {c}");
        assert_eq!(c["reason"], "HostKeyMismatch", "{kind}: {c}");
    }
    assert!(
        !remote.join("store").exists(),
        "nothing is written to a server whose key does not match"
    );
}

#[test]
fn a_silent_s3_endpoint_makes_a_store_unreachable_within_seconds() {
    // A server that accepts connections and never answers.
    let listener = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
    let port = listener.local_addr().expect("addr").port();
    let held = std::thread::spawn(move || {
        let streams: Vec<_> = listener.incoming().take(64).flatten().collect();
        drop(streams);
    });
    let setup = Setup::new();
    setup.write("s3_access", "AKIAEXAMPLE\n");
    setup.write("s3_secret", "example-secret-key-0123456789\n");
    setup.write(
        "10.toml",
        &format!(
            r#"{daemon}
[resource.silent]
class = "object-storage"
subclass = "minio"
endpoint = "http://127.0.0.1:{port}"
region = "us-east-1"
allow_http = true
access_key_id_file = "s3_access"
secret_access_key_file = "s3_secret"

[store.silent]
resource = "silent"
bucket = "backups"
passphrase_file = "pass"

[source.silent]
resource = "silent"
bucket = "data"
"#,
            daemon = setup.daemon_table(),
        ),
    );
    let started = Instant::now();
    let d = setup.start("run", &[]);
    for kind in ["stores", "sources"] {
        let c = settled_condition(&d, kind, "silent", Duration::from_secs(300));
        assert_eq!(c["ready"], false, "{kind}: {c}");
        assert_eq!(c["reason"], "Unreachable", "{kind}: {c}");
    }
    // About 10 s each (short timeouts, one retry), tested in parallel; a
    // second client with default retries took about 3 minutes.
    let took = started.elapsed();
    assert!(took < Duration::from_secs(60), "the tests took {took:?}");
    drop(d);
    drop(held);
}
