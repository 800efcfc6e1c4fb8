//! Random names: multipart boundaries, batch ids, UUIDs and ids that must not be guessed.
//!
//! Two sources, for two needs. Boundaries and batch ids must be unique and unpredictable to a
//! client, but they are not secrets: [`random_u64`] takes them from the standard library's
//! per-process hash keys, a counter and the clock, at no cost of a system call. An id that
//! grants access (an asynchronous batch's monitor) comes from the operating system's
//! generator ([`secret_hex`]).

use std::hash::{BuildHasher, Hasher};
use std::sync::atomic::{AtomicU64, Ordering};

/// 64 random bits from the standard library's per-process hash keys and a counter; good enough
/// for boundaries and batch ids, which must be unpredictable and unique but not secret.
pub(crate) fn random_u64() -> u64 {
    static COUNTER: AtomicU64 = AtomicU64::new(0);
    let mut h = std::collections::hash_map::RandomState::new().build_hasher();
    h.write_u64(COUNTER.fetch_add(1, Ordering::Relaxed));
    if let Ok(d) = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH) {
        h.write_u128(d.as_nanos());
    }
    h.finish()
}

/// A fresh multipart boundary: `batch_` and 32 hex digits.
pub(crate) fn boundary() -> String {
    format!("batch_{:016x}{:016x}", random_u64(), random_u64())
}

/// A batch's id, as its tracing span and its items' `BatchContext` carry it: 16 hex digits.
pub(crate) fn batch_id() -> String {
    format!("{:016x}", random_u64())
}

/// A random version-4 UUID in its usual text form.
pub(crate) fn uuid() -> String {
    let a = random_u64();
    let b = random_u64();
    let time_hi = ((a >> 16) & 0x0fff) as u16 | 0x4000;
    let clock = ((b >> 48) & 0x3fff) as u16 | 0x8000;
    format!(
        "{:08x}-{:04x}-{:04x}-{:04x}-{:012x}",
        a >> 32,
        a & 0xffff,
        time_hi,
        clock,
        b & 0xffff_ffff_ffff
    )
}

/// 128 random bits as 32 hex digits, from the operating system's generator: an id that cannot
/// be guessed (an asynchronous batch's monitor). `None` when the generator fails.
pub(crate) fn secret_hex() -> Option<String> {
    let mut bytes = [0u8; 16];
    getrandom::fill(&mut bytes).ok()?;
    Some(bytes.iter().map(|b| format!("{b:02x}")).collect())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn boundaries_and_ids_differ_each_time() {
        assert_ne!(boundary(), boundary());
        assert_ne!(batch_id(), batch_id());
        assert_eq!(batch_id().len(), 16);
        let b = boundary();
        assert!(b.len() == 38 && b.starts_with("batch_"));
        assert!(b[6..].bytes().all(|c| c.is_ascii_hexdigit()));
    }

    #[test]
    fn uuids_are_version_4() {
        let u = uuid();
        let groups: Vec<&str> = u.split('-').collect();
        let lens: Vec<usize> = groups.iter().map(|g| g.len()).collect();
        assert_eq!(lens, [8, 4, 4, 4, 12]);
        assert!(groups[2].starts_with('4'));
        assert!(matches!(groups[3].as_bytes()[0], b'8' | b'9' | b'a' | b'b'));
    }
}
