//! W3C Trace Context (`traceparent`, `tracestate`): a call continues the caller's trace, or
//! starts one, and every upstream request it causes carries the trace on as a child span, so
//! one trace id follows a request from the caller through the gateway to vCenter's logs.
//!
//! Only the header format is implemented (version `00`); spans are not exported, but each
//! RPC's log line names its trace id.

use std::fmt;

/// A trace and the current span in it.
#[derive(Clone, Copy, PartialEq, Eq)]
pub struct TraceContext {
    pub trace_id: [u8; 16],
    pub span_id: [u8; 8],
    /// W3C trace flags (bit 0: sampled).
    pub flags: u8,
}

impl TraceContext {
    /// A new trace, sampled, with its first span.
    pub fn new_root() -> Self {
        TraceContext {
            trace_id: nonzero_random(),
            span_id: nonzero_random(),
            flags: 1,
        }
    }

    /// A span of this trace whose parent is this context's span.
    pub fn child(&self) -> Self {
        TraceContext {
            span_id: nonzero_random(),
            ..*self
        }
    }

    /// The caller's `traceparent` value continued in a new span of the gateway's, or `None`
    /// when it is malformed (then the gateway starts its own trace).
    pub fn continue_from(traceparent: &str) -> Option<Self> {
        Self::parse(traceparent).map(|parent| parent.child())
    }

    /// A `traceparent` value as it is, or `None` when it is malformed. Lenient where the spec
    /// allows: a later version's extra fields are ignored, and so is letter case.
    pub fn parse(traceparent: &str) -> Option<Self> {
        let mut parts = traceparent.trim().split('-');
        let version = parts.next()?;
        let (trace, parent, flags) = (parts.next()?, parts.next()?, parts.next()?);
        let version = u8::from_str_radix(version, 16)
            .ok()
            .filter(|_| version.len() == 2)?;
        if version == 0xff || (version == 0 && parts.next().is_some()) {
            return None;
        }
        let trace_id: [u8; 16] = hex(trace)?;
        let parent_id: [u8; 8] = hex(parent)?;
        let [flags] = hex::<1>(flags)?;
        if trace_id == [0; 16] || parent_id == [0; 8] {
            return None;
        }
        Some(TraceContext {
            trace_id,
            span_id: parent_id,
            flags,
        })
    }

    /// The trace id as 32 lowercase hex digits.
    pub fn trace_id_hex(&self) -> String {
        to_hex(&self.trace_id)
    }

    /// The `traceparent` header value naming this context's span as the parent.
    pub fn traceparent(&self) -> String {
        // Written byte by byte: `format!` with `{:02x}` per byte cost ~7,000 instructions a
        // call here, twice per RPC (docs/BENCHMARKS.md).
        let mut s = String::with_capacity(55);
        s.push_str("00-");
        push_hex(&mut s, &self.trace_id);
        s.push('-');
        push_hex(&mut s, &self.span_id);
        s.push('-');
        push_hex(&mut s, &[self.flags]);
        s
    }
}

impl fmt::Debug for TraceContext {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.traceparent())
    }
}

fn nonzero_random<const N: usize>() -> [u8; N] {
    loop {
        let mut b = [0u8; N];
        b.iter_mut().for_each(|x| *x = fastrand::u8(..));
        if b != [0; N] {
            return b;
        }
    }
}

fn hex<const N: usize>(s: &str) -> Option<[u8; N]> {
    fn digit(c: u8) -> Option<u8> {
        (c as char).to_digit(16).map(|d| d as u8)
    }
    let s = s.as_bytes();
    if s.len() != 2 * N {
        return None;
    }
    let mut out = [0u8; N];
    for (byte, pair) in out.iter_mut().zip(s.chunks_exact(2)) {
        *byte = digit(pair[0])? << 4 | digit(pair[1])?;
    }
    Some(out)
}

fn to_hex(bytes: &[u8]) -> String {
    let mut s = String::with_capacity(bytes.len() * 2);
    push_hex(&mut s, bytes);
    s
}

/// Appends `bytes` as lowercase hex digits, two a byte.
fn push_hex(s: &mut String, bytes: &[u8]) {
    const DIGITS: &[u8; 16] = b"0123456789abcdef";
    for b in bytes {
        s.push(DIGITS[usize::from(b >> 4)] as char);
        s.push(DIGITS[usize::from(b & 0xf)] as char);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const CALLER: &str = "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01";

    #[test]
    fn a_caller_trace_is_continued_in_a_new_span() {
        let t = TraceContext::continue_from(CALLER).unwrap();
        assert_eq!(t.trace_id_hex(), "4bf92f3577b34da6a3ce929d0e0e4736");
        assert_ne!(to_hex(&t.span_id), "00f067aa0ba902b7");
        assert_eq!(t.flags, 1);
        let header = t.child().traceparent();
        assert!(header.starts_with("00-4bf92f3577b34da6a3ce929d0e0e4736-"));
        assert!(header.ends_with("-01"));
        assert_eq!(
            TraceContext::continue_from(&header).unwrap().trace_id,
            t.trace_id
        );
    }

    #[test]
    fn a_traceparent_is_written_as_it_is_read() {
        let t = TraceContext::parse(CALLER).unwrap();
        assert_eq!(t.traceparent(), CALLER);
        let unsampled = TraceContext { flags: 0xa0, ..t };
        assert!(unsampled.traceparent().ends_with("-a0"));
    }

    #[test]
    fn malformed_or_invalid_parents_start_no_continuation() {
        for bad in [
            "",
            "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7",
            "00-00000000000000000000000000000000-00f067aa0ba902b7-01",
            "00-4bf92f3577b34da6a3ce929d0e0e4736-0000000000000000-01",
            "ff-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01",
            "00-4bf92f3577b34da6a3ce929d0e0e473-00f067aa0ba902b7-01",
            "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01-extra",
            "00-4bf92f3577b34da6a3ce929d0e0e473g-00f067aa0ba902b7-01",
            "0-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01",
            "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-1",
            "00-é4bf92f3577b34da6a3ce929d0e0e47-00f067aa0ba902b7-01",
        ] {
            assert_eq!(TraceContext::continue_from(bad), None, "{bad}");
        }
        // A later version may carry more fields.
        let later = "01-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01-more";
        assert!(TraceContext::continue_from(later).is_some());
    }

    #[test]
    fn a_root_is_valid_and_sampled() {
        let t = TraceContext::new_root();
        let again = TraceContext::continue_from(&t.traceparent()).unwrap();
        assert_eq!(again.trace_id, t.trace_id);
    }
}
