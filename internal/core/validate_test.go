package core

import (
	"testing"
	"time"

	"github.com/hsmpool/hsmpool/internal/fault"
	"github.com/hsmpool/hsmpool/internal/hsm"
	pb "github.com/hsmpool/hsmpool/proto/hsmpool/v1"
)

func TestParseDuration(t *testing.T) {
	day := 24 * time.Hour
	good := map[string]time.Duration{"P90D": 90 * day, "P2Y": 730 * day, "P1M": 30 * day, "P4W": 28 * day,
		"P1DT12H": 36 * time.Hour, "PT30M": 30 * time.Minute, "P1Y2M3DT4H5M6S": 365*day + 60*day + 3*day + 4*time.Hour + 5*time.Minute + 6*time.Second}
	for s, want := range good {
		if got, err := parseDuration(s); err != nil || got != want {
			t.Errorf("parseDuration(%q) = %v, %v; want %v", s, got, err, want)
		}
	}
	for _, s := range []string{"", "P", "PT", "90D", "P-1D", "P1.5D", "p90d", "P1DT", "P999999999D"} {
		if _, err := parseDuration(s); err == nil {
			t.Errorf("parseDuration(%q) succeeded", s)
		}
	}
}

func act(after, before, typ string) *pb.LifetimeAction {
	return &pb.LifetimeAction{TimeAfterCreate: after, TimeBeforeExpiry: before, Action: typ}
}

func TestCheckPolicy(t *testing.T) {
	ok := []*pb.RotationPolicy{
		{},
		{LifetimeActions: []*pb.LifetimeAction{act("P28D", "", "Rotate")}},
		{ExpiryTime: "P1Y", LifetimeActions: []*pb.LifetimeAction{act("", "P30D", "rotate")}},
		{ExpiryTime: "P56D", LifetimeActions: []*pb.LifetimeAction{act("", "P28D", "ROTATE")}},
	}
	for _, p := range ok {
		got, err := checkPolicy(p)
		if err != nil {
			t.Errorf("checkPolicy(%v): %v", p, err)
			continue
		}
		for _, a := range got.LifetimeActions {
			if a.Action != "Rotate" {
				t.Errorf("action %q not normalised", a.Action)
			}
		}
	}
	bad := []*pb.RotationPolicy{
		nil,
		{LifetimeActions: []*pb.LifetimeAction{act("P27D", "", "Rotate")}},
		{LifetimeActions: []*pb.LifetimeAction{act("P90D", "", "Notify")}},
		{LifetimeActions: []*pb.LifetimeAction{act("P90D", "", "Explode")}},
		{LifetimeActions: []*pb.LifetimeAction{act("P90D", "P30D", "Rotate")}},
		{LifetimeActions: []*pb.LifetimeAction{act("", "", "Rotate")}},
		{LifetimeActions: []*pb.LifetimeAction{act("", "P30D", "Rotate")}},
		{ExpiryTime: "P20D"},
		{ExpiryTime: "P50D", LifetimeActions: []*pb.LifetimeAction{act("", "P30D", "Rotate")}},
		{LifetimeActions: []*pb.LifetimeAction{act("P30D", "", "Rotate"), act("P40D", "", "Rotate"), act("P50D", "", "Rotate")}},
	}
	for _, p := range bad {
		if _, err := checkPolicy(p); fault.Of(err) != fault.BadParameter {
			t.Errorf("checkPolicy(%v) = %v, want BadParameter", p, err)
		}
	}
}

func TestCheckOps(t *testing.T) {
	got, err := checkOps(hsm.EC, nil)
	if err != nil || len(got) != 2 {
		t.Fatalf("EC defaults: %v %v", got, err)
	}
	got, err = checkOps(hsm.RSA, &pb.KeyOps{Ops: []string{"sign", "sign", "decrypt"}})
	if err != nil || len(got) != 2 || usage(got) != hsm.UseSign|hsm.UseDecrypt {
		t.Fatalf("RSA ops: %v %v", got, err)
	}
	for _, tc := range []struct {
		t   hsm.KeyType
		ops []string
	}{{hsm.EC, []string{"encrypt"}}, {hsm.AES, []string{"export"}}, {hsm.RSA, []string{"Sign"}}, {hsm.RSA, []string{"import"}}} {
		if _, err := checkOps(tc.t, &pb.KeyOps{Ops: tc.ops}); fault.Of(err) != fault.BadParameter {
			t.Errorf("checkOps(%v, %v) = %v, want BadParameter", tc.t, tc.ops, err)
		}
	}
}

func TestValidateNames(t *testing.T) {
	for _, n := range []string{"a", "key-1", "ABC123", string(make([]byte, 0))} {
		err := checkName(n)
		if (n == "") != (err != nil) {
			t.Errorf("checkName(%q) = %v", n, err)
		}
	}
	for _, n := range []string{"a_b", "a b", "ä", "a/b", "a.b"} {
		if checkName(n) == nil {
			t.Errorf("checkName(%q) accepted", n)
		}
	}
}
