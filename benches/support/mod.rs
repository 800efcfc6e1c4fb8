//! What the criterion benches share: their settings, and reading back criterion's results for the
//! per-item summaries they print at the end. Each bench uses only some of it.
#![allow(dead_code)]

use std::path::PathBuf;
use std::time::Duration;

use criterion::Criterion;

/// Short runs: enough samples for a stable mean on a shared machine, not minutes per case.
pub fn config() -> Criterion {
    Criterion::default()
        .sample_size(20)
        .warm_up_time(Duration::from_secs(1))
        .measurement_time(Duration::from_secs(3))
        .configure_from_args()
}

/// The time per iteration of the last run of a bench, in nanoseconds, read from criterion's
/// output directory.
pub fn mean_ns(group: &str, function: &str, param: usize) -> Option<f64> {
    let root = std::env::var_os("CRITERION_HOME")
        .map(PathBuf::from)
        .or_else(|| {
            std::env::var_os("CARGO_TARGET_DIR").map(|d| PathBuf::from(d).join("criterion"))
        })
        .unwrap_or_else(|| PathBuf::from("target/criterion"));
    let path = root
        .join(group)
        .join(function)
        .join(param.to_string())
        .join("new/estimates.json");
    let text = std::fs::read_to_string(path).ok()?;
    let v: serde_json::Value = serde_json::from_str(&text).ok()?;
    // Criterion reports the slope when it has one (linear sampling), else the mean.
    v["slope"]["point_estimate"]
        .as_f64()
        .or_else(|| v["mean"]["point_estimate"].as_f64())
}

/// Prints one summary line, time per item and throughput, for a case of `n` items that moved
/// `bytes` bytes per iteration; nothing when the case did not run.
pub fn print_per_item(group: &str, label: &str, n: usize, bytes: impl FnOnce() -> usize) {
    let Some(ns) = mean_ns(group, label, n) else {
        return;
    };
    println!(
        "  {group}/{label}/{n}: {:>9.1} ns/item  {:>8.1} MiB/s",
        ns / n as f64,
        bytes() as f64 / (ns / 1e9) / (1024.0 * 1024.0)
    );
}
