//! [`Str`]: an immutable UTF-8 string backed by [`Bytes`].
//!
//! Every packet carries two inbox names and two nonces. As `String`s they cost
//! four allocations to build and four to decode, per packet. A `Str` clones
//! by bumping a reference count, and a decoded one is a slice of the
//! received buffer: no allocation at all.

use bytes::Bytes;
use std::fmt;

/// An immutable, cheaply cloned UTF-8 string: clones share memory, and a
/// decoded one is a slice of the received packet.
///
/// ```
/// use swp::proto::Str;
/// let s = Str::from("svc.inbox");
/// let t = s.clone(); // no allocation
/// assert_eq!(t, "svc.inbox");
/// assert_eq!(t.as_str().len(), 9);
/// ```
#[derive(Clone, Default, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Str(Bytes);

impl Str {
    /// A `Str` of a static string (no allocation).
    ///
    /// ```
    /// use swp::proto::Str;
    /// const INBOX: Str = Str::from_static("svc.files");
    /// assert_eq!(INBOX, "svc.files");
    /// ```
    pub const fn from_static(s: &'static str) -> Str {
        Str(Bytes::from_static(s.as_bytes()))
    }

    /// `s` must lie inside `buf` (e.g. borrowed from it by a decoder): the
    /// result shares `buf`'s memory.
    pub(crate) fn slice_of(buf: &Bytes, s: &str) -> Str {
        if s.is_empty() {
            Str::default()
        } else {
            Str(buf.slice_ref(s.as_bytes()))
        }
    }

    /// The string.
    ///
    /// ```
    /// use swp::proto::Str;
    /// let s = Str::from("a.b");
    /// let owned: String = s.as_str().to_owned();
    /// assert_eq!(owned, "a.b");
    /// ```
    pub fn as_str(&self) -> &str {
        // Every constructor takes a `str`, so this cannot fail.
        std::str::from_utf8(&self.0).expect("Str always holds UTF-8")
    }

    /// Length in bytes.
    ///
    /// ```
    /// use swp::proto::Str;
    /// assert_eq!(Str::from("héllo").len(), 6); // bytes, not characters
    /// ```
    pub fn len(&self) -> usize {
        self.0.len()
    }

    /// True for "".
    ///
    /// ```
    /// use swp::proto::Str;
    /// assert!(Str::default().is_empty());
    /// assert!(!Str::from("x").is_empty());
    /// ```
    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }
}

impl std::ops::Deref for Str {
    type Target = str;
    fn deref(&self) -> &str {
        self.as_str()
    }
}

impl From<&str> for Str {
    fn from(s: &str) -> Str {
        Str(Bytes::copy_from_slice(s.as_bytes()))
    }
}

impl From<String> for Str {
    fn from(s: String) -> Str {
        Str(Bytes::from(s.into_bytes()))
    }
}

impl From<&String> for Str {
    fn from(s: &String) -> Str {
        Str::from(s.as_str())
    }
}

impl PartialEq<str> for Str {
    fn eq(&self, o: &str) -> bool {
        self.0 == o.as_bytes()
    }
}

impl PartialEq<&str> for Str {
    fn eq(&self, o: &&str) -> bool {
        self.0 == o.as_bytes()
    }
}

impl fmt::Debug for Str {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Debug::fmt(self.as_str(), f)
    }
}

impl fmt::Display for Str {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}
