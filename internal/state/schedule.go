package state

import (
	"strings"
	"time"

	pb "github.com/hsmpool/hsmpool/proto/hsmpool/v1"
)

// The leader runs the pool's schedule: it asks DueRotations and ExpiredDeletions what is due
// and proposes the commands (a new version, a purge) through Raft like any client would. These
// reads take the clock as an argument, so they never make Apply depend on time.

// DueRotations returns, sorted, the names of the live keys whose rotation policy has a Rotate
// action due at now: a timeAfterCreate trigger once that long has passed since the current
// version was created, a timeBeforeExpiry trigger once the current version expires within
// that long (a version without an expiry never triggers it). Rotating makes a new current
// version, which is what ends the trigger. Action types compare case-insensitively, as Azure
// says they should; a trigger whose duration does not parse (the core validates them before
// they are stored) is ignored.
func (s *State) DueRotations(now time.Time) []string {
	s.mu.RLock()
	var recs []*pb.KeyRecord
	for _, name := range s.live {
		if rec := s.keys[name]; rec.RotationPolicy != nil {
			recs = append(recs, rec)
		}
	}
	s.mu.RUnlock()

	// The records are immutable, so the policies are evaluated without the lock.
	var due []string
	for _, rec := range recs {
		if rotationDue(rec, now) {
			due = append(due, rec.Name)
		}
	}
	return due
}

// rotationDue reports whether a Rotate action of rec's policy is due at now.
func rotationDue(rec *pb.KeyRecord, now time.Time) bool {
	attrs := current(rec).GetAttributes()
	for _, a := range rec.GetRotationPolicy().GetLifetimeActions() {
		if !strings.EqualFold(a.GetAction(), "Rotate") {
			continue
		}
		switch {
		case a.GetTimeAfterCreate() != "":
			d, ok := parseISODuration(a.GetTimeAfterCreate())
			if ok && !d.addTo(time.Unix(attrs.GetCreated(), 0), 1).After(now) {
				return true
			}
		case a.GetTimeBeforeExpiry() != "":
			d, ok := parseISODuration(a.GetTimeBeforeExpiry())
			if ok && attrs.Expires != nil && !d.addTo(time.Unix(attrs.GetExpires(), 0), -1).After(now) {
				return true
			}
		}
	}
	return false
}

// ExpiredDeletions returns, sorted, the names of the soft-deleted keys whose scheduled purge
// date is at or before now. The leader purges them.
func (s *State) ExpiredDeletions(now time.Time) []string {
	s.mu.RLock()
	defer s.mu.RUnlock()
	var names []string
	for _, name := range s.deleted {
		if s.keys[name].Deletion.ScheduledPurgeDate <= now.Unix() {
			names = append(names, name)
		}
	}
	return names
}

// isoDuration is an ISO 8601 duration as Azure rotation policies write them ("P90D", "P2Y",
// "P1Y6M", "PT12H"): years, months, weeks and days, then after a T hours, minutes and seconds,
// each an unsigned integer, in that order, at least one of them.
type isoDuration struct {
	years, months, days int
	clock               time.Duration
}

// maxISOComponent bounds each number so that no sum below can overflow.
const maxISOComponent = 1_000_000

// parseISODuration parses s, reporting false for anything that is not an isoDuration.
func parseISODuration(s string) (isoDuration, bool) {
	var d isoDuration
	rest, ok := strings.CutPrefix(s, "P")
	if !ok || rest == "" {
		return d, false
	}
	const dateUnits, timeUnits = "YMWD", "HMS"
	units, inTime, seen := dateUnits, false, false
	for rest != "" {
		if rest[0] == 'T' {
			if inTime || len(rest) == 1 {
				return d, false
			}
			units, inTime, rest = timeUnits, true, rest[1:]
			continue
		}
		n, i := 0, 0
		for ; i < len(rest) && rest[i] >= '0' && rest[i] <= '9'; i++ {
			n = n*10 + int(rest[i]-'0')
			if n > maxISOComponent {
				return d, false
			}
		}
		if i == 0 || i == len(rest) {
			return d, false
		}
		// Each unit may follow only the units before it in its list.
		u := strings.IndexByte(units, rest[i])
		if u < 0 {
			return d, false
		}
		unit := units[u]
		units, rest, seen = units[u+1:], rest[i+1:], true
		switch {
		case !inTime && unit == 'Y':
			d.years = n
		case !inTime && unit == 'M':
			d.months = n
		case !inTime && unit == 'W':
			d.days += 7 * n
		case !inTime && unit == 'D':
			d.days += n
		case unit == 'H':
			d.clock += time.Duration(n) * time.Hour
		case unit == 'M':
			d.clock += time.Duration(n) * time.Minute
		case unit == 'S':
			d.clock += time.Duration(n) * time.Second
		}
	}
	return d, seen
}

// addTo returns t moved by d, forwards (sign 1) or backwards (sign -1), in UTC: calendar units
// with AddDate (P1M from 31 January is 3 March, as Go normalises), then the clock part.
func (d isoDuration) addTo(t time.Time, sign int) time.Time {
	return t.UTC().AddDate(sign*d.years, sign*d.months, sign*d.days).Add(time.Duration(sign) * d.clock)
}
