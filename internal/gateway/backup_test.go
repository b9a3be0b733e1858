package gateway

import (
	"encoding/json"
	"net/http"
	"strings"
	"testing"

	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/proto"

	pb "github.com/hsmpool/hsmpool/proto/hsmpool/v1"
)

const jobID = "00112233445566778899aabbccddeeff"

func TestBackupStart(t *testing.T) {
	e := newEnv(t)
	running := &pb.BackupJob{JobId: jobID, Status: "InProgress", StartTime: 1700000000}
	e.core.on("Backup/StartBackup", func(proto.Message) (proto.Message, error) { return running, nil })
	e.core.on("Backup/StartRestore", func(proto.Message) (proto.Message, error) { return running, nil })
	e.core.on("Backup/StartKeyRestore", func(proto.Message) (proto.Message, error) { return running, nil })
	sas := `{"storageResourceUri":"https://acct.blob.core.windows.net/c","token":"sv=1&sig=x","useManagedIdentity":false}`
	tests := []struct {
		name, method, path, body, poll string
		want                           proto.Message
	}{
		{"backup", "POST", "/backup", sas, "backup",
			&pb.BackupRequest{Location: &pb.StorageLocation{Uri: "https://acct.blob.core.windows.net/c", Token: "sv=1&sig=x"}}},
		{"prebackup", "POST", "/prebackup", sas, "backup",
			&pb.BackupRequest{Location: &pb.StorageLocation{Uri: "https://acct.blob.core.windows.net/c", Token: "sv=1&sig=x"}, CheckOnly: true}},
		{"restore", "PUT", "/restore", `{"sasTokenParameters":` + sas + `,"folderToRestore":"mhsm-p-20260101000000"}`, "restore",
			&pb.RestoreRequest{Location: &pb.StorageLocation{Uri: "https://acct.blob.core.windows.net/c", Token: "sv=1&sig=x"}, Folder: "mhsm-p-20260101000000"}},
		{"prerestore", "PUT", "/prerestore", `{"sasTokenParameters":` + sas + `,"folderToRestore":"f"}`, "restore",
			&pb.RestoreRequest{Location: &pb.StorageLocation{Uri: "https://acct.blob.core.windows.net/c", Token: "sv=1&sig=x"}, Folder: "f", CheckOnly: true}},
		{"selective", "PUT", "/keys/k1/restore", `{"sasTokenParameters":` + sas + `,"folder":"f"}`, "restore",
			&pb.KeyRestoreRequest{Name: "k1", Location: &pb.StorageLocation{Uri: "https://acct.blob.core.windows.net/c", Token: "sv=1&sig=x"}, Folder: "f"}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			res := e.do(tt.method, tt.path+v, tt.body)
			if res.status != http.StatusAccepted {
				t.Fatalf("status %d, want 202: %s", res.status, res.body)
			}
			if got, want := res.header.Get("Azure-AsyncOperation"), "https://"+testHost+"/"+tt.poll+"/"+jobID+"/pending"+v; got != want {
				t.Errorf("Azure-AsyncOperation %q, want %q", got, want)
			}
			if got := res.header.Get("Retry-After"); got != "1" {
				t.Errorf("Retry-After %q, want 1", got)
			}
			var body map[string]json.RawMessage
			if err := json.Unmarshal(res.body, &body); err != nil {
				t.Fatal(err)
			}
			if string(body["status"]) != `"InProgress"` || string(body["jobId"]) != `"`+jobID+`"` || string(body["startTime"]) != "1700000000" {
				t.Errorf("body %s", res.body)
			}
			if et, ok := body["endTime"]; ok && string(et) != "null" {
				t.Errorf("endTime %s while in progress: the JS poller would stop", et)
			}
			calls := e.core.reset()
			if len(calls) != 1 || !proto.Equal(calls[0].req, tt.want) {
				t.Errorf("core got %v, want %v", calls, tt.want)
			}
		})
	}
}

func TestBackupBadBodies(t *testing.T) {
	e := newEnv(t)
	for _, tc := range []struct{ name, method, path, body string }{
		{"backup without uri", "POST", "/backup", `{"token":"x"}`},
		{"restore without folder", "PUT", "/restore", `{"sasTokenParameters":{"storageResourceUri":"https://a/c","token":"x"}}`},
		{"restore without sas", "PUT", "/restore", `{"folderToRestore":"f"}`},
		{"selective without folder", "PUT", "/keys/k1/restore", `{"sasTokenParameters":{"storageResourceUri":"https://a/c","token":"x"}}`},
		{"not json", "POST", "/backup", `nope`},
	} {
		t.Run(tc.name, func(t *testing.T) {
			res := e.do(tc.method, tc.path+v, tc.body)
			if res.status != http.StatusBadRequest {
				t.Fatalf("status %d, want 400: %s", res.status, res.body)
			}
			if n := len(e.core.reset()); n != 0 {
				t.Errorf("the core got %d calls", n)
			}
		})
	}
}

func TestBackupPending(t *testing.T) {
	e := newEnv(t)
	e.core.on("Backup/GetBackupStatus", func(m proto.Message) (proto.Message, error) {
		if m.(*pb.JobRef).JobId != jobID {
			return nil, status.Error(codes.NotFound, "There is no job on this pool.")
		}
		return &pb.BackupJob{JobId: jobID, Status: "Succeeded", StatusDetails: "backup succeeded", StartTime: 10, EndTime: 12,
			FolderUri: "https://acct.blob.core.windows.net/c/mhsm-p-20260101000000"}, nil
	})
	e.core.on("Backup/GetRestoreStatus", func(proto.Message) (proto.Message, error) {
		return &pb.BackupJob{JobId: jobID, Status: "Failed", ErrorCode: "InvalidBackup", ErrorMessage: "another domain", StatusDetails: "another domain", StartTime: 10, EndTime: 11}, nil
	})

	res := e.do("GET", "/backup/"+jobID+"/pending"+v, "")
	if res.status != http.StatusOK || res.header.Get("Azure-AsyncOperation") != "" {
		t.Fatalf("status %d, headers %v: %s", res.status, res.header, res.body)
	}
	want := `{"status":"Succeeded","statusDetails":"backup succeeded","error":null,"startTime":10,"endTime":12,"jobId":"` + jobID +
		`","azureStorageBlobContainerUri":"https://acct.blob.core.windows.net/c/mhsm-p-20260101000000"}`
	if strings.TrimSpace(string(res.body)) != want {
		t.Errorf("body\n%s\nwant\n%s", res.body, want)
	}

	res = e.do("GET", "/restore/"+jobID+"/pending"+v, "")
	want = `{"status":"Failed","statusDetails":"another domain","error":{"code":"InvalidBackup","message":"another domain"},"startTime":10,"endTime":11,"jobId":"` + jobID + `"}`
	if res.status != http.StatusOK || strings.TrimSpace(string(res.body)) != want {
		t.Errorf("status %d body\n%s\nwant\n%s", res.status, res.body, want)
	}

	res = e.do("GET", "/backup/ffff/pending"+v, "")
	if res.status != http.StatusNotFound {
		t.Errorf("unknown job: status %d, want 404: %s", res.status, res.body)
	}
}

func TestBackupConflict(t *testing.T) {
	e := newEnv(t)
	e.core.on("Backup/StartBackup", func(proto.Message) (proto.Message, error) {
		return nil, status.Error(codes.FailedPrecondition, "another backup or restore is running: a pool runs one at a time")
	})
	res := e.do("POST", "/backup"+v, `{"storageResourceUri":"https://a/c","token":"x"}`)
	if res.status != http.StatusConflict {
		t.Fatalf("status %d, want 409: %s", res.status, res.body)
	}
}
