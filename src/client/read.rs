//! Reading a batch response: outer status, framing, part headers, nested responses, and matching
//! each part to the item it answers.

use std::collections::HashMap;

use bytes::Bytes;
use http::{HeaderMap, Response, StatusCode};

use super::error::{server_message, ClientError, ItemFailure};
use crate::error::BatchError;
use crate::format::multipart::{boundary_of, parse_response, split_parts, strip_angles};
use crate::limits::Limits;

/// One item's outcome.
pub(crate) type Outcome = Result<Response<Bytes>, ItemFailure>;

/// Limits for reading an answer to `items` items: one part per item asked for (the parts
/// beyond are counted, not kept, and refuse the answer), each as large as the server chooses
/// within the whole answer's limit; only the nested heads stay bounded.
fn reader_limits(items: usize) -> Limits {
    Limits::default()
        .max_items(items)
        .max_part_bytes(usize::MAX)
        .max_headers(512)
        .max_header_bytes(256 * 1024)
}

/// The whole-batch error for a non-2xx outer answer.
pub(crate) fn status_error(status: StatusCode, headers: HeaderMap, body: Bytes) -> ClientError {
    ClientError::Status {
        status,
        message: server_message(&body),
        body,
        headers: Box::new(headers),
    }
}

/// Reads a batch answer to the items `ids` (in request order) and returns one outcome per id,
/// in the same order. The answer's content type picks the reader, whatever format was sent.
pub(crate) fn read_answer(
    headers: &HeaderMap,
    body: Bytes,
    ids: &[String],
) -> Result<Vec<Outcome>, ClientError> {
    let content_type = headers
        .get(http::header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .ok_or_else(|| ClientError::Decode {
            reason: "the batch response has no content type".into(),
        })?;
    let mime =
        crate::format::parse_content_type(content_type).ok_or_else(|| ClientError::Decode {
            reason: format!("the batch response has an invalid content type `{content_type}`"),
        })?;
    if mime.type_() == mime::MULTIPART {
        return read_multipart(&mime, body, ids);
    }
    #[cfg(feature = "json")]
    if mime.essence_str() == "application/json" {
        return read_json(&body, ids);
    }
    Err(ClientError::Decode {
        reason: format!("expected a multipart/mixed or JSON batch answer, got `{content_type}`"),
    })
}

/// Reads a JSON batch answer; responses are matched by id, exactly.
#[cfg(feature = "json")]
fn read_json(body: &[u8], ids: &[String]) -> Result<Vec<Outcome>, ClientError> {
    let responses =
        crate::format::json::decode_responses(body).map_err(|e| ClientError::Decode {
            reason: e.to_string(),
        })?;
    let index: HashMap<&str, usize> = ids
        .iter()
        .enumerate()
        .map(|(i, id)| (id.as_str(), i))
        .collect();
    let mut slots: Vec<Option<Outcome>> = (0..ids.len()).map(|_| None).collect();
    for (id, response) in responses {
        match index.get(id.as_str()) {
            Some(&i) if slots[i].is_none() => slots[i] = Some(Ok(response)),
            _ => tracing::debug!(%id, "JSON batch response matches no item; ignored"),
        }
    }
    Ok(slots
        .into_iter()
        .map(|s| s.unwrap_or(Err(ItemFailure::Missing)))
        .collect())
}

/// Reads a `multipart/mixed` batch answer.
fn read_multipart(
    mime: &mime::Mime,
    body: Bytes,
    ids: &[String],
) -> Result<Vec<Outcome>, ClientError> {
    let boundary = boundary_of(mime).map_err(|e| ClientError::Decode {
        reason: e.to_string(),
    })?;
    let limits = reader_limits(ids.len());
    let raw_parts = match split_parts(&body, boundary.as_bytes(), &limits) {
        Ok(parts) => parts,
        // An answer with no parts leaves every item missing; that is an item problem.
        Err(BatchError::Empty) => Vec::new(),
        // A server that answers more parts than it was asked for is broken or hostile; what it
        // says of the items asked for cannot be trusted either.
        Err(BatchError::TooManyItems { count, limit }) => {
            return Err(ClientError::Decode {
                reason: format!(
                    "the answer holds {count} parts for {limit} items asked for; the parts \
                     beyond were counted, not read"
                ),
            })
        }
        Err(e) => {
            return Err(ClientError::Decode {
                reason: e.to_string(),
            })
        }
    };
    let parts = raw_parts
        .into_iter()
        .map(|raw| read_part(raw, &limits))
        .collect();
    Ok(assign(ids, parts))
}

/// One part: its `Content-ID` (if any) and the nested response.
fn read_part(raw: Bytes, limits: &Limits) -> (Option<String>, Outcome) {
    let (content_id, start) = match part_head(&raw) {
        Ok(head) => head,
        Err(reason) => return (None, Err(ItemFailure::Malformed { reason })),
    };
    let response =
        parse_response(&raw.slice(start..), limits).map_err(|e| ItemFailure::Malformed {
            reason: e.message().to_owned(),
        });
    (content_id, response)
}

/// Reads the MIME headers at the top of a part and returns the `Content-ID` and where the nested
/// message starts. Tolerates bare LF, folded lines, and parts that start straight with a status
/// line.
pub(crate) fn part_head(raw: &[u8]) -> Result<(Option<String>, usize), String> {
    let mut pos = 0;
    // Some servers leave a blank line between the delimiter and the part headers.
    while raw.get(pos).is_some_and(|c| *c == b'\r' || *c == b'\n') {
        pos += 1;
    }
    if raw[pos..].starts_with(b"HTTP/") {
        return Ok((None, pos));
    }
    let mut content_id: Option<String> = None;
    let mut in_content_id = false;
    loop {
        let Some(len) = memchr::memchr(b'\n', &raw[pos..]) else {
            return Err("the part headers are not followed by a blank line".into());
        };
        let mut line = &raw[pos..pos + len];
        pos += len + 1;
        if let [rest @ .., b'\r'] = line {
            line = rest;
        }
        if line.is_empty() {
            let id = content_id.map(|s| s.trim().to_owned());
            return Ok((id.filter(|s| !s.is_empty()), pos));
        }
        if line[0] == b' ' || line[0] == b'\t' {
            if in_content_id {
                if let Some(id) = content_id.as_mut() {
                    id.push_str(&String::from_utf8_lossy(line));
                }
            }
            continue;
        }
        let Some(colon) = memchr::memchr(b':', line) else {
            // A line that is not a header: be lenient and skip it rather than lose the answer.
            in_content_id = false;
            continue;
        };
        in_content_id = String::from_utf8_lossy(&line[..colon])
            .trim()
            .eq_ignore_ascii_case("content-id");
        if in_content_id {
            content_id = Some(String::from_utf8_lossy(&line[colon + 1..]).into_owned());
        }
    }
}

/// Matches parts to items: by `Content-ID` first (`<response-X>` answers `<X>`), then parts
/// without any `Content-ID` by position. Items left without a part are [`ItemFailure::Missing`].
pub(crate) fn assign(ids: &[String], parts: Vec<(Option<String>, Outcome)>) -> Vec<Outcome> {
    let index: HashMap<&str, usize> = ids
        .iter()
        .enumerate()
        .map(|(i, id)| (id.as_str(), i))
        .collect();
    let mut slots: Vec<Option<Outcome>> = (0..ids.len()).map(|_| None).collect();
    let mut unnamed = Vec::new();
    // Where the search for a free slot resumes: slots before it are all taken, so matching
    // stays linear however many parts come without a `Content-ID`.
    let mut free = 0;
    for (position, (content_id, outcome)) in parts.into_iter().enumerate() {
        let Some(cid) = content_id else {
            unnamed.push((position, outcome));
            continue;
        };
        let key = strip_angles(&cid);
        let found = key
            .strip_prefix("response-")
            .and_then(|k| index.get(k))
            .or_else(|| index.get(key));
        match found {
            Some(&i) if slots[i].is_none() => slots[i] = Some(outcome),
            _ => tracing::debug!(content_id = %cid, "batch answer part matches no item; ignored"),
        }
    }
    for (position, outcome) in unnamed {
        let slot = if slots.get(position).is_some_and(Option::is_none) {
            Some(position)
        } else {
            while slots.get(free).is_some_and(Option::is_some) {
                free += 1;
            }
            (free < slots.len()).then_some(free)
        };
        if let Some(i) = slot {
            slots[i] = Some(outcome);
        }
    }
    slots
        .into_iter()
        .map(|s| s.unwrap_or(Err(ItemFailure::Missing)))
        .collect()
}

/// A copy of a response with a `Bytes` body (extensions are not copied).
pub(crate) fn copy_response(res: &Response<Bytes>) -> Response<Bytes> {
    let mut copy = Response::new(res.body().clone());
    *copy.status_mut() = res.status();
    *copy.version_mut() = res.version();
    *copy.headers_mut() = res.headers().clone();
    copy
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ok(status: u16) -> Outcome {
        let mut r = Response::new(Bytes::new());
        *r.status_mut() = StatusCode::from_u16(status).unwrap();
        Ok(r)
    }

    fn statuses(out: &[Outcome]) -> Vec<Option<u16>> {
        out.iter()
            .map(|o| o.as_ref().ok().map(|r| r.status().as_u16()))
            .collect()
    }

    fn ids(list: &[&str]) -> Vec<String> {
        list.iter().map(|s| s.to_string()).collect()
    }

    #[test]
    fn matches_by_content_id_out_of_order() {
        let parts = vec![
            (Some("<response-b>".into()), ok(201)),
            (Some("<response-a>".into()), ok(200)),
        ];
        let out = assign(&ids(&["a", "b"]), parts);
        assert_eq!(statuses(&out), [Some(200), Some(201)]);
    }

    #[test]
    fn falls_back_to_position_without_ids() {
        let out = assign(&ids(&["a", "b"]), vec![(None, ok(200)), (None, ok(404))]);
        assert_eq!(statuses(&out), [Some(200), Some(404)]);
    }

    #[test]
    fn missing_part_is_an_item_failure() {
        let out = assign(
            &ids(&["a", "b"]),
            vec![(Some("<response-b>".into()), ok(200))],
        );
        assert!(matches!(out[0], Err(ItemFailure::Missing)));
        assert_eq!(statuses(&out)[1], Some(200));
    }

    #[test]
    fn unknown_and_repeated_ids_are_ignored() {
        let parts = vec![
            (Some("<response-zzz>".into()), ok(500)),
            (Some("<response-a>".into()), ok(200)),
            (Some("<response-a>".into()), ok(500)),
        ];
        let out = assign(&ids(&["a", "b"]), parts);
        assert_eq!(statuses(&out), [Some(200), None]);
    }

    #[test]
    fn bare_echo_without_response_prefix() {
        let out = assign(&ids(&["a"]), vec![(Some("a".into()), ok(204))]);
        assert_eq!(statuses(&out), [Some(204)]);
    }

    #[test]
    fn part_head_variants() {
        let raw = b"Content-Type: application/http\nContent-ID: <response-x>\n\nHTTP/1.1 200 OK\n";
        let (id, start) = part_head(raw).unwrap();
        assert_eq!(id.as_deref(), Some("<response-x>"));
        assert_eq!(&raw[start..], b"HTTP/1.1 200 OK\n");
        let (id, start) = part_head(b"HTTP/1.1 204 No Content\r\n").unwrap();
        assert_eq!((id, start), (None, 0));
        let (id, _) =
            part_head(b"content-id:\r\n <response-\r\n\tx>\r\n\r\nHTTP/1.1 200 OK\r\n").unwrap();
        assert_eq!(id.as_deref(), Some("<response-\tx>"));
        let (id, _) = part_head(b"Content-ID:\r\n\r\nHTTP/1.1 200 OK\r\n").unwrap();
        assert_eq!(id, None);
        assert!(part_head(b"Content-Type: application/http").is_err());
    }
}
