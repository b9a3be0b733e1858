package audit

import (
	"bufio"
	"bytes"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"time"
)

// Summary describes a verified audit file, or the part of it that verified.
type Summary struct {
	// Lines is the number of lines verified.
	Lines int64
	// FirstSeq and LastSeq are the seq of the first and last lines; FirstSeq is 1 unless the file continues another.
	FirstSeq, LastSeq uint64
	// FirstTime and LastTime are the times of the first and last lines.
	FirstTime, LastTime time.Time
	// FirstPrev is the prev of the first line, in hex: 64 zeros when the file starts a chain, else the LastHash of
	// the file it continues.
	FirstPrev string
	// LastHash is the hex SHA-256 of the last line, the prev the next line will carry. Kept somewhere else, it is
	// the anchor that detects an edit of the last line, or lines removed from the end (see the package doc).
	LastHash string
}

// VerifyError is a line of an audit file that breaks the chain, or that is not a line of an audit log.
type VerifyError struct {
	// Line is the number of the line in the file, from 1.
	Line int64
	// Reason says what is wrong with it.
	Reason string
}

func (e *VerifyError) Error() string { return fmt.Sprintf("line %d: %s", e.Line, e.Reason) }

// zeroHash is the prev of the first line of a chain.
var zeroHash [32]byte

// Verify reads an audit file from r and checks that every line is an audit line in the form Record writes, that seq
// goes up by one from line to line, and that each prev is the SHA-256 of the line before. A file may continue
// another (its first seq above 1, its first prev that file's LastHash); Summary.Follows checks the link.
//
// The error is a *VerifyError naming the first line at fault, or an error of r; the Summary then covers the lines
// before it. An edit of line N shows as a wrong prev on line N+1; lines removed before line N as a gap in seq on
// line N; a last line cut short as an incomplete line. An edit of the last line cannot show (see the package doc).
// r is untrusted: any bytes give an answer, and lines are at most 64 KiB.
func Verify(r io.Reader) (Summary, error) {
	var (
		s    Summary
		prev [32]byte
		br   = bufio.NewReaderSize(r, maxLine+1)
		buf  []byte
	)
	for n := int64(1); ; n++ {
		b, err := br.ReadSlice('\n')
		switch {
		case err == io.EOF && len(b) == 0:
			return s, nil
		case err == io.EOF:
			return s, &VerifyError{n, "incomplete, no newline at its end: the file was cut short, or its last write"}
		case errors.Is(err, bufio.ErrBufferFull):
			return s, &VerifyError{n, "longer than 64 KiB: not an audit line"}
		case err != nil:
			return s, fmt.Errorf("read line %d: %w", n, err)
		}
		b = b[:len(b)-1]
		l, err := parseLine(b, &buf)
		if err != nil {
			return s, &VerifyError{n, err.Error()}
		}
		if n == 1 {
			switch {
			case l.seq == 1 && l.prev != zeroHash:
				return s, &VerifyError{n, "seq 1 with a prev other than zeros: a chain's first line has zeros"}
			case l.seq > 1 && l.prev == zeroHash:
				return s, &VerifyError{n, fmt.Sprintf("seq %d with the zero prev of a chain's first line: lines 1 to %d were removed", l.seq, l.seq-1)}
			}
			s.FirstSeq, s.FirstTime, s.FirstPrev = l.seq, l.entry.Time, hex.EncodeToString(l.prev[:])
		} else {
			switch {
			case l.seq > s.LastSeq+1:
				return s, &VerifyError{n, fmt.Sprintf("seq %d follows seq %d: %d lines were removed before it", l.seq, s.LastSeq, l.seq-s.LastSeq-1)}
			case l.seq != s.LastSeq+1:
				return s, &VerifyError{n, fmt.Sprintf("seq %d follows seq %d: lines were repeated, reordered or edited", l.seq, s.LastSeq)}
			case l.prev != prev:
				return s, &VerifyError{n, fmt.Sprintf("prev is not the hash of line %d: line %d, or this prev, was changed", n-1, n-1)}
			}
		}
		prev = sha256.Sum256(b)
		s.Lines, s.LastSeq, s.LastTime, s.LastHash = n, l.seq, l.entry.Time, hex.EncodeToString(prev[:])
	}
}

// Follows checks that the file summarized by s continues the one summarized by prev, as the next file after a
// rotation does: its first line's seq and prev follow prev's last line.
func (s Summary) Follows(prev Summary) error {
	switch {
	case prev.Lines == 0 || s.Lines == 0:
		return errors.New("an empty file neither continues nor is continued by another")
	case s.FirstSeq != prev.LastSeq+1:
		return fmt.Errorf("it starts at seq %d, and the file before it ends at seq %d", s.FirstSeq, prev.LastSeq)
	case s.FirstPrev != prev.LastHash:
		return fmt.Errorf("its first prev %s is not the hash %s of the last line of the file before it", s.FirstPrev, prev.LastHash)
	}
	return nil
}

// parsed is a line parsed by parseLine.
type parsed struct {
	seq   uint64
	prev  [32]byte
	entry Entry
}

// wireLine is the JSON of a line, as parseLine decodes it.
type wireLine struct {
	Seq           *uint64 `json:"seq"`
	Prev          *string `json:"prev"`
	Time          *string `json:"time"`
	RequestID     string  `json:"requestId"`
	Principal     string  `json:"principal"`
	PrincipalName string  `json:"principalName"`
	ClientIP      string  `json:"clientIp"`
	Operation     string  `json:"operation"`
	Action        string  `json:"action"`
	Scope         string  `json:"scope"`
	Key           string  `json:"key"`
	Version       string  `json:"version"`
	Outcome       Outcome `json:"outcome"`
	Status        int     `json:"status"`
	ErrorCode     string  `json:"errorCode"`
	DurationUs    int64   `json:"durationUs"`
}

// parseLine parses an audit line (without its newline) and checks that it is exactly the line Record would write for
// what it says, so that one record has one form: no added fields or spaces, no other escapes, no other time format.
// buf is scratch space for the check.
func parseLine(b []byte, buf *[]byte) (parsed, error) {
	var w wireLine
	d := json.NewDecoder(bytes.NewReader(b))
	d.DisallowUnknownFields()
	if err := d.Decode(&w); err != nil {
		return parsed{}, fmt.Errorf("not an audit line: %v", err)
	}
	var p parsed
	switch {
	case w.Seq == nil || *w.Seq == 0:
		return p, errors.New("no seq, or seq 0: not an audit line")
	case w.Prev == nil:
		return p, errors.New("no prev: not an audit line")
	case w.Time == nil:
		return p, errors.New("no time: not an audit line")
	case !w.Outcome.valid():
		return p, fmt.Errorf("outcome %q: want success, denied or failed", w.Outcome)
	}
	if len(*w.Prev) != hex.EncodedLen(len(p.prev)) {
		return p, fmt.Errorf("prev %q: want 64 hex digits", *w.Prev)
	}
	if _, err := hex.Decode(p.prev[:], []byte(*w.Prev)); err != nil {
		return p, fmt.Errorf("prev %q: want 64 hex digits", *w.Prev)
	}
	t, err := time.Parse(time.RFC3339Nano, *w.Time)
	if err != nil {
		return p, fmt.Errorf("time %q: want RFC 3339", *w.Time)
	}
	p.seq = *w.Seq
	p.entry = Entry{
		Time: t.UTC(), RequestID: w.RequestID, Principal: w.Principal, PrincipalName: w.PrincipalName,
		ClientIP: w.ClientIP, Operation: w.Operation, Action: w.Action, Scope: w.Scope, Key: w.Key,
		Version: w.Version, Outcome: w.Outcome, Status: w.Status, ErrorCode: w.ErrorCode,
		Duration: w.DurationUs,
	}
	*buf = appendLine((*buf)[:0], p.seq, &p.prev, &p.entry)
	if !bytes.Equal(*buf, b) {
		return p, errors.New("not in the form the audit log writes: the line was edited")
	}
	return p, nil
}
