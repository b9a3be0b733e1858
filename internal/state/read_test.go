package state

import (
	"fmt"
	"math"
	"slices"
	"sync"
	"testing"

	"google.golang.org/protobuf/proto"

	pb "github.com/hsmpool/hsmpool/proto/hsmpool/v1"
)

func names(recs []*pb.KeyRecord) []string {
	var ns []string
	for _, r := range recs {
		ns = append(ns, r.Name)
	}
	return ns
}

func TestList(t *testing.T) {
	s := newActive(t)
	for _, n := range []string{"d", "b", "a", "e", "c", "B"} {
		mustApply(t, s, put(t0, n, "1"))
	}
	mustApply(t, s, del(t0, "b"), del(t0, "e"))

	tests := []struct {
		name    string
		deleted bool
		after   string
		n       int
		want    []string
		more    bool
	}{
		{"all live", false, "", 10, []string{"B", "a", "c", "d"}, false},
		{"exactly all", false, "", 4, []string{"B", "a", "c", "d"}, false},
		{"first page", false, "", 2, []string{"B", "a"}, true},
		{"second page", false, "a", 2, []string{"c", "d"}, false},
		{"after a deleted name", false, "b", 1, []string{"c"}, true},
		{"after a name that never was", false, "bb", 5, []string{"c", "d"}, false},
		{"after the last", false, "d", 5, nil, false},
		{"after everything", false, "zzz", 5, nil, false},
		{"zero: is there more", false, "", 0, nil, true},
		{"zero at the end", false, "d", 0, nil, false},
		{"negative", false, "", -1, nil, true},
		{"huge", false, "a", math.MaxInt, []string{"c", "d"}, false},
		{"deleted", true, "", 10, []string{"b", "e"}, false},
		{"deleted paged", true, "", 1, []string{"b"}, true},
		{"deleted after a live name", true, "c", 1, []string{"e"}, false},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			recs, more := s.List(tt.deleted, tt.after, tt.n)
			if got := names(recs); !slices.Equal(got, tt.want) || more != tt.more {
				t.Errorf("List(%t, %q, %d) = %q, %t; want %q, %t", tt.deleted, tt.after, tt.n, got, more, tt.want, tt.more)
			}
			for _, r := range recs {
				if (r.Deletion != nil) != tt.deleted {
					t.Errorf("List(%t) returned %v", tt.deleted, r)
				}
			}
		})
	}
	if live, deleted := s.KeyCount(); live != 4 || deleted != 2 {
		t.Errorf("KeyCount() = %d, %d", live, deleted)
	}
}

// TestListPagesThroughEverything pages with every page size and checks that the pages join up
// to the whole sorted list.
func TestListPagesThroughEverything(t *testing.T) {
	s := newActive(t)
	var all []string
	for i := range 57 {
		n := fmt.Sprintf("key-%03d", (i*37)%57)
		all = append(all, n)
		mustApply(t, s, put(t0, n, "1"))
	}
	slices.Sort(all)
	for size := 1; size <= 60; size++ {
		var got []string
		after, more := "", true
		for more {
			var recs []*pb.KeyRecord
			recs, more = s.List(false, after, size)
			if len(recs) == 0 {
				t.Fatalf("size %d: an empty page with more", size)
			}
			got = append(got, names(recs)...)
			after = recs[len(recs)-1].Name
		}
		if !slices.Equal(got, all) {
			t.Fatalf("size %d: pages %q, want %q", size, got, all)
		}
	}
}

func TestReadErrors(t *testing.T) {
	s := newActive(t)
	mustApply(t, s, put(t0, "live", "1"), put(t0, "live", "2"), put(t0, "gone", "1"), del(t0, "gone"))

	if _, err := s.Key("nope"); err == nil {
		t.Error("Key(nope) succeeded")
	} else {
		checkErr(t, err, notFound("nope"))
	}
	_, err := s.Key("gone")
	checkErr(t, err, notFound("gone"))
	_, err = s.DeletedKey("live")
	checkErr(t, err, deletedNotFound("live"))
	_, err = s.DeletedKey("nope")
	checkErr(t, err, deletedNotFound("nope"))
	_, _, err = s.Version("gone", "")
	checkErr(t, err, notFound("gone"))
	_, _, err = s.Version("live", "abc")
	checkErr(t, err, notFound("live/abc"))
	_, _, err = s.Version("live", vid("1")[:31])
	checkErr(t, err, notFound("live/"+vid("1")[:31]))

	rec, v, err := s.Version("live", "")
	if err != nil || v.Version != vid("2") || rec.Name != "live" {
		t.Errorf("Version(live, \"\") = %v, %v", v, err)
	}
	if _, v, err := s.Version("live", vid("1")); err != nil || v.Version != vid("1") {
		t.Errorf("Version(live, 1) = %v, %v", v, err)
	}
	if rec, err := s.DeletedKey("gone"); err != nil || rec.Name != "gone" {
		t.Errorf("DeletedKey(gone) = %v, %v", rec, err)
	}
	if _, ok := s.PrincipalByClientID("nope"); ok {
		t.Error("PrincipalByClientID(nope) found one")
	}
	if _, ok := s.Principal(""); ok {
		t.Error("Principal(\"\") found one")
	}
}

func TestNew(t *testing.T) {
	s := New()
	if s.Pool() != nil || s.Index() != 0 {
		t.Errorf("New() has pool %v index %d", s.Pool(), s.Index())
	}
	if live, deleted := s.KeyCount(); live != 0 || deleted != 0 {
		t.Errorf("KeyCount() = %d, %d", live, deleted)
	}
	if recs, more := s.List(false, "", 25); recs != nil || more {
		t.Errorf("List = %v, %t", recs, more)
	}
	if _, ok := s.PrincipalByClientID(""); ok {
		t.Error("a principal in a new state")
	}
	checkInvariants(t, s)
}

// TestConcurrentReads runs readers against Apply; with -race it checks that reads share
// records safely and that each reader sees every command whole.
func TestConcurrentReads(t *testing.T) {
	s := newActive(t)
	const keys = 20
	for i := range keys {
		mustApply(t, s, put(t0, fmt.Sprintf("k%02d", i), "1"))
	}
	done := make(chan struct{})
	var wg sync.WaitGroup
	for r := range 4 {
		wg.Go(func() {
			for i := 0; ; i++ {
				select {
				case <-done:
					return
				default:
				}
				name := fmt.Sprintf("k%02d", (i+r)%keys)
				if rec, v, err := s.Version(name, ""); err == nil {
					// A record is whole: its current version is its last.
					if v != rec.Versions[len(rec.Versions)-1] || proto.Size(v) == 0 {
						t.Errorf("torn record %v", rec)
						return
					}
				}
				recs, _ := s.List(i%2 == 0, "", 7)
				for _, rec := range recs {
					_ = proto.Size(rec)
				}
				if i%50 == 0 {
					if b, err := s.MarshalSnapshot(); err != nil || len(b) == 0 {
						t.Errorf("MarshalSnapshot: %v", err)
						return
					}
				}
				_ = s.DueRotations(timeAt(t0))
				_ = s.ExpiredDeletions(timeAt(t0))
			}
		})
	}
	for i := range 300 {
		// Each run of five commands works on one key, so that the recover finds it deleted.
		name := fmt.Sprintf("k%02d", (i/5)%keys)
		at := int64(t0 + i)
		switch i % 5 {
		case 0:
			mustApply(t, s, put(at, name, fmt.Sprintf("v%d", i)))
		case 1:
			mustApply(t, s, cmdAt(at, &pb.UpdateKeyVersion{Name: name, Tags: &pb.Tags{Tags: map[string]string{"i": fmt.Sprint(i)}}}))
		case 2:
			mustApply(t, s, cmdAt(at, &pb.SetRotationPolicy{Name: name, Policy: &pb.RotationPolicy{ExpiryTime: "P1Y"}}))
		case 3:
			mustApply(t, s, del(at, name))
		case 4:
			mustApply(t, s, undelete(at, name))
		}
	}
	close(done)
	wg.Wait()
	checkInvariants(t, s)
}
