//! Finding the parts of a `multipart/mixed` body.
//!
//! `multer` would be the obvious crate, but it only speaks `multipart/form-data` and rejects the
//! bare-LF framing that real batch clients send (the Google API Python client among them), so the
//! boundary scan is written here on top of `memchr::memmem`.

use std::ops::Range;

use bytes::Bytes;
use memchr::memmem;

use crate::error::BatchError;
use crate::limits::Limits;

/// Splits a multipart body into its parts (each part's headers and content, without the
/// delimiter lines), as zero-copy slices of `body`.
///
/// Tolerates a preamble and an epilogue, bare LF or mixed line endings, whitespace after a
/// boundary, and a missing line ending after the closing delimiter. The body must hold an opening
/// and a closing delimiter.
pub fn split_parts(
    body: &Bytes,
    boundary: &[u8],
    limits: &Limits,
) -> Result<Vec<Bytes>, BatchError> {
    let ranges = part_ranges(body, boundary, limits)?;
    Ok(ranges.into_iter().map(|r| body.slice(r)).collect())
}

/// [`split_parts`] as index ranges into `buf`.
///
/// One recovery: some published examples (Manufacturer Center's among them) declare
/// `boundary=--batch_item` but write their delimiter lines as `--batch_item`, as if the declared
/// boundary already held the delimiter's two dashes. When a boundary starts with `--` and no
/// delimiter line of it appears at all, lines equal to the boundary itself are taken as the
/// delimiters (and `<boundary>--` as the close). A body that holds even one delimiter line of the
/// declared boundary is read by that boundary alone.
pub(crate) fn part_ranges(
    buf: &[u8],
    boundary: &[u8],
    limits: &Limits,
) -> Result<Vec<Range<usize>>, BatchError> {
    let declared = needle(boundary);
    let finder = Delimiters::new(&declared);
    if let Some(at) = finder.opening(buf) {
        return scan(buf, boundary, &finder, at, limits);
    }
    // At most one more linear pass: the stripped boundary is not stripped again.
    if let Some(dashless) = boundary.strip_prefix(b"--").filter(|b| !b.is_empty()) {
        let recovered = needle(dashless);
        let finder = Delimiters::new(&recovered);
        if let Some(at) = finder.opening(buf) {
            return scan(buf, dashless, &finder, at, limits);
        }
    }
    Err(BatchError::Framing {
        reason: format!(
            "no opening boundary line `--{}` found",
            String::from_utf8_lossy(boundary)
        ),
    })
}

/// `"\n--boundary"`: a delimiter always starts a line.
fn needle(boundary: &[u8]) -> Vec<u8> {
    let mut needle = Vec::with_capacity(boundary.len() + 3);
    needle.extend_from_slice(b"\n--");
    needle.extend_from_slice(boundary);
    needle
}

/// Splits `buf` into parts from the opening delimiter line at `at` (the index of its first `-`).
fn scan(
    buf: &[u8],
    boundary: &[u8],
    finder: &Delimiters<'_>,
    mut at: usize,
    limits: &Limits,
) -> Result<Vec<Range<usize>>, BatchError> {
    let delim_len = finder.needle.len() - 1;

    let mut parts = Vec::new();
    let mut count = 0usize;
    loop {
        let after = at + delim_len;
        if buf[after..].starts_with(b"--") {
            break;
        }
        let content_start = match line_end(buf, after) {
            Some(i) => i,
            None => {
                return Err(BatchError::Framing {
                    reason: "the body ends after a boundary line without a closing boundary".into(),
                })
            }
        };
        let next = match finder.find(buf, content_start.saturating_sub(1)) {
            Some(i) if i >= content_start => i,
            // An empty part whose delimiter follows immediately.
            Some(i) => i,
            None => {
                return Err(BatchError::Framing {
                    reason: format!(
                        "part {} is not followed by a boundary; the closing boundary `--{}--` is missing",
                        count + 1,
                        String::from_utf8_lossy(boundary)
                    ),
                })
            }
        };
        // The line ending before a delimiter belongs to the delimiter.
        let mut content_end = next.max(content_start);
        if content_end > content_start && buf[content_end - 1] == b'\n' {
            content_end -= 1;
            if content_end > content_start && buf[content_end - 1] == b'\r' {
                content_end -= 1;
            }
        }
        if content_end - content_start > limits.max_part_bytes {
            return Err(BatchError::PartTooLarge {
                index: count,
                limit: limits.max_part_bytes,
            });
        }
        count += 1;
        if count <= limits.max_items {
            parts.push(content_start..content_end);
        }
        at = next;
    }
    if count > limits.max_items {
        return Err(BatchError::TooManyItems {
            count,
            limit: limits.max_items,
        });
    }
    if parts.is_empty() {
        return Err(BatchError::Empty);
    }
    Ok(parts)
}

/// memchr's vectorised packed-pair search takes needles of up to this many bytes; longer ones
/// get two-way with a prefilter, which costs several times more per call on short parts.
const PACKED_MAX: usize = 32;

/// Finds delimiter lines: a search for the first (up to) [`PACKED_MAX`] bytes of
/// `"\n--boundary"`, and a comparison of the rest at each hit.
struct Delimiters<'n> {
    prefix: memmem::Finder<'n>,
    needle: &'n [u8],
}

impl<'n> Delimiters<'n> {
    fn new(needle: &'n [u8]) -> Self {
        Delimiters {
            prefix: memmem::Finder::new(&needle[..needle.len().min(PACKED_MAX)]),
            needle,
        }
    }

    /// The index of the first delimiter line, at the very start of `buf` or after a preamble.
    fn opening(&self, buf: &[u8]) -> Option<usize> {
        if buf.starts_with(&self.needle[1..]) {
            Some(0)
        } else {
            self.find(buf, 0)
        }
    }

    /// The index of the next delimiter line (pointing at its first `-`) at or after `from`,
    /// skipping false matches where the boundary is only the prefix of a longer token.
    fn find(&self, buf: &[u8], from: usize) -> Option<usize> {
        let prefix_len = self.prefix.needle().len();
        let tail = &self.needle[prefix_len..];
        let mut from = from;
        while let Some(rel) = self.prefix.find(&buf[from..]) {
            let line = from + rel;
            let at = line + 1;
            if buf[line + prefix_len..].starts_with(tail)
                && is_delimiter_end(buf, line + self.needle.len())
            {
                return Some(at);
            }
            from = at;
        }
        None
    }
}

/// A boundary is a delimiter only when followed by `--`, whitespace, a line end or the end of input.
fn is_delimiter_end(buf: &[u8], i: usize) -> bool {
    match buf.get(i) {
        None => true,
        Some(b'-') => buf.get(i + 1) == Some(&b'-'),
        Some(b' ' | b'\t' | b'\r' | b'\n') => true,
        Some(_) => false,
    }
}

/// Skips transport padding and the line ending after a delimiter; `None` at the end of input or
/// when the line holds something else.
fn line_end(buf: &[u8], mut i: usize) -> Option<usize> {
    while matches!(buf.get(i), Some(b' ' | b'\t')) {
        i += 1;
    }
    match buf.get(i) {
        Some(b'\n') => Some(i + 1),
        Some(b'\r') if buf.get(i + 1) == Some(&b'\n') => Some(i + 2),
        // A lone CR as line ending: tolerate it like LF.
        Some(b'\r') => Some(i + 1),
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn split(body: &str, b: &str) -> Result<Vec<String>, BatchError> {
        split_parts(
            &Bytes::copy_from_slice(body.as_bytes()),
            b.as_bytes(),
            &Limits::default(),
        )
        .map(|v| {
            v.into_iter()
                .map(|p| String::from_utf8(p.to_vec()).unwrap())
                .collect()
        })
    }

    #[test]
    fn crlf_body() {
        let parts = split("--b\r\nA\r\n--b\r\nB\r\n--b--\r\n", "b").unwrap();
        assert_eq!(parts, ["A", "B"]);
    }

    #[test]
    fn bare_lf_and_mixed() {
        assert_eq!(split("--b\nA\n--b\r\nB\r\n--b--", "b").unwrap(), ["A", "B"]);
    }

    #[test]
    fn preamble_epilogue_and_padding() {
        let parts = split(
            "preamble\r\n--b  \r\nA\r\n--b\t\r\nB\r\n--b--  \r\nepilogue",
            "b",
        )
        .unwrap();
        assert_eq!(parts, ["A", "B"]);
    }

    #[test]
    fn boundary_prefix_in_content_is_not_a_delimiter() {
        let parts = split("--b\r\nx\r\n--bc\r\ny\r\n--b--", "b").unwrap();
        assert_eq!(parts, ["x\r\n--bc\r\ny"]);
    }

    #[test]
    fn inner_lines_keep_their_endings() {
        let parts = split("--b\r\nA\r\n\r\nbody\r\n\r\n--b--", "b").unwrap();
        assert_eq!(parts, ["A\r\n\r\nbody\r\n"]);
    }

    #[test]
    fn empty_part() {
        assert_eq!(split("--b\r\n--b--", "b").unwrap(), [""]);
        assert_eq!(split("--b\r\n\r\n--b--", "b").unwrap(), [""]);
    }

    #[test]
    fn missing_close_is_framing_error() {
        let err = split("--b\r\nA\r\n", "b").unwrap_err();
        assert!(matches!(err, BatchError::Framing { .. }), "{err}");
        let err = split("--b", "b").unwrap_err();
        assert!(matches!(err, BatchError::Framing { .. }), "{err}");
    }

    #[test]
    fn no_opening_boundary() {
        let err = split("hello", "b").unwrap_err();
        assert!(err.to_string().contains("no opening boundary"), "{err}");
    }

    #[test]
    fn long_boundary_compared_past_the_searched_prefix() {
        let b = "===============7330845974216740156==_and_some_more_to_be_long";
        let near = format!("--{}X", &b[..b.len() - 1]);
        let body = format!("--{b}\r\nA\r\n{near}\r\nB\r\n--{b}\r\nC\r\n--{b}--\r\n");
        let parts = split(&body, b).unwrap();
        assert_eq!(
            parts,
            ["A\r\n".to_owned() + &near + "\r\nB", "C".to_owned()]
        );
    }

    #[test]
    fn empty_batch() {
        assert_eq!(split("--b--\r\n", "b").unwrap_err(), BatchError::Empty);
    }

    #[test]
    fn too_many_parts_counts_all() {
        let mut body = String::new();
        for _ in 0..5 {
            body.push_str("--b\r\nx\r\n");
        }
        body.push_str("--b--");
        let limits = Limits::default().max_items(3);
        let err = split_parts(&Bytes::from(body), b"b", &limits).unwrap_err();
        assert_eq!(err, BatchError::TooManyItems { count: 5, limit: 3 });
    }

    #[test]
    fn part_too_large() {
        let limits = Limits::default().max_part_bytes(3);
        let err =
            split_parts(&Bytes::from_static(b"--b\r\nabcd\r\n--b--"), b"b", &limits).unwrap_err();
        assert_eq!(err, BatchError::PartTooLarge { index: 0, limit: 3 });
    }

    // Manufacturer Center's documented batch: `boundary=--batch_item`, delimiter lines
    // `--batch_item`.
    const MISDECLARED: &str = "--batch_item\r\nContent-Type: application/http\r\nContent-ID: <1>\r\n\r\nGET /a HTTP/1.1\r\n\r\n--batch_item\r\nContent-Type: application/http\r\n\r\nGET /b HTTP/1.1\r\n\r\n--batch_item--\r\n";

    #[test]
    fn boundary_that_holds_the_delimiter_dashes_is_recovered() {
        let parts = split(MISDECLARED, "--batch_item").unwrap();
        assert_eq!(
            parts,
            [
                "Content-Type: application/http\r\nContent-ID: <1>\r\n\r\nGET /a HTTP/1.1\r\n",
                "Content-Type: application/http\r\n\r\nGET /b HTTP/1.1\r\n",
            ]
        );
        // With a preamble and bare LF too.
        let lf = format!("preamble\n{}", MISDECLARED.replace("\r\n", "\n"));
        assert_eq!(split(&lf, "--batch_item").unwrap().len(), 2);
    }

    #[test]
    fn recovery_needs_the_recovered_close() {
        let open = "--batch_item\r\nA\r\n--batch_item\r\nB\r\n";
        let err = split(open, "--batch_item").unwrap_err();
        assert!(err.to_string().contains("`--batch_item--`"), "{err}");
    }

    #[test]
    fn a_real_delimiter_turns_the_recovery_off() {
        // One `----batch_item` line: the declared boundary rules, and `--batch_item` lines are
        // content.
        let body = "----batch_item\r\nA\r\n--batch_item\r\nB\r\n----batch_item--\r\n";
        assert_eq!(
            split(body, "--batch_item").unwrap(),
            ["A\r\n--batch_item\r\nB"]
        );
    }

    #[test]
    fn only_boundaries_with_leading_dashes_are_recovered() {
        // `batch_item` lines are no delimiters of `batch_item`, nor of anything else.
        let err = split("batch_item\r\nA\r\nbatch_item--\r\n", "batch_item").unwrap_err();
        assert!(err.to_string().contains("no opening boundary"), "{err}");
        // The recovery strips one `--`, once: `--x` lines do not serve a `----x` boundary.
        let err = split("--x\r\nA\r\n--x--\r\n", "----x").unwrap_err();
        assert!(
            err.to_string()
                .contains("no opening boundary line `------x`"),
            "{err}"
        );
        // The message names the declared boundary.
        let err = split("--y\r\nA\r\n--y--\r\n", "--batch_item").unwrap_err();
        assert!(err.to_string().contains("`----batch_item`"), "{err}");
    }
}
