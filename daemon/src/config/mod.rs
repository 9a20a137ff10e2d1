//! The declarative configuration: serde model, loading with file:line errors, validation into the desired state.
