package test

import (
	"bufio"
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/json"
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/Azure/azure-sdk-for-go/sdk/azcore/to"
	"github.com/Azure/azure-sdk-for-go/sdk/security/keyvault/azkeys"

	"github.com/hsmpool/hsmpool/internal/audit"
)

// auditLine is what the test reads of an audit line.
type auditLine struct {
	RequestID string `json:"requestId"`
	Principal string `json:"principal"`
	ClientIP  string `json:"clientIp"`
	Operation string `json:"operation"`
	Action    string `json:"action"`
	Scope     string `json:"scope"`
	Key       string `json:"key"`
	Outcome   string `json:"outcome"`
	Status    int    `json:"status"`
	ErrorCode string `json:"errorCode"`
}

// TestAuditLog checks, through the real daemon, that every request of a run is in the audit log
// with who, what, where and how it ended; that neither tokens nor secrets are; that the chain
// verifies across a restart; and that an edited line is found.
func TestAuditLog(t *testing.T) {
	p := startPool(t)
	p.activate()
	admin := p.admin()
	ctx := context.Background()
	for _, n := range []string{"k1", "k2"} {
		if _, err := admin.keys.CreateKey(ctx, n, azkeys.CreateKeyParameters{Kty: to.Ptr(azkeys.KeyTypeECHSM)}, nil); err != nil {
			t.Fatal(err)
		}
	}
	a := p.newActor("audited")
	admin.assign("/keys/k1", "21dbd100-6940-42c2-9190-5d6cb909625b", a.oid)
	digest := sha256.New().Sum(nil)
	if _, err := a.keys.Sign(ctx, "k1", "", azkeys.SignParameters{Algorithm: to.Ptr(azkeys.SignatureAlgorithmES256), Value: digest}, nil); err != nil {
		t.Fatal(err)
	}
	if _, err := a.keys.Sign(ctx, "k2", "", azkeys.SignParameters{Algorithm: to.Ptr(azkeys.SignatureAlgorithmES256), Value: digest}, nil); !forbidden(err) {
		t.Fatalf("sign with k2: %v, want 403", err)
	}
	if r := p.do("GET", "/keys/k1?api-version=2025-07-01", "", nil); r.status != 401 {
		t.Fatalf("no token: %d", r.status)
	}
	tokens := []string{p.token(), a.token()}
	p.restart() // the chain must continue across restarts
	if _, err := admin.keys.GetKey(ctx, "k1", "", nil); err != nil {
		t.Fatal(err)
	}
	p.stop()

	path := filepath.Join(p.dir, "audit", "audit.log")
	info, err := os.Stat(path)
	if err != nil {
		t.Fatal(err)
	}
	if info.Mode().Perm() != 0o600 {
		t.Errorf("audit log mode %v, want 0600", info.Mode().Perm())
	}
	raw, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	for _, tok := range tokens {
		if bytes.Contains(raw, []byte(tok)) || bytes.Contains(raw, []byte(strings.SplitN(tok, ".", 3)[2])) {
			t.Fatal("the audit log holds an access token")
		}
	}
	if bytes.Contains(raw, []byte(p.client.ClientSecret.Reveal())) {
		t.Fatal("the audit log holds a client secret")
	}
	sum, err := audit.Verify(bytes.NewReader(raw))
	if err != nil {
		t.Fatalf("verify: %v", err)
	}

	var lines []auditLine
	sc := bufio.NewScanner(bytes.NewReader(raw))
	sc.Buffer(nil, 1<<20)
	for sc.Scan() {
		var l auditLine
		if err := json.Unmarshal(sc.Bytes(), &l); err != nil {
			t.Fatal(err)
		}
		lines = append(lines, l)
	}
	if int64(len(lines)) != sum.Lines {
		t.Fatalf("%d lines, Verify counted %d", len(lines), sum.Lines)
	}
	find := func(op, key, outcome string) *auditLine {
		for i := range lines {
			l := &lines[i]
			if l.Operation == op && l.Key == key && l.Outcome == outcome && l.Principal == a.oid {
				return l
			}
		}
		return nil
	}
	ok := find("Sign", "k1", "success")
	if ok == nil || ok.Action != "Microsoft.KeyVault/managedHsm/keys/sign/action" || ok.Scope != "/keys/k1" || ok.Status != 200 ||
		ok.RequestID == "" || ok.ClientIP != "127.0.0.1" {
		t.Errorf("the allowed sign: %+v", ok)
	}
	denied := find("Sign", "k2", "denied")
	if denied == nil || denied.Status != 403 || denied.ErrorCode != "Forbidden" || denied.Scope != "/keys/k2" {
		t.Errorf("the denied sign: %+v", denied)
	}
	var refused bool
	for _, l := range lines {
		if l.Operation == "GetKey" && l.Status == 401 && l.Outcome == "denied" && l.Principal == "" && l.ErrorCode == "Unauthorized" {
			refused = true
		}
	}
	if !refused {
		t.Error("the request without a token is not in the audit log")
	}
	var creates, gets int
	for _, l := range lines {
		switch {
		case l.Operation == "CreateKey" && l.Outcome == "success":
			creates++
		case l.Operation == "GetKey" && l.Key == "k1" && l.Outcome == "success":
			gets++
		}
	}
	if creates < 2 || gets != 1 {
		t.Errorf("%d key creates and %d gets after the restart in the log, want ≥ 2 and 1", creates, gets)
	}

	// Edit one line: the chain breaks at the next one.
	all := bytes.Split(bytes.TrimSuffix(raw, []byte("\n")), []byte("\n"))
	edit := len(all) / 2
	all[edit] = bytes.Replace(all[edit], []byte(`"outcome":"`), []byte(`"outcome":"x`), 1)
	_, err = audit.Verify(bytes.NewReader(append(bytes.Join(all, []byte("\n")), '\n')))
	var ve *audit.VerifyError
	if !errors.As(err, &ve) || (ve.Line != int64(edit+1) && ve.Line != int64(edit+2)) {
		t.Fatalf("verify of an edited line %d: %v", edit+1, err)
	}
}
