//! go-sliding-window's dialect, in one room: its wire format ([`codec`]:
//! msgpack maps, byte-exact with the Go library) and the translation
//! between its fields and the engine's ([`link`]: sentinels, acks that mean
//! "last consumed", relative caps, wall-clock times), and how much a Go
//! receiver really holds (`buffer`, learned while sending). Where the engine
//! behaves differently with a Go peer, it asks the session's dialect
//! (`proto::dialect`), never the format itself. Go's application format for
//! files (`BigFile`) lives with the file protocol ([`crate::file`]).
//! docs/PROTOCOL.md §13 and docs/go-sliding-window.md describe the Go side.

pub(crate) mod buffer;
pub mod codec;
pub mod link;
