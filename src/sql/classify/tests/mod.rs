//! Classifier tests.
