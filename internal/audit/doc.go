// Package audit writes and verifies the pool's audit log: one JSON line per request, saying who asked for what, on
// which key, and how it ended, kept apart from the operational log and chained by hashes so that an edited or removed
// line is detected.
//
// A Log appends Entries to a file. Each line is the entry's JSON with two fields in front:
//
//	{"seq":2,"prev":"<64 hex digits>","time":"2026-01-02T15:04:05.123456789Z","requestId":"...",...}
//
// seq is the line's number in the chain, from 1, and prev is the hex SHA-256 of the previous line exactly as written
// (its bytes without the newline); the first line of a chain has 64 zeros. A line needs no hash of its own: the
// next line's prev commits to it, and through it to every line before. Verify checks a file, and Summary.Follows
// checks that one file continues another, as rotated files do (see WithMaxSize).
//
// An Entry has only fixed, typed fields: no free-form message, no request or response body, no header. Key
// material and tokens have nowhere to go, provided the caller does not put them in a name.
//
// # Concurrency
//
// A Log is safe for concurrent use. Record holds the Log's mutex while it encodes the line and writes it with one
// Write call, so lines never interleave and seq follows the order of the writes. The line goes to the operating
// system before Record returns: a crash of the process loses nothing that Record accepted. fsync is the policy of
// WithSync: by default a goroutine syncs the file at most every 100 ms when something was written, and Close syncs
// before it returns, so a power loss or kernel crash can lose the last 100 ms of lines (and a verifier will then see
// a chain that simply ends earlier). WithSync(0) syncs in every Record, which costs a disk flush per request.
//
// Only one Log may write a file at a time; two processes appending to one file break its chain.
//
// # Security
//
// The chain proves that the lines of a file are the ones written, in order, with none removed or changed between
// its first and its last line: an edited line makes the next line's prev wrong, a removed line leaves a gap in seq
// and a wrong prev, a cut-short line does not parse.
//
// It does not prove more than that:
//
//   - An edit of the last line, or the removal of lines at the end, leaves a valid chain: nothing comes after them to
//     carry their hash. Summary.LastHash is the anchor that detects it: record it somewhere the attacker cannot write
//     (a ticket, another machine, a signed message), and compare a later verification with it.
//   - Anyone who can write the file can rewrite the whole chain from the first line they change, hashes and all; no
//     key is involved. Only an anchor kept elsewhere detects that, too.
//   - The removal of whole lines at the start of a file shows only as a file that starts at a later seq, which is
//     also what a rotated file looks like; verify the rotated files together, in order.
//   - Times are the daemon's clock, not a trusted timestamp.
//
// The file is created with mode 0600. Strings are JSON-escaped, so no field can forge a line break or another
// field; invalid UTF-8 is replaced by U+FFFD.
package audit
