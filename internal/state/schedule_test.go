package state

import (
	"slices"
	"testing"
	"time"

	"google.golang.org/protobuf/proto"

	pb "github.com/hsmpool/hsmpool/proto/hsmpool/v1"
)

func timeAt(unix int64) time.Time { return time.Unix(unix, 0) }

const day = 86400

func TestParseISODuration(t *testing.T) {
	tests := []struct {
		in   string
		want isoDuration
		ok   bool
	}{
		{"P90D", isoDuration{days: 90}, true},
		{"P2Y", isoDuration{years: 2}, true},
		{"P1Y6M", isoDuration{years: 1, months: 6}, true},
		{"P2W", isoDuration{days: 14}, true},
		{"P1W3D", isoDuration{days: 10}, true},
		{"PT12H", isoDuration{clock: 12 * time.Hour}, true},
		{"P1DT2H3M4S", isoDuration{days: 1, clock: 2*time.Hour + 3*time.Minute + 4*time.Second}, true},
		{"P0D", isoDuration{}, true},
		{"P1M", isoDuration{months: 1}, true},
		{"PT1M", isoDuration{clock: time.Minute}, true},
		{"P1000000D", isoDuration{days: 1000000}, true},
		{"", isoDuration{}, false},
		{"P", isoDuration{}, false},
		{"PT", isoDuration{}, false},
		{"P1DT", isoDuration{}, false},
		{"90D", isoDuration{}, false},
		{"p90d", isoDuration{}, false},
		{"P90", isoDuration{}, false},
		{"PD", isoDuration{}, false},
		{"P1D1Y", isoDuration{}, false},
		{"P1D1D", isoDuration{}, false},
		{"P1H", isoDuration{}, false},
		{"PT1D", isoDuration{}, false},
		{"PT1H1H", isoDuration{}, false},
		{"PTT1H", isoDuration{}, false},
		{"P1.5D", isoDuration{}, false},
		{"P-1D", isoDuration{}, false},
		{"P1000001D", isoDuration{}, false},
		{"P99999999999999999999D", isoDuration{}, false},
		{"P1D ", isoDuration{}, false},
	}
	for _, tt := range tests {
		got, ok := parseISODuration(tt.in)
		if ok != tt.ok || (ok && got != tt.want) {
			t.Errorf("parseISODuration(%q) = %+v, %t; want %+v, %t", tt.in, got, ok, tt.want, tt.ok)
		}
	}
}

func TestISODurationAddTo(t *testing.T) {
	jan31 := time.Date(2026, 1, 31, 10, 0, 0, 0, time.UTC)
	d, _ := parseISODuration("P1MT1H")
	if got, want := d.addTo(jan31, 1), time.Date(2026, 3, 3, 11, 0, 0, 0, time.UTC); !got.Equal(want) {
		t.Errorf("P1MT1H after %v = %v, want %v", jan31, got, want)
	}
	d, _ = parseISODuration("P1Y2D")
	if got, want := d.addTo(jan31, -1), time.Date(2025, 1, 29, 10, 0, 0, 0, time.UTC); !got.Equal(want) {
		t.Errorf("P1Y2D before %v = %v, want %v", jan31, got, want)
	}
}

func TestDueRotations(t *testing.T) {
	policy := func(actions ...*pb.LifetimeAction) *pb.RotationPolicy {
		return &pb.RotationPolicy{LifetimeActions: actions, ExpiryTime: "P2Y"}
	}
	afterCreate := func(d, action string) *pb.LifetimeAction {
		return &pb.LifetimeAction{TimeAfterCreate: d, Action: action}
	}
	beforeExpiry := func(d, action string) *pb.LifetimeAction {
		return &pb.LifetimeAction{TimeBeforeExpiry: d, Action: action}
	}
	// Every key's current version is created at t0; "exp" ones expire at t0 + 100 days.
	keys := []struct {
		name   string
		policy *pb.RotationPolicy
		exp    bool
	}{
		{"after-create-30d", policy(afterCreate("P30D", "Rotate")), false},
		{"after-create-60d-lower", policy(afterCreate("P60D", "rotate")), false},
		{"before-expiry-30d", policy(beforeExpiry("P30D", "Rotate")), true},
		{"before-expiry-no-exp", policy(beforeExpiry("P30D", "Rotate")), false},
		{"notify-only", policy(afterCreate("P1D", "Notify")), false},
		{"bad-duration", policy(afterCreate("30 days", "Rotate")), false},
		{"second-action", policy(afterCreate("P1D", "Notify"), afterCreate("P45D", "Rotate")), false},
		{"no-policy", nil, false},
		{"expiry-only", &pb.RotationPolicy{ExpiryTime: "P1Y"}, true},
	}
	s := newActive(t)
	for _, k := range keys {
		v := version("1")
		if k.exp {
			v.Attributes.Expires = proto.Int64(t0 + 100*day)
		}
		mustApply(t, s, cmdAt(t0, &pb.PutKeyVersion{Name: k.name, Version: v}))
		if k.policy != nil {
			mustApply(t, s, cmdAt(t0, &pb.SetRotationPolicy{Name: k.name, Policy: k.policy}))
		}
	}
	// A deleted key with a due policy is not rotated.
	mustApply(t, s, put(t0, "deleted", "1"), cmdAt(t0, &pb.SetRotationPolicy{Name: "deleted", Policy: policy(afterCreate("P1D", "Rotate"))}), del(t0, "deleted"))

	tests := []struct {
		at   int64
		want []string
	}{
		{t0, nil},
		{t0 + 30*day - 1, nil},
		{t0 + 30*day, []string{"after-create-30d"}},
		{t0 + 45*day, []string{"after-create-30d", "second-action"}},
		{t0 + 70*day - 1, []string{"after-create-30d", "after-create-60d-lower", "second-action"}},
		{t0 + 70*day, []string{"after-create-30d", "after-create-60d-lower", "before-expiry-30d", "second-action"}},
		{t0 + 1000*day, []string{"after-create-30d", "after-create-60d-lower", "before-expiry-30d", "second-action"}},
	}
	for _, tt := range tests {
		if got := s.DueRotations(timeAt(tt.at)); !slices.Equal(got, tt.want) {
			t.Errorf("DueRotations(t0%+d s) = %q, want %q", tt.at-t0, got, tt.want)
		}
	}

	// Rotation (a new current version) ends the trigger until it is due again.
	mustApply(t, s, put(t0+30*day, "after-create-30d", "2"))
	if got := s.DueRotations(timeAt(t0 + 30*day)); len(got) != 0 {
		t.Errorf("after rotation: DueRotations = %q", got)
	}
	if got := s.DueRotations(timeAt(t0 + 60*day)); !slices.Equal(got, []string{"after-create-30d", "after-create-60d-lower", "second-action"}) {
		t.Errorf("30 days after rotation: DueRotations = %q", got)
	}
}

func TestExpiredDeletions(t *testing.T) {
	s := newActive(t)
	short := version("1") // 7 days
	long := version("1")
	long.Attributes.RecoverableDays = 90
	mustApply(t, s,
		cmdAt(t0, &pb.PutKeyVersion{Name: "b-short", Version: short}),
		cmdAt(t0, &pb.PutKeyVersion{Name: "a-short", Version: short}),
		cmdAt(t0, &pb.PutKeyVersion{Name: "long", Version: long}),
		put(t0, "live", "1"),
		del(t0, "b-short"), del(t0+10, "a-short"), del(t0, "long"),
	)
	tests := []struct {
		at   int64
		want []string
	}{
		{t0, nil},
		{t0 + 7*day - 1, nil},
		{t0 + 7*day, []string{"b-short"}},
		{t0 + 7*day + 10, []string{"a-short", "b-short"}},
		{t0 + 90*day, []string{"a-short", "b-short", "long"}},
	}
	for _, tt := range tests {
		if got := s.ExpiredDeletions(timeAt(tt.at)); !slices.Equal(got, tt.want) {
			t.Errorf("ExpiredDeletions(t0%+d s) = %q, want %q", tt.at-t0, got, tt.want)
		}
	}
}

func TestPurgeDateSaturates(t *testing.T) {
	s := newActive(t)
	mustApply(t, s, put(t0, "k", "1"), del(1<<63-1000, "k"))
	rec, err := s.DeletedKey("k")
	if err != nil || rec.Deletion.ScheduledPurgeDate != 1<<63-1 {
		t.Errorf("deletion %v, %v", rec.GetDeletion(), err)
	}
}
