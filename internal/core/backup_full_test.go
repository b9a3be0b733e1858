package core

import (
	"errors"
	"regexp"
	"testing"
	"time"

	"github.com/hsmpool/hsmpool/internal/fault"
	pb "github.com/hsmpool/hsmpool/proto/hsmpool/v1"
)

func TestJobs(t *testing.T) {
	var j jobs
	now := time.Unix(1767225600, 0)
	b, err := j.start(false, now)
	if err != nil {
		t.Fatal(err)
	}
	if !regexp.MustCompile(`^[0-9a-f]{32}$`).MatchString(b.JobId) || b.Status != "InProgress" || b.StartTime != now.Unix() || b.EndTime != 0 {
		t.Fatalf("started job %v", b)
	}
	// One job at a time, of either kind.
	for _, restore := range []bool{false, true} {
		if _, err := j.start(restore, now); !errors.Is(err, fault.Conflict) {
			t.Errorf("second start (restore=%v): %v, want Conflict", restore, err)
		}
	}
	// A backup job is not found as a restore job.
	if _, err := j.get(b.JobId, true); !errors.Is(err, fault.NotFound) {
		t.Errorf("backup job read as a restore: %v", err)
	}
	if _, err := j.get("nope", false); !errors.Is(err, fault.NotFound) {
		t.Errorf("unknown job: %v", err)
	}
	j.finish(b.JobId, func(st *pb.BackupJob) { st.Status, st.EndTime = "Succeeded", now.Unix()+1 })
	got, err := j.get(b.JobId, false)
	if err != nil || got.Status != "Succeeded" || got.EndTime != now.Unix()+1 {
		t.Fatalf("finished job %v, %v", got, err)
	}
	got.Status = "changed" // a copy
	if again, _ := j.get(b.JobId, false); again.Status != "Succeeded" {
		t.Error("get hands out the registry's record")
	}
	// Finished jobs are kept up to keptJobs, oldest dropped first.
	for range keptJobs {
		r, err := j.start(true, now)
		if err != nil {
			t.Fatal(err)
		}
		j.finish(r.JobId, func(st *pb.BackupJob) { st.Status = "Failed" })
	}
	if _, err := j.get(b.JobId, false); !errors.Is(err, fault.NotFound) {
		t.Errorf("the oldest job was not dropped: %v", err)
	}
	if len(j.byID) != keptJobs {
		t.Errorf("%d jobs kept, want %d", len(j.byID), keptJobs)
	}
}

func TestOpenStore(t *testing.T) {
	c := &Core{}
	dir := t.TempDir()
	for _, tc := range []struct {
		name string
		loc  *pb.StorageLocation
		ok   bool
	}{
		{"file", &pb.StorageLocation{Uri: "file://" + dir}, true},
		{"managed identity", &pb.StorageLocation{Uri: "https://a.blob.core.windows.net/c", UseManagedIdentity: true}, false},
		{"no uri", &pb.StorageLocation{}, false},
		{"nil", nil, false},
		{"https without token", &pb.StorageLocation{Uri: "https://a.blob.core.windows.net/c"}, false},
		{"http remote", &pb.StorageLocation{Uri: "http://a.blob.core.windows.net/c", Token: "sig=x"}, false},
	} {
		t.Run(tc.name, func(t *testing.T) {
			_, err := c.openStore(tc.loc)
			if tc.ok != (err == nil) {
				t.Fatalf("openStore: %v", err)
			}
			if err != nil && !errors.Is(err, fault.BadParameter) {
				t.Errorf("error %v is not BadParameter", err)
			}
		})
	}
}
