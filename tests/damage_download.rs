//! A download from the daemon's browser whose damaged chunk is not the
//! first, on local disk and on the real S3 server.
//!
//! The answer's status and `Content-Length` go out before the later chunks
//! are read, so such a download can only be cut: the client must see a
//! transfer shorter than announced (the real `curl` exits 18, "partial
//! file"), every byte it got must be the file's own, and the daemon's log
//! names the damaged pack. A range that starts in the damaged chunk is an
//! error status naming the pack before anything is sent; a range that ends
//! before it is served whole. The daemon stays up.

use crate::common;

use std::path::Path;
use std::process::Command;

use common::cli::TEST_PASSPHRASE;
use common::daemon::{Daemon, LIMIT, lit, raw_http, wait_until, write_like_ansible};
use common::later_damage::store_with_a_damaged_later_chunk;
use common::store::StoreFixture;
use serde_json::Value;

/// The file: about 24 chunks at the store's 64 KiB average.
const FILE_LEN: usize = 1_536_000;

fn cut_download(fx: &StoreFixture, root: &Path, daemon_env: &[(&str, &str)]) {
    let (content, damage) = store_with_a_damaged_later_chunk(fx, root, FILE_LEN);
    let conf = root.join("conf");
    std::fs::create_dir_all(&conf).expect("mkdir");
    std::fs::write(root.join("pass"), TEST_PASSPHRASE).expect("pass");
    write_like_ansible(
        &conf,
        "00.toml",
        &format!(
            "[daemon]\nlisten = \"127.0.0.1:0\"\nstate_dir = {}\n\n\
             [store.main]\nlocation = {}\npassphrase_file = {}\n",
            lit(&root.join("state")),
            serde_json::to_string(&fx.location).expect("toml string"),
            lit(&root.join("pass")),
        ),
    );
    let mut env = vec![("KLOSET_CACHE_DIR", "off")];
    env.extend_from_slice(daemon_env);
    let mut d = Daemon::start(&conf, &root.join("log"), &env);
    wait_until("the configuration applied", LIMIT, || {
        d.try_json("/api/v1/status")
            .is_some_and(|v| v["config"]["applied_revision"].is_string())
    });
    let port = d.port().expect("port");
    let target = "/api/v1/stores/main/snapshots/latest/files/big.bin";

    // The whole file, with the real curl: a 200, then a transfer cut short.
    let out = root.join("got.bin");
    let curl = Command::new("curl")
        .args(["-sS", "-o"])
        .arg(&out)
        .args(["-w", "%{http_code}"])
        .arg(format!("http://127.0.0.1:{port}{target}"))
        .output()
        .expect("run curl");
    let stderr = String::from_utf8_lossy(&curl.stderr);
    assert_eq!(curl.status.code(), Some(18), "curl: partial file: {stderr}");
    assert_eq!(String::from_utf8_lossy(&curl.stdout), "200", "{stderr}");
    let got = std::fs::read(&out).expect("what curl got");
    assert!(
        (got.len() as u64) <= damage.from,
        "{} bytes got, the damaged chunk starts at {}",
        got.len(),
        damage.from
    );
    assert!(got == content[..got.len()], "every byte got is the file's");
    wait_until("the log names the pack", LIMIT, || {
        d.log_text()
            .lines()
            .any(|l| l.contains("download failed") && l.contains(&damage.pack))
    });

    // A range that starts in the damaged chunk: an error before any byte.
    let start = format!("bytes={}-", damage.from + 1);
    let r = raw_http(port, "GET", target, &[("Range", &start)]);
    assert_eq!(r.status, 422, "{}", r.text());
    let v: Value = serde_json::from_slice(&r.body).expect("json error");
    let message = v["error"]["message"].as_str().unwrap_or_default();
    assert!(message.contains(&damage.pack), "{v}");

    // A range that ends before it: served whole.
    let head = format!("bytes=0-{}", damage.from - 1);
    let r = raw_http(port, "GET", target, &[("Range", &head)]);
    assert_eq!(r.status, 206, "{}", r.text());
    assert!(
        r.body == content[..damage.from as usize],
        "the range's bytes"
    );

    assert_eq!(d.status_of("/healthz"), Some(200));
    assert!(d.alive(), "the daemon is up");
    assert!(!d.log_text().contains("panicked"), "{}", d.log_text());
}

#[test]
fn a_damaged_later_chunk_cuts_a_download_on_local_disk() {
    let tmp = tempfile::tempdir().expect("tmp");
    let fx = StoreFixture::local(&tmp.path().join("store"));
    cut_download(&fx, tmp.path(), &[]);
}

#[test]
fn a_damaged_later_chunk_cuts_a_download_on_s3() {
    let Some(fx) = StoreFixture::s3("download") else {
        return;
    };
    let tmp = tempfile::tempdir().expect("tmp");
    let env = fx.server_env();
    let env: Vec<(&str, &str)> = env.iter().map(|(k, v)| (k.as_str(), v.as_str())).collect();
    cut_download(&fx, tmp.path(), &env);
}
