//! Every size, count and time limit of a batch, with its default in one place.

use std::time::Duration;

/// Size, count and time limits for one batch.
///
/// Every limit is finite by default. Each number below says why it was chosen; change any of them
/// with the consuming builders here or the matching methods on [`BatchLayer`](crate::BatchLayer).
///
/// ```
/// use http_batch::Limits;
/// use std::time::Duration;
///
/// let limits = Limits::default()
///     .max_items(100)
///     .max_body_bytes(1024 * 1024)
///     .read_timeout(Duration::from_secs(5));
/// assert_eq!(limits.get_max_items(), 100);
/// ```
#[derive(Clone, Debug, PartialEq, Eq)]
#[must_use]
pub struct Limits {
    pub(crate) max_items: usize,
    pub(crate) max_body_bytes: usize,
    pub(crate) max_part_bytes: usize,
    pub(crate) max_headers: usize,
    pub(crate) max_header_bytes: usize,
    pub(crate) max_item_response_bytes: usize,
    pub(crate) max_response_bytes: usize,
    pub(crate) read_timeout: Duration,
    pub(crate) max_held_bytes: usize,
    pub(crate) stall_timeout: Duration,
    pub(crate) answer_timeout: Duration,
}

impl Default for Limits {
    fn default() -> Self {
        Limits {
            // Google's batch endpoints accept up to 1000 calls in one batch.
            max_items: 1000,
            // 1000 items of a few KiB each, with room to spare; larger uploads belong outside a batch.
            max_body_bytes: 16 * 1024 * 1024,
            // One item's nested request, head and body together.
            max_part_bytes: 2 * 1024 * 1024,
            // Matches common server defaults (hyper allows 100, nginx a few dozen).
            max_headers: 64,
            // The head of one part or nested request: 16 KiB is what most proxies allow.
            max_header_bytes: 16 * 1024,
            // A single item's answer; bigger answers should be fetched directly.
            max_item_response_bytes: 4 * 1024 * 1024,
            // The whole batch answer: bounded so one request cannot make us stream gigabytes.
            max_response_bytes: 64 * 1024 * 1024,
            // A client that has not sent the whole batch within this time is trickling it.
            read_timeout: Duration::from_secs(30),
            // Answers that wait for an earlier item: two answers at the per-item limit, or a
            // full default window (32) of answers of 256 KiB, whichever the batch's shape needs.
            // With or without dependencies, the layer holds no more than this, plus the answers
            // of the items running (each under `max_item_response_bytes`).
            max_held_bytes: 8 * 1024 * 1024,
            // A client that takes nothing of the answer for this long has stopped reading; the
            // same allowance as for sending the batch.
            stall_timeout: Duration::from_secs(30),
            // The whole answer's life, from the start of the batch to its last byte: the default
            // batch timeout (60 s) to run the items, and as long again to deliver the answer.
            // A reader that takes a frame now and then passes every stall check, so only a
            // bound on the whole holds its items and held answers to a finite time; 60 s
            // delivers the default 8 MiB of held answers at 140 KB/s, and a typical answer of
            // a few hundred KiB over any link that is not broken.
            answer_timeout: Duration::from_secs(120),
        }
    }
}

impl Limits {
    /// The most items (parts) one batch may carry. Default 1000.
    pub fn max_items(mut self, n: usize) -> Self {
        self.max_items = n;
        self
    }

    /// The largest batch request body, in bytes. Default 16 MiB.
    pub fn max_body_bytes(mut self, n: usize) -> Self {
        self.max_body_bytes = n;
        self
    }

    /// The largest single part (one nested request), in bytes. Default 2 MiB.
    pub fn max_part_bytes(mut self, n: usize) -> Self {
        self.max_part_bytes = n;
        self
    }

    /// The most header lines in one part or one nested request. Default 64.
    pub fn max_headers(mut self, n: usize) -> Self {
        self.max_headers = n;
        self
    }

    /// The largest head (headers) of one part or nested request, in bytes. Default 16 KiB.
    pub fn max_header_bytes(mut self, n: usize) -> Self {
        self.max_header_bytes = n;
        self
    }

    /// The largest body of one item's response, in bytes. Default 4 MiB.
    ///
    /// A larger answer replaces that item's response with a `502`; the other items are kept.
    pub fn max_item_response_bytes(mut self, n: usize) -> Self {
        self.max_item_response_bytes = n;
        self
    }

    /// The largest whole batch response, in bytes. Default 64 MiB.
    ///
    /// An item starts only while the answer so far (written and held) leaves room under it; the
    /// items after that are not run, and each is answered with a short `507` that says so, so the
    /// response stays well formed. An item that ran but whose answer does not fit is answered
    /// `507` saying that it ran.
    pub fn max_response_bytes(mut self, n: usize) -> Self {
        self.max_response_bytes = n;
        self
    }

    /// How long the client may take to send the whole batch body. Default 30 seconds.
    ///
    /// A slower client gets `408 Request Timeout`.
    pub fn read_timeout(mut self, d: Duration) -> Self {
        self.read_timeout = d;
        self
    }

    /// The most bytes of answers held while they wait for an earlier item. Default 8 MiB.
    ///
    /// Counted the same with or without dependencies and in both execution modes. An item that
    /// is not next in order does not start while held answers fill the budget; where it never
    /// could (the next item waits on it, and nothing held can be sent first), it is answered with
    /// a `507` that says it was not run.
    pub fn max_held_bytes(mut self, n: usize) -> Self {
        self.max_held_bytes = n;
        self
    }

    /// How long the batch answer may wait for the client to take its next part. Default 30
    /// seconds.
    ///
    /// A client that stops reading holds the batch's items and its answers; past this time the
    /// batch ends, its unfinished items are dropped, and the answer is cut off with an error
    /// ([`AnswerCutOff`](crate::AnswerCutOff)), so that the server resets the connection rather
    /// than end it like a whole answer.
    pub fn stall_timeout(mut self, d: Duration) -> Self {
        self.stall_timeout = d;
        self
    }

    /// The longest a batch answer may live, from the start of the batch to the answer's last
    /// byte. Default 120 seconds: the default batch timeout (60 s) to run the items, and as
    /// long again to deliver the answer.
    ///
    /// The [stall timeout](Self::stall_timeout) alone lets a client that takes a few bytes now
    /// and then hold the batch's items and held answers for hours; past this time the batch
    /// ends as for a stall and the answer is cut off with
    /// [`AnswerCutOff`](crate::AnswerCutOff). Keep it above the batch timeout, and raise it
    /// for very large answers to slow clients.
    pub fn answer_timeout(mut self, d: Duration) -> Self {
        self.answer_timeout = d;
        self
    }

    /// The answer timeout.
    pub fn get_answer_timeout(&self) -> Duration {
        self.answer_timeout
    }

    /// The most bytes of held answers.
    pub fn get_max_held_bytes(&self) -> usize {
        self.max_held_bytes
    }

    /// The stall timeout.
    pub fn get_stall_timeout(&self) -> Duration {
        self.stall_timeout
    }

    /// The most items per batch.
    pub fn get_max_items(&self) -> usize {
        self.max_items
    }

    /// The largest request body, in bytes.
    pub fn get_max_body_bytes(&self) -> usize {
        self.max_body_bytes
    }

    /// The largest single part, in bytes.
    pub fn get_max_part_bytes(&self) -> usize {
        self.max_part_bytes
    }

    /// The most header lines per part or nested request.
    pub fn get_max_headers(&self) -> usize {
        self.max_headers
    }

    /// The largest head of a part or nested request, in bytes.
    pub fn get_max_header_bytes(&self) -> usize {
        self.max_header_bytes
    }

    /// The largest item response body, in bytes.
    pub fn get_max_item_response_bytes(&self) -> usize {
        self.max_item_response_bytes
    }

    /// The largest batch response, in bytes.
    pub fn get_max_response_bytes(&self) -> usize {
        self.max_response_bytes
    }

    /// The body read timeout.
    pub fn get_read_timeout(&self) -> Duration {
        self.read_timeout
    }
}

/// The getters' earlier names.
impl Limits {
    /// The answer timeout.
    #[deprecated(note = "renamed `get_answer_timeout`, after its setter")]
    pub fn answer_timeout_duration(&self) -> Duration {
        self.get_answer_timeout()
    }

    /// The most bytes of held answers.
    #[deprecated(note = "renamed `get_max_held_bytes`, after its setter")]
    pub fn held_bytes(&self) -> usize {
        self.get_max_held_bytes()
    }

    /// The stall timeout.
    #[deprecated(note = "renamed `get_stall_timeout`, after its setter")]
    pub fn stall_timeout_duration(&self) -> Duration {
        self.get_stall_timeout()
    }

    /// The most items per batch.
    #[deprecated(note = "renamed `get_max_items`, after its setter")]
    pub fn items(&self) -> usize {
        self.get_max_items()
    }

    /// The largest request body, in bytes.
    #[deprecated(note = "renamed `get_max_body_bytes`, after its setter")]
    pub fn body_bytes(&self) -> usize {
        self.get_max_body_bytes()
    }

    /// The largest single part, in bytes.
    #[deprecated(note = "renamed `get_max_part_bytes`, after its setter")]
    pub fn part_bytes(&self) -> usize {
        self.get_max_part_bytes()
    }

    /// The most header lines per part or nested request.
    #[deprecated(note = "renamed `get_max_headers`, after its setter")]
    pub fn headers(&self) -> usize {
        self.get_max_headers()
    }

    /// The largest head of a part or nested request, in bytes.
    #[deprecated(note = "renamed `get_max_header_bytes`, after its setter")]
    pub fn header_bytes(&self) -> usize {
        self.get_max_header_bytes()
    }

    /// The largest item response body, in bytes.
    #[deprecated(note = "renamed `get_max_item_response_bytes`, after its setter")]
    pub fn item_response_bytes(&self) -> usize {
        self.get_max_item_response_bytes()
    }

    /// The largest batch response, in bytes.
    #[deprecated(note = "renamed `get_max_response_bytes`, after its setter")]
    pub fn response_bytes(&self) -> usize {
        self.get_max_response_bytes()
    }

    /// The body read timeout.
    #[deprecated(note = "renamed `get_read_timeout`, after its setter")]
    pub fn read_timeout_duration(&self) -> Duration {
        self.get_read_timeout()
    }
}
