//! The daemon's end-to-end tests as one test binary (`cargo test -p klosetd --test e2e`).
//!
//! Each file in `tests/` is a module of this binary, so the end-to-end tests
//! link once against the klosetd library and its dependencies instead of once
//! per file (docs/testing.md, "One end-to-end test binary", has the figures).
//! A test's name is its file's name and its own: `cli_roundtrip::round_trip_…`;
//! `cargo test -p klosetd --test e2e cli_roundtrip::` runs one file's tests.
//!
//! The tests share one process and run on parallel threads, so none of them
//! changes process-wide state (environment variables, the current directory,
//! the umask, signal dispositions): what a child process needs is given to
//! that child's `Command`. Each test makes its own temporary directories and
//! servers on free ports. A new file here is added as a module below, and
//! starts with `use crate::common;` when it uses the shared helpers.

mod common;

#[path = "children_env.rs"]
mod children_env;
#[path = "cli_forget.rs"]
mod cli_forget;
#[path = "cli_prune.rs"]
mod cli_prune;
#[path = "cli_roundtrip.rs"]
mod cli_roundtrip;
#[path = "cli_safety.rs"]
mod cli_safety;
#[path = "cli_sync.rs"]
mod cli_sync;
#[path = "crash_harness.rs"]
mod crash_harness;
#[path = "daemon_prune.rs"]
mod daemon_prune;
#[path = "daemon_readiness.rs"]
mod daemon_readiness;
#[path = "daemon_reload.rs"]
mod daemon_reload;
#[path = "daemon_run.rs"]
mod daemon_run;
#[path = "daemon_sync.rs"]
mod daemon_sync;
#[path = "daemon_systemd_notify.rs"]
mod daemon_systemd_notify;
#[path = "damage_commands.rs"]
mod damage_commands;
#[path = "damage_download.rs"]
mod damage_download;
#[path = "disk_full.rs"]
mod disk_full;
#[path = "fault_s3.rs"]
mod fault_s3;
#[path = "fuzz_config.rs"]
mod fuzz_config;
#[path = "harness_selftest.rs"]
mod harness_selftest;
#[path = "hostile_files.rs"]
mod hostile_files;
#[path = "http_big_dirs.rs"]
mod http_big_dirs;
#[path = "http_browse.rs"]
mod http_browse;
#[path = "http_hardening.rs"]
mod http_hardening;
#[path = "http_raw_names.rs"]
mod http_raw_names;
#[path = "http_security.rs"]
mod http_security;
#[path = "integration_azure.rs"]
mod integration_azure;
#[path = "integration_exec.rs"]
mod integration_exec;
#[path = "integration_mysql.rs"]
mod integration_mysql;
#[path = "integration_pg_dumpall.rs"]
mod integration_pg_dumpall;
#[path = "integration_postgresql.rs"]
mod integration_postgresql;
#[path = "integration_postgresql_daemon.rs"]
mod integration_postgresql_daemon;
#[path = "integration_resolution.rs"]
mod integration_resolution;
#[path = "integration_s3.rs"]
mod integration_s3;
#[path = "integration_sftp.rs"]
mod integration_sftp;
#[path = "many_writers.rs"]
mod many_writers;
#[path = "metrics_format.rs"]
mod metrics_format;
#[path = "named_objects.rs"]
mod named_objects;
#[path = "notifications.rs"]
mod notifications;
#[path = "oneshot_order.rs"]
mod oneshot_order;
#[path = "openapi_schemathesis.rs"]
mod openapi_schemathesis;
#[path = "ops_examples.rs"]
mod ops_examples;
#[path = "package.rs"]
mod package;
#[path = "panic_redacted.rs"]
mod panic_redacted;
#[path = "partial_outcome.rs"]
mod partial_outcome;
#[path = "plan.rs"]
mod plan;
#[path = "restore_failed.rs"]
mod restore_failed;
#[path = "secrets_everywhere.rs"]
mod secrets_everywhere;
#[path = "shared_resources.rs"]
mod shared_resources;
#[path = "snapshot_unreadable.rs"]
mod snapshot_unreadable;
#[path = "state_crash.rs"]
mod state_crash;
#[path = "state_faults.rs"]
mod state_faults;
#[path = "store_reasons.rs"]
mod store_reasons;
#[path = "systemd_unit.rs"]
mod systemd_unit;
#[path = "tamper_swap.rs"]
mod tamper_swap;
#[path = "web_viewer.rs"]
mod web_viewer;
