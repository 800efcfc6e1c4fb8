//! Building batches, sending them through any tower client, and reading the answers.
