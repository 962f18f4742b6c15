//! Input limits, passed to every parse call so a connection can switch from the small
//! pre-authentication limits to the large ones without a new parser.

/// Upper bounds on what one request (or one frame) may make the parser buffer.
///
/// Every bound is checked as soon as the header that announces a size is read, so a client
/// that announces `*1000000000` or `$2000000000` is refused at once instead of after the
/// node has buffered (or waited for) the data.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Limits {
    /// Most bytes one request may take on the wire, headers and CRLFs included.
    pub max_request_bytes: usize,
    /// Most arguments (array elements) one request may have.
    pub max_args: usize,
    /// Most bytes one bulk string may have. Named `max-value-bytes` in the error sent to
    /// clients, so the node sets it to its `--max-value-bytes` (keys are much smaller than
    /// that); the room for keys and framing belongs in `max_request_bytes`.
    pub max_bulk_bytes: usize,
    /// Most bytes one inline command line (or one simple string, error or number line of a
    /// frame) may have, its line ending excluded.
    pub max_inline_bytes: usize,
}

impl Limits {
    /// Limits for a connection that has not authenticated yet: enough for `AUTH`, `HELLO`
    /// and a health check, too small to make the node buffer anything worth an attack.
    /// Redis itself allows 10 arguments of 16 KiB before AUTH.
    pub const BEFORE_AUTH: Limits = Limits {
        max_request_bytes: 16 * 1024,
        max_args: 64,
        max_bulk_bytes: 16 * 1024,
        max_inline_bytes: 16 * 1024,
    };

    /// Redis' own defaults: 512 MiB bulk strings (`proto-max-bulk-len`), 1 GiB requests
    /// (`client-query-buffer-limit`), 64 KiB inline lines (`PROTO_INLINE_MAX_SIZE`), and
    /// a million arguments.
    pub const REDIS_DEFAULT: Limits = Limits {
        max_request_bytes: 1024 * 1024 * 1024,
        max_args: 1024 * 1024,
        max_bulk_bytes: 512 * 1024 * 1024,
        max_inline_bytes: 64 * 1024,
    };
}

impl Default for Limits {
    /// [`Limits::REDIS_DEFAULT`].
    fn default() -> Self {
        Limits::REDIS_DEFAULT
    }
}
