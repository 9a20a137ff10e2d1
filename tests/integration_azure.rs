//! The `azure` integration against a real Azure Blob Storage emulator
//! (Azurite, tests/common/azurite.rs). Through the real `kloset` CLI with
//! `--config DIR` and `@NAME`: a store in one container, a source prefix of
//! another backed up and restored into a third container's prefix byte for
//! byte (nested keys, unicode, an empty blob, one over 8 MiB), and
//! `check --read-data` clean. Through the daemon: the source, destination
//! and store are ready with their reasons, a backup into the store on
//! Azure is restored into another container, and a wrong account key is
//! `AuthenticationFailed`, a missing container `NotFound`, a closed port
//! `Unreachable` within a bound; the key shows nowhere.

use crate::common;

use std::collections::BTreeMap;
use std::time::{Duration, Instant};

use bytes::Bytes;
use common::azurite::{ACCOUNT, ACCOUNT_KEY, Azurite};
use common::cli::Kloset;
use common::e2e::{Setup, assert_no_secret, restore_task, settled_condition, wait_succeeded};
use common::rng::SplitMix64;
use object_store::path::Path as ObjPath;
use object_store::{ObjectStoreExt, PutPayload};

const MIB: usize = 1 << 20;

/// Puts `objects` (key → bytes) into `container`.
fn put_objects(az: &Azurite, container: &str, objects: &BTreeMap<String, Vec<u8>>) {
    let storage = az.container_storage(container);
    for (key, bytes) in objects {
        let store = storage.object_store();
        // `parse` keeps the key as written (`from` percent-encodes).
        let path = ObjPath::parse(key).expect("a valid key");
        let payload = PutPayload::from(Bytes::from(bytes.clone()));
        storage
            .run(async move { store.put(&path, payload).await })
            .unwrap_or_else(|e| panic!("put {key}: {e}"));
    }
}

/// Every blob below `prefix/` in `container`, read back through the Blob
/// API: key relative to the prefix → bytes.
fn list_under(az: &Azurite, container: &str, prefix: &str) -> BTreeMap<String, Vec<u8>> {
    let storage = az.container_storage(container);
    let mut out = BTreeMap::new();
    let mut dirs = vec![ObjPath::parse(prefix).expect("prefix")];
    while let Some(dir) = dirs.pop() {
        let store = storage.object_store();
        let listed = storage
            .run(async move { store.list_with_delimiter(Some(&dir)).await })
            .unwrap_or_else(|e| panic!("list {container}/{prefix}: {e}"));
        dirs.extend(listed.common_prefixes);
        for meta in listed.objects {
            let store = storage.object_store();
            let key = meta.location.to_string();
            let bytes = storage
                .run(async move { store.get(&meta.location).await?.bytes().await })
                .unwrap_or_else(|e| panic!("get {key}: {e}"));
            let rel = key
                .strip_prefix(&format!("{prefix}/"))
                .expect("below the prefix");
            out.insert(rel.to_string(), bytes.to_vec());
        }
    }
    out
}

fn summary(objects: &BTreeMap<String, Vec<u8>>) -> Vec<(String, usize, String)> {
    objects
        .iter()
        .map(|(k, v)| (k.clone(), v.len(), blake3::hash(v).to_hex().to_string()))
        .collect()
}

/// An Azure resource on Azurite with the key in `key_file`.
fn resource(name: &str, az: &Azurite, container: &str, prefix: &str, key_file: &str) -> String {
    format!(
        "[resource.{name}]\nclass = \"object-storage\"\nsubclass = \"azure\"\n\
         account = \"{ACCOUNT}\"\nendpoint = \"{endpoint}\"\nallow_http = true\n\
         container = \"{container}\"\nprefix = \"{prefix}\"\naccount_key_file = \"{key_file}\"\n\n",
        endpoint = az.endpoint(),
    )
}

fn assert_no_key(text: &str, key: &str) {
    assert!(!text.contains(key), "the account key shows:\n{text}");
}

#[test]
fn a_container_prefix_round_trips_through_a_store_on_azure_with_the_cli() {
    let az = Azurite::start();
    for c in ["stores", "uploads", "restores"] {
        az.create_container(c);
    }
    let mut rng = SplitMix64::new(13);
    let data: BTreeMap<String, Vec<u8>> = [
        ("top.txt", b"top of the prefix\n".to_vec()),
        ("nested/deeper/leaf.json", br#"{"leaf": true}"#.to_vec()),
        ("nested/x.bin", rng.bytes(300_000)),
        ("big/nine-MiB.bin", rng.bytes(9 * MIB + 17)),
        ("empty", Vec::new()),
        ("spaced name/ünï.txt", "grüße".as_bytes().to_vec()),
    ]
    .into_iter()
    .map(|(k, v)| (k.to_string(), v))
    .collect();
    let mut uploads: BTreeMap<String, Vec<u8>> = data
        .iter()
        .map(|(k, v)| (format!("in/{k}"), v.clone()))
        .collect();
    uploads.insert("outside.txt".into(), b"not under the prefix".to_vec());
    put_objects(&az, "uploads", &uploads);

    let conf = tempfile::tempdir().expect("tmp");
    std::fs::write(conf.path().join("pass"), "azure round trip\n").expect("pass");
    std::fs::write(conf.path().join("az_key"), format!("{ACCOUNT_KEY}\n")).expect("key");
    let toml = format!(
        "{account}[store.blobs]\nresource = \"az\"\ncontainer = \"stores\"\nprefix = \"kloset\"\n\
         passphrase_file = \"pass\"\n\n[source.uploads]\nresource = \"az\"\ncontainer = \"uploads\"\n\
         prefix = \"in\"\n\n[destination.restores]\nresource = \"az\"\ncontainer = \"restores\"\n\
         prefix = \"back\"\n",
        account = resource("az", &az, "stores", "", "az_key"),
    );
    std::fs::write(conf.path().join("10-azure.toml"), &toml).expect("config");
    let conf_s = conf.path().to_str().expect("utf8");
    let k = Kloset::new().without_passphrase();
    let at = |args: &[&str]| {
        let mut all = vec!["--config", conf_s, "at", "@blobs"];
        all.extend_from_slice(args);
        let out = k.must(all);
        assert_no_key(&out.describe(), ACCOUNT_KEY);
        out
    };
    at(&["create", "--kdf-memory-mib", "8"]);
    at(&["backup", "@uploads"]);
    at(&["restore", "-to", "@restores", "latest"]);
    at(&["check", "--read-data=100"]);
    let restored = list_under(&az, "restores", "back");
    assert_eq!(summary(&restored), summary(&data), "restores/back");
    assert!(restored == data, "byte for byte");
    let store = list_under(&az, "stores", "kloset");
    assert!(
        store.keys().any(|k| k.starts_with("snapshots/")),
        "the store lives in the container: {:?}",
        store.keys().collect::<Vec<_>>()
    );
    let leaf = br#"{"leaf": true}"#;
    assert!(
        !store
            .values()
            .any(|v| v.windows(leaf.len()).any(|w| w == leaf)),
        "the store holds encrypted data only"
    );
}

#[test]
fn the_daemon_reports_ready_and_precise_reasons_without_the_key() {
    let az = Azurite::start();
    for c in ["data", "out", "store"] {
        az.create_container(c);
    }
    put_objects(
        &az,
        "data",
        &[("in/f.txt".to_string(), b"x".to_vec())]
            .into_iter()
            .collect(),
    );
    let closed = common::postgres::closed_port();
    let wrong = "d3JvbmcgYWNjb3VudCBrZXkgZm9yIGF6dXJpdGUgdGVzdHMgMDEyMzQ1Njc4OQ==";
    let setup = Setup::new();
    setup.write("az_key", &format!("{ACCOUNT_KEY}\n"));
    setup.write("az_wrong", &format!("{wrong}\n"));
    let gone = resource("gone", &az, "data", "in", "az_key").replace(
        &az.endpoint(),
        &format!("http://127.0.0.1:{closed}/{ACCOUNT}"),
    );
    setup.write(
        "10.toml",
        &format!(
            "{daemon}\n{good}{bad}{nocontainer}{gone}{store}\
             [store.blobs]\nresource = \"store_res\"\npassphrase_file = \"pass\"\n\n\
             [source.good]\nresource = \"good\"\n\n[destination.good]\nresource = \"good\"\n\
             container = \"out\"\nprefix = \"restored\"\n\n\
             [source.wrong_key]\nresource = \"bad\"\n\n[destination.wrong_key]\nresource = \"bad\"\n\n\
             [source.no_container]\nresource = \"nocontainer\"\n\n\
             [source.closed]\nresource = \"gone\"\n\n[destination.closed]\nresource = \"gone\"\n\n\
             [task.backup]\ntask = \"backup\"\nsource = \"good\"\nstore = \"blobs\"\n",
            daemon = setup.daemon_table(),
            good = resource("good", &az, "data", "in", "az_key"),
            bad = resource("bad", &az, "data", "in", "az_wrong"),
            nocontainer = resource("nocontainer", &az, "no-such-container", "", "az_key"),
            store = resource("store_res", &az, "store", "kloset", "az_key"),
        ),
    );
    let started = Instant::now();
    let d = setup.start("run", &[]);
    let limit = Duration::from_secs(60);
    for (kind, name, want) in [
        ("sources", "good", "Listable"),
        ("destinations", "good", "Writable"),
    ] {
        let c = settled_condition(&d, kind, name, limit);
        assert_eq!(
            (&c["ready"], &c["reason"]),
            (&true.into(), &want.into()),
            "{c}"
        );
    }
    let c = settled_condition(&d, "stores", "blobs", limit);
    assert_eq!(c["ready"], true, "{c}\n{}", az.log());
    for (kind, name, want) in [
        ("sources", "wrong_key", "AuthenticationFailed"),
        ("destinations", "wrong_key", "AuthenticationFailed"),
        ("sources", "no_container", "NotFound"),
        ("sources", "closed", "Unreachable"),
        ("destinations", "closed", "Unreachable"),
    ] {
        let c = settled_condition(&d, kind, name, limit);
        assert_eq!(
            (&c["ready"], &c["reason"]),
            (&false.into(), &want.into()),
            "{kind}/{name}: {c}"
        );
    }
    let took = started.elapsed();
    assert!(took < Duration::from_secs(45), "the tests took {took:?}");

    // A daemon backup into the store on Azure, restored into another
    // container's prefix.
    let backup = wait_succeeded(&d, "backup");
    assert_eq!(backup["stats"]["files"], 1, "{backup}");
    let restore = restore_task(&setup, &d, "restore", "blobs", "good", None);
    assert_eq!(
        restore["status"],
        "succeeded",
        "{restore}\n{}",
        d.log_text()
    );
    let restored = list_under(&az, "out", "restored");
    assert_eq!(restored.get("f.txt").map(Vec::as_slice), Some(&b"x"[..]));
    let paths = [
        "/api/v1/sources/good",
        "/api/v1/sources/wrong_key",
        "/api/v1/destinations/wrong_key",
        "/api/v1/resources/bad",
        "/api/v1/resources/good",
        "/api/v1/stores/blobs",
        "/api/v1/status",
    ];
    assert_no_secret(&d, ACCOUNT_KEY, &paths);
    assert_no_secret(&d, wrong, &paths);
}
