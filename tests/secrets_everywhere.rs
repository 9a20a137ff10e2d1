//! Every secret of every integration, in one daemon run, shows nowhere.
//!
//! One `klosetd` runs with all the credentials it can take at once: an S3
//! resource on a real S3 server (its access key from a file, its secret key
//! from a variable), an Azure resource on Azurite (its account key from a
//! variable), an SSH resource on a real OpenSSH server (a private key file),
//! a PostgreSQL source (its password from a variable), a MariaDB source (its
//! password from a file), store passphrases from a variable and a file, a
//! webhook (URL from a file, token from a variable), an ntfy channel (URL
//! from a variable, token from a file), a healthchecks channel (URL from a
//! file) and the HTTP bearer token (`[daemon] token_file`). One-shot backups
//! from every source and checks of every remote store succeed, and every
//! channel delivers with its secret URL and token: so each secret was read
//! and used. Then no secret value appears in the daemon's log, any status,
//! object, task or metrics endpoint, the web viewer, the snapshot API, the
//! daemon's command line, any byte of the state directory (database and WAL,
//! read while the daemon runs), or the output of `klosetd validate` and
//! `klosetd plan` (plain and `--json`) run on the same directory with the
//! same environment. The names of the variables and files do appear there
//! (the state directory, `validate --json`), so the grep reads the right
//! bytes.

use crate::common;

use std::time::Instant;

use bytes::Bytes;
use common::azurite::{ACCOUNT, ACCOUNT_KEY, Azurite};
use common::daemon::lit;
use common::e2e::{Setup, TASK_LIMIT, files_under, validate_and_plan, wait_succeeded};
use common::mariadb::MariaDb;
use common::postgres::PgServer;
use common::receiver::Receiver;
use common::s3::{ACCESS_KEY, BUCKET, S3Server, SECRET_KEY};
use common::sshd::Sshd;
use object_store::path::Path as ObjPath;
use object_store::{ObjectStoreExt, PutPayload};

/// The passphrase of the local, S3 and SFTP stores (`passphrase_env`).
const STORE_PASS: &str = "store-pass-everywhere-1f3b";
/// The passphrase of the Azure store (`passphrase_file`).
const AZURE_STORE_PASS: &str = "azure-store-pass-everywhere-8d2e";
/// The PostgreSQL role's password (`password_env`).
const PG_PASS: &str = "pg-pass-everywhere-4b9e";
/// The MariaDB user's password (`password_file`).
const MARIA_PASS: &str = "maria-pass-everywhere-6c0d";
/// The key in the webhook's URL path (`url_file`).
const HOOK_KEY: &str = "hook-url-everywhere-2a7f";
/// The webhook's bearer token (`token_env`).
const HOOK_TOKEN: &str = "hook-token-everywhere-9e31";
/// The ntfy topic, a secret on a public server (`url_env`).
const NTFY_TOPIC: &str = "ntfy-topic-everywhere-5c44";
/// The ntfy token (`token_file`).
const NTFY_TOKEN: &str = "ntfy-token-everywhere-0b86";
/// The healthchecks ping key (`url_file`).
const HC_KEY: &str = "hc-uuid-everywhere-71f2";
/// The HTTP bearer token (`[daemon] token_file`).
const HTTP_TOKEN: &str = "http-token-everywhere-3d5a";
/// The database user of both database servers.
const DB_USER: &str = "everywhere";
/// The Azure container.
const CONTAINER: &str = "everywhere";

/// The variables the `*_env` keys name.
const VARIABLES: &[&str] = &[
    "SE_STORE_PASS",
    "SE_S3_SECRET",
    "SE_AZURE_KEY",
    "SE_PG_PASSWORD",
    "SE_HOOK_TOKEN",
    "SE_NTFY_URL",
];

/// Joins a server-starting thread, passing on its panic.
fn joined<T>(h: std::thread::ScopedJoinHandle<'_, T>) -> T {
    h.join().unwrap_or_else(|e| std::panic::resume_unwind(e))
}

#[test]
fn no_secret_of_any_integration_shows_anywhere_in_one_run() {
    let started = Instant::now();
    // The servers start in parallel: each takes seconds (initdb,
    // mariadb-install-db, Node).
    let (s3, az, sshd, pg, maria) = std::thread::scope(|s| {
        let s3 = s.spawn(S3Server::start_or_skip);
        let az = s.spawn(Azurite::start);
        let sshd = s.spawn(Sshd::start);
        let pg = s.spawn(PgServer::start);
        let maria = s.spawn(MariaDb::start);
        (
            joined(s3),
            joined(az),
            joined(sshd),
            joined(pg),
            joined(maria),
        )
    });
    let receiver = Receiver::start();
    eprintln!("servers up after {:?}", started.elapsed());

    // Data in every source.
    pg.admin(
        "postgres",
        &format!("CREATE ROLE {DB_USER} LOGIN PASSWORD '{PG_PASS}'"),
    );
    pg.admin("postgres", &format!("CREATE DATABASE shop OWNER {DB_USER}"));
    pg.sql_as(
        DB_USER,
        PG_PASS,
        "shop",
        "CREATE TABLE items (id int PRIMARY KEY, name text); \
         INSERT INTO items VALUES (1, 'a row in postgres')",
    );
    maria.admin(
        None,
        &format!(
            "CREATE DATABASE shop; CREATE USER '{DB_USER}'@'%' IDENTIFIED BY '{MARIA_PASS}';\n\
             GRANT ALL ON shop.* TO '{DB_USER}'@'%';"
        ),
    );
    maria.admin(
        Some("shop"),
        "CREATE TABLE items (id INT PRIMARY KEY, name VARCHAR(50));\n\
         INSERT INTO items VALUES (1, 'a row in mariadb');",
    );
    az.create_container(CONTAINER);
    if let Some(s3) = &s3 {
        let storage = s3.bucket_storage(BUCKET);
        for (key, text) in [
            ("data/top.txt", "an object"),
            ("data/nested/leaf.txt", "a nested object"),
        ] {
            let store = storage.object_store();
            let path = ObjPath::parse(key).expect("key");
            let payload = PutPayload::from(Bytes::from(text.as_bytes().to_vec()));
            storage
                .run(async move { store.put(&path, payload).await })
                .unwrap_or_else(|e| panic!("put {key}: {e}"));
        }
    }
    let remote_src = sshd.dir.path().join("remote-src");
    std::fs::create_dir_all(remote_src.join("sub")).expect("mkdir remote-src");
    std::fs::write(remote_src.join("remote.txt"), b"over ssh").expect("write");
    std::fs::write(remote_src.join("sub/deep.txt"), b"deeper over ssh").expect("write");

    let setup = Setup::new();
    let files = setup.path("files");
    std::fs::create_dir_all(&files).expect("mkdir files");
    std::fs::write(files.join("local.txt"), b"a local file").expect("write");

    // Secrets read from files; the others are in the daemon's environment.
    setup.write("http_token", &format!("{HTTP_TOKEN}\n"));
    setup.write("azure_store_pass", &format!("{AZURE_STORE_PASS}\n"));
    setup.write("s3_access", &format!("{ACCESS_KEY}\n"));
    setup.write("maria_password", &format!("{MARIA_PASS}\n"));
    setup.write(
        "hook_url",
        &format!("{}\n", receiver.url(&format!("/hook/{HOOK_KEY}"))),
    );
    setup.write("ntfy_token", &format!("{NTFY_TOKEN}\n"));
    setup.write(
        "hc_url",
        &format!("{}\n", receiver.url(&format!("/ping/{HC_KEY}"))),
    );
    let ntfy_url = receiver.url(&format!("/{NTFY_TOPIC}"));
    let path = format!(
        "{}:{}",
        pg.bin_dir().display(),
        std::env::var("PATH").unwrap_or_default()
    );
    let mut envs: Vec<(&str, &str)> = vec![
        ("PATH", path.as_str()),
        ("SE_STORE_PASS", STORE_PASS),
        ("SE_S3_SECRET", SECRET_KEY),
        ("SE_AZURE_KEY", ACCOUNT_KEY),
        ("SE_PG_PASSWORD", PG_PASS),
        ("SE_HOOK_TOKEN", HOOK_TOKEN),
        ("SE_NTFY_URL", ntfy_url.as_str()),
    ];
    if s3.is_none() {
        envs.retain(|(k, _)| *k != "SE_S3_SECRET");
    }

    let mut toml = format!(
        r#"[daemon]
state_dir = {state}
listen = "127.0.0.1:0"
max_concurrent_tasks = 2
token_file = "http_token"
notify = ["hook", "phone", "hc"]

[notify.hook]
kind = "webhook"
url_file = "hook_url"
token_env = "SE_HOOK_TOKEN"
on = ["success"]

[notify.phone]
kind = "ntfy"
url_env = "SE_NTFY_URL"
token_file = "ntfy_token"
on = ["success"]

[notify.hc]
kind = "healthchecks"
url_file = "hc_url"

[resource.azure]
class = "object-storage"
subclass = "azure"
account = "{ACCOUNT}"
endpoint = "{az_endpoint}"
allow_http = true
container = "{CONTAINER}"
account_key_env = "SE_AZURE_KEY"

[resource.ssh]
class = "server"
subclass = "ssh"
host = "127.0.0.1"
port = {ssh_port}
user = "root"
path = {ssh_path}
key_file = {key}
known_hosts_file = {known_hosts}

[resource.pg]
class = "database"
subclass = "postgresql"
host = "127.0.0.1"
port = {pg_port}
user = "{DB_USER}"
database = "shop"
password_env = "SE_PG_PASSWORD"

[resource.maria]
class = "database"
subclass = "mariadb"
host = "127.0.0.1"
port = {maria_port}
user = "{DB_USER}"
password_file = "maria_password"

[store.local]
location = {local_store}
passphrase_env = "SE_STORE_PASS"

[store.azure]
resource = "azure"
prefix = "kloset"
passphrase_file = "azure_store_pass"

[store.sftp]
resource = "ssh"
path = "remote-store"
passphrase_env = "SE_STORE_PASS"

[source.files]
location = {files}

[source.remote]
resource = "ssh"
path = "remote-src"

[source.pg]
resource = "pg"
protocol = "pg_dump"

[source.maria]
resource = "maria"
database = "shop"

"#,
        state = lit(&setup.path("state")),
        az_endpoint = az.endpoint(),
        ssh_port = sshd.port,
        ssh_path = lit(sshd.dir.path()),
        key = lit(&sshd.client_key),
        known_hosts = lit(&sshd.known_hosts),
        pg_port = pg.port(),
        maria_port = maria.port(),
        local_store = lit(&setup.path("store")),
        files = lit(&files),
    );
    if let Some(s3) = &s3 {
        toml.push_str(&format!(
            "[resource.s3]\nclass = \"object-storage\"\nsubclass = \"s3\"\nbucket = \"{BUCKET}\"\n\
             endpoint = \"{}\"\nregion = \"us-east-1\"\nallow_http = true\n\
             access_key_id_file = \"s3_access\"\nsecret_access_key_env = \"SE_S3_SECRET\"\n\n\
             [store.s3]\nresource = \"s3\"\nprefix = \"kloset\"\npassphrase_env = \"SE_STORE_PASS\"\n\n\
             [source.bucket]\nresource = \"s3\"\nprefix = \"data\"\n\n",
            s3.endpoint()
        ));
    }
    // Backups from every source, then a check of every remote store (one
    // after another per store, in this order).
    let (pg_store, mut backups, mut remote_stores) = match &s3 {
        Some(_) => (
            "s3",
            vec![("bucket-to-local", "bucket", "local")],
            vec!["s3"],
        ),
        None => {
            eprintln!("KLOSET_SKIP_S3=1: no S3 resource, store or source in this run");
            ("local", Vec::new(), Vec::new())
        }
    };
    backups.extend([
        ("files-to-sftp", "files", "sftp"),
        ("remote-to-local", "remote", "local"),
        ("pg-to-store", "pg", pg_store),
        ("maria-to-azure", "maria", "azure"),
    ]);
    remote_stores.extend(["azure", "sftp"]);
    let mut tasks: Vec<String> = Vec::new();
    for (name, source, store) in &backups {
        toml.push_str(&format!(
            "[task.{name}]\ntask = \"backup\"\nsource = \"{source}\"\nstore = \"{store}\"\n\n"
        ));
        tasks.push((*name).to_string());
    }
    for store in &remote_stores {
        toml.push_str(&format!(
            "[task.check-{store}]\ntask = \"check\"\nstore = \"{store}\"\nread_data = true\n\n"
        ));
        tasks.push(format!("check-{store}"));
    }
    setup.write("10.toml", &toml);

    let d = setup.start("run", &envs);
    let mut ids = Vec::new();
    for task in &tasks {
        let t = wait_succeeded(&d, task);
        if task.starts_with("check-") {
            assert_eq!(t["kind"], "check", "{t}");
        } else {
            assert!(t["stats"]["files"].as_u64().unwrap_or(0) >= 1, "{t}");
        }
        ids.push(t["id"].to_string());
    }
    eprintln!(
        "{} tasks succeeded after {:?}",
        tasks.len(),
        started.elapsed()
    );

    // Every channel delivered once per run, with its secret URL and token.
    common::daemon::wait_for("every notification delivered", TASK_LIMIT, || {
        let got = receiver.delivered();
        let count = |path: &str, token: Option<&str>| {
            got.iter()
                .filter(|r| r.path() == path)
                .filter(|r| {
                    token.is_none_or(|t| r.header("authorization") == Some(&format!("Bearer {t}")))
                })
                .count()
        };
        let counts = [
            count(&format!("/hook/{HOOK_KEY}"), Some(HOOK_TOKEN)),
            count(&format!("/{NTFY_TOPIC}"), Some(NTFY_TOKEN)),
            count(&format!("/ping/{HC_KEY}"), None),
        ];
        if counts.iter().all(|&c| c >= tasks.len()) {
            Ok(())
        } else {
            Err(format!("webhook, ntfy, healthchecks: {counts:?}"))
        }
    });

    // Every secret value, as the daemon was given it.
    let mut secrets: Vec<(String, String)> = [
        ("store passphrase (env)", STORE_PASS),
        ("Azure store passphrase (file)", AZURE_STORE_PASS),
        ("Azure account key (env)", ACCOUNT_KEY),
        ("PostgreSQL password (env)", PG_PASS),
        ("MariaDB password (file)", MARIA_PASS),
        ("webhook URL key (file)", HOOK_KEY),
        ("webhook token (env)", HOOK_TOKEN),
        ("ntfy topic (env)", NTFY_TOPIC),
        ("ntfy token (file)", NTFY_TOKEN),
        ("healthchecks key (file)", HC_KEY),
        ("HTTP bearer token (file)", HTTP_TOKEN),
    ]
    .into_iter()
    .map(|(what, value)| (what.to_string(), value.to_string()))
    .collect();
    // The Azure key holds `+`, `/` and `=`: also as a URL would carry it.
    let escaped = ACCOUNT_KEY
        .replace('+', "%2B")
        .replace('/', "%2F")
        .replace('=', "%3D");
    secrets.push(("Azure account key (percent-encoded)".into(), escaped));
    if s3.is_some() {
        secrets.push(("S3 access key id (file)".into(), ACCESS_KEY.into()));
        secrets.push(("S3 secret access key (env)".into(), SECRET_KEY.into()));
    }
    // The SSH private key: each line of its base64 body.
    let private = std::fs::read_to_string(&sshd.client_key).expect("the client key");
    for (i, line) in private
        .lines()
        .filter(|l| !l.starts_with("-----") && l.len() >= 16)
        .enumerate()
    {
        secrets.push((format!("SSH private key line {}", i + 1), line.to_string()));
    }
    assert!(
        secrets.iter().filter(|(w, _)| w.starts_with("SSH")).count() >= 3,
        "the key's body is read: {private:?}"
    );
    for (what, value) in &secrets {
        assert!(value.len() >= 8, "{what}: a real secret to look for");
    }

    // Everything the daemon shows, read at one moment while it runs.
    let mut shown: Vec<(String, Vec<u8>)> = Vec::new();
    let mut paths: Vec<String> = [
        "/",
        "/healthz",
        "/readyz",
        "/status",
        "/metrics",
        "/api/v1/status",
        "/api/v1/tasks",
        "/api/v1/tasks?limit=1000",
        "/api/v1/schedules",
        "/api/v1/resources",
        "/api/v1/stores",
        "/api/v1/sources",
        "/api/v1/destinations",
    ]
    .into_iter()
    .map(str::to_string)
    .collect();
    let mut resources = vec!["azure", "ssh", "pg", "maria"];
    let mut stores = vec!["local", "azure", "sftp"];
    let mut sources = vec!["files", "remote", "pg", "maria"];
    if s3.is_some() {
        resources.push("s3");
        stores.push("s3");
        sources.push("bucket");
    }
    paths.extend(resources.iter().map(|r| format!("/api/v1/resources/{r}")));
    paths.extend(stores.iter().map(|s| format!("/api/v1/stores/{s}")));
    paths.extend(sources.iter().map(|s| format!("/api/v1/sources/{s}")));
    paths.extend(ids.iter().map(|id| format!("/api/v1/tasks/{id}")));
    for p in &paths {
        let (status, body) = d.get(p);
        assert!(
            status == 200 || ((p == "/status" || p == "/readyz") && status == 503),
            "GET {p}: {status} {body}"
        );
        shown.push((format!("GET {p}"), body.into_bytes()));
    }
    // The data endpoints want the bearer token: refused without it, served
    // with it.
    let bearer = format!("Bearer {HTTP_TOKEN}");
    for store in &stores {
        let refused = d.request_full("GET", &format!("/api/v1/stores/{store}/snapshots"), &[]);
        assert_eq!(refused.status, 401, "{}", refused.body);
        shown.push((
            format!("GET /api/v1/stores/{store}/snapshots (no token)"),
            refused.body.into_bytes(),
        ));
        for p in [
            format!("/api/v1/stores/{store}/snapshots"),
            format!("/api/v1/stores/{store}/snapshots/latest"),
            format!("/api/v1/stores/{store}/snapshots/latest/tree"),
            format!("/ui/stores/{store}"),
        ] {
            let r = d.request_full("GET", &p, &[("authorization", bearer.as_str())]);
            assert_eq!(r.status, 200, "GET {p}: {}", r.body);
            let headers: String = r
                .headers
                .iter()
                .map(|(k, v)| format!("{k}: {v}\n"))
                .collect();
            shown.push((
                format!("GET {p} (with the token)"),
                format!("{headers}\n{}", r.body).into_bytes(),
            ));
        }
    }
    let cmdline = std::fs::read(format!("/proc/{}/cmdline", d.pid())).expect("cmdline");
    shown.push(("the daemon's command line".into(), cmdline));
    // The state database and its WAL, while the daemon runs.
    let state = files_under(&setup.path("state"));
    assert!(
        state
            .iter()
            .any(|(p, _)| p.to_string_lossy().ends_with("-wal")),
        "the WAL is read too: {:?}",
        state.iter().map(|(p, _)| p).collect::<Vec<_>>()
    );
    assert!(
        VARIABLES
            .iter()
            .any(|v| state.iter().any(|(_, b)| holds(b, v))),
        "the applied configuration (which names the variables, not their values) is read"
    );
    for (path, bytes) in state {
        shown.push((format!("the state file {}", path.display()), bytes));
    }
    // `validate` and `plan` on the same directory, with the same environment.
    shown.extend(validate_and_plan(&setup.conf(), &envs));
    let (_, validated) = shown
        .iter()
        .find(|(what, _)| what == "klosetd validate --json")
        .expect("validate --json ran");
    assert!(
        holds(validated, "SE_PG_PASSWORD") && holds(validated, "maria_password"),
        "validate --json shows credentials by reference (the output is read): {}",
        String::from_utf8_lossy(validated)
    );
    // Last, the log: it now covers every run, delivery and request above.
    shown.push(("the daemon's log".into(), d.log_text().into_bytes()));

    let mut leaks = Vec::new();
    for (what, value) in &secrets {
        for (place, bytes) in &shown {
            if let Some(at) = find(bytes, value) {
                leaks.push(format!(
                    "{what} in {place}: …{}…",
                    excerpt(bytes, at, value.len())
                ));
            }
        }
    }
    assert!(
        leaks.is_empty(),
        "secrets shown ({} places checked):\n{}",
        shown.len(),
        leaks.join("\n")
    );
    eprintln!(
        "{} secrets absent from {} places; {:?} in all",
        secrets.len(),
        shown.len(),
        started.elapsed()
    );
}

/// Whether `bytes` holds `what`.
fn holds(bytes: &[u8], what: &str) -> bool {
    find(bytes, what).is_some()
}

/// Where `needle` first occurs in `bytes`.
fn find(bytes: &[u8], needle: &str) -> Option<usize> {
    bytes
        .windows(needle.len())
        .position(|w| w == needle.as_bytes())
}

/// The text around a secret at `at` (of `len` bytes), the secret masked.
fn excerpt(bytes: &[u8], at: usize, len: usize) -> String {
    let from = at.saturating_sub(60);
    let to = (at + len + 60).min(bytes.len());
    format!(
        "{}<SECRET>{}",
        String::from_utf8_lossy(&bytes[from..at]),
        String::from_utf8_lossy(&bytes[at + len..to])
    )
}
