//! Store readiness: test the connection, detect a Kloset store (open it with
//! the passphrase), initialise an empty location when allowed, refuse
//! foreign data. Problems carry a machine `reason` and a human `message`
//! that never contains a secret.
//!
//! Initialisation happens only when the caller allows it (`allow_init`, e.g.
//! readiness or a backup; a check or restore passes `false`) *and* the store
//! says `init = "auto"`. The local directory of an `fs` store is created only
//! in that case, so `init = "never"` never writes anything.

use kloset::repository::{CreateOptions, Probe, probe};
use kloset::{Error, ErrorKind, Repository, Storage};

use crate::config::desired::StoreDef;
use crate::config::model::InitPolicy;
use crate::integrations::Purpose;

/// Why a store is not ready.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum StoreReason {
    /// The backend could not be reached (network, permissions, I/O).
    Unreachable,
    /// The connection failed for the reason its integration's connection
    /// test gives (`HostKeyMismatch`, `AuthenticationFailed`, `NotFound`, ...).
    Connection(&'static str),
    /// The passphrase does not unlock the store.
    WrongPassphrase,
    /// The location holds something that is not a Kloset store.
    ForeignData,
    /// The location is empty and may not be initialised.
    Empty,
    /// The store header or an index is damaged.
    Corrupt,
    /// The store uses a format this build cannot read.
    Unsupported,
    /// Another process holds a conflicting lock.
    Locked,
    /// The passphrase or a credential could not be read.
    SecretUnreadable,
    /// The configuration is unusable (bad location, unknown option).
    InvalidConfig,
    /// The operation was cancelled.
    Cancelled,
}

impl serde::Serialize for StoreReason {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(self.as_str())
    }
}

impl StoreReason {
    /// The reason as shown in conditions (`"WrongPassphrase"`, ...).
    pub fn as_str(self) -> &'static str {
        match self {
            StoreReason::Unreachable => "Unreachable",
            StoreReason::Connection(reason) => reason,
            StoreReason::WrongPassphrase => "WrongPassphrase",
            StoreReason::ForeignData => "ForeignData",
            StoreReason::Empty => "Empty",
            StoreReason::Corrupt => "Corrupt",
            StoreReason::Unsupported => "Unsupported",
            StoreReason::Locked => "Locked",
            StoreReason::SecretUnreadable => "SecretUnreadable",
            StoreReason::InvalidConfig => "InvalidConfig",
            StoreReason::Cancelled => "Cancelled",
        }
    }
}

/// Why a store could not be opened: a reason to branch on, a message to show.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[error("store {store} is not ready ({}): {message}", .reason.as_str())]
pub struct StoreProblem {
    /// The store's config name.
    pub store: String,
    /// Machine-readable reason.
    pub reason: StoreReason,
    /// Human explanation (no secrets).
    pub message: String,
}

impl StoreProblem {
    fn new(def: &StoreDef, reason: StoreReason, message: impl Into<String>) -> Self {
        StoreProblem {
            store: def.name.clone(),
            reason,
            message: message.into(),
        }
    }

    /// Whether trying again later, without a config change, may help
    /// (backend down, lock held, secret not yet provisioned, store not yet
    /// initialised by someone else). A wrong passphrase, foreign data or
    /// corruption need an operator.
    pub fn is_retryable(&self) -> bool {
        matches!(
            self.reason,
            StoreReason::Unreachable
                | StoreReason::Connection(_)
                | StoreReason::Locked
                | StoreReason::SecretUnreadable
                | StoreReason::Empty
        )
    }

    fn from_kloset(def: &StoreDef, e: &Error) -> Self {
        let reason = match e.kind() {
            ErrorKind::WrongPassphrase => StoreReason::WrongPassphrase,
            ErrorKind::NotAStore => match e {
                Error::NotAStore { found: Some(_), .. } => StoreReason::ForeignData,
                _ => StoreReason::Empty,
            },
            ErrorKind::AlreadyExists => StoreReason::ForeignData,
            ErrorKind::Corrupt => StoreReason::Corrupt,
            ErrorKind::Unsupported => StoreReason::Unsupported,
            ErrorKind::Locked => StoreReason::Locked,
            ErrorKind::InvalidArgument => StoreReason::InvalidConfig,
            ErrorKind::Cancelled => StoreReason::Cancelled,
            ErrorKind::NotFound | ErrorKind::Storage | ErrorKind::Io | ErrorKind::Incomplete => {
                match def.endpoint.failure_reason(e) {
                    Some(reason) if reason != "Unreachable" => StoreReason::Connection(reason),
                    _ => StoreReason::Unreachable,
                }
            }
        };
        StoreProblem::new(def, reason, e.to_string())
    }
}

/// How an opened store came to be ready.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ReadyReason {
    /// An existing store was opened with the passphrase.
    Opened,
    /// The empty location was initialised (`init = "auto"`).
    Initialized,
}

impl ReadyReason {
    /// `"Opened"` or `"Initialized"`.
    pub fn as_str(self) -> &'static str {
        match self {
            ReadyReason::Opened => "Opened",
            ReadyReason::Initialized => "Initialized",
        }
    }
}

/// A ready store and how it became ready.
#[derive(Debug)]
pub struct OpenedStore {
    /// The open store.
    pub repo: Repository,
    /// Opened or freshly initialised.
    pub reason: ReadyReason,
}

/// Opens the store `def` for work, initialising it when empty if
/// `allow_init` and `init = "auto"`.
pub fn open_store(def: &StoreDef, allow_init: bool) -> Result<Repository, StoreProblem> {
    open_store_detailed(def, allow_init, Purpose::Work).map(|o| o.repo)
}

/// Like [`open_store`], also saying whether the store was initialised; a
/// [`Purpose::Test`] gives up on a silent backend within seconds.
pub fn open_store_detailed(
    def: &StoreDef,
    allow_init: bool,
    purpose: Purpose,
) -> Result<OpenedStore, StoreProblem> {
    let may_init = allow_init && def.init == InitPolicy::Auto;
    let location = &def.endpoint.location;
    def.endpoint
        .check_secrets()
        .map_err(|m| StoreProblem::new(def, StoreReason::SecretUnreadable, m))?;
    let passphrase = def.passphrase.read().map_err(|m| {
        StoreProblem::new(
            def,
            StoreReason::SecretUnreadable,
            format!("passphrase: {m}"),
        )
    })?;
    let storage = match def.endpoint.storage(may_init, purpose) {
        Ok(s) => s,
        Err(Error::NotAStore { found: None, .. }) => {
            return Err(empty(def, location, allow_init, "does not exist"));
        }
        Err(e) => return Err(StoreProblem::from_kloset(def, &e)),
    };
    let open = |storage: Storage| {
        Repository::open(storage, &passphrase)
            .map(|repo| OpenedStore {
                repo,
                reason: ReadyReason::Opened,
            })
            .map_err(|e| StoreProblem::from_kloset(def, &e))
    };
    match probe(&storage).map_err(|e| StoreProblem::from_kloset(def, &e))? {
        Probe::Store(_) => open(storage),
        Probe::Empty if may_init => {
            match Repository::create(storage.clone(), &passphrase, CreateOptions::default()) {
                Ok(repo) => Ok(OpenedStore {
                    repo,
                    reason: ReadyReason::Initialized,
                }),
                // Someone else (a readiness test, a task, another host)
                // initialised it first: open theirs, which checks that our
                // passphrase fits.
                Err(e) if e.kind() == ErrorKind::AlreadyExists => open(storage),
                Err(e) => Err(StoreProblem::from_kloset(def, &e)),
            }
        }
        Probe::Empty => Err(empty(def, location, allow_init, "is empty")),
        Probe::Foreign(what) => Err(StoreProblem::new(
            def,
            StoreReason::ForeignData,
            format!(
                "{location} holds data that is not a kloset store ({what}); \
                 a store needs an empty location or an existing kloset store"
            ),
        )),
    }
}

fn empty(def: &StoreDef, location: &str, allow_init: bool, state: &str) -> StoreProblem {
    let why = match (def.init, allow_init) {
        (InitPolicy::Never, _) => "it is not initialised because the store says init = \"never\"",
        (InitPolicy::Auto, false) => {
            "this operation does not initialise stores (a backup or the readiness test does)"
        }
        (InitPolicy::Auto, true) => "initialising it did not happen",
    };
    StoreProblem::new(
        def,
        StoreReason::Empty,
        format!("{location} {state}: there is no kloset store yet; {why}"),
    )
}
