//! Placeholder: sled DataStore. Replaced by the datastore work.
