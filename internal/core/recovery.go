package core

import (
	"context"
	"crypto/x509"
	"errors"
	"fmt"
	"sync"

	"github.com/hsmpool/hsmpool/internal/fault"
	"github.com/hsmpool/hsmpool/internal/rpcerr"
	"github.com/hsmpool/hsmpool/internal/secret"
	pb "github.com/hsmpool/hsmpool/proto/hsmpool/v1"
	"github.com/hsmpool/hsmpool/securitydomain"
)

// Security-domain recovery: a pool made by "hsmpoold init --recovery" publishes an exchange
// key (GET /securitydomain/upload) and is activated by uploading a restore blob made for it
// from an existing security-domain file with a quorum of the officers' keys
// (docs/security-domain.md, spec §2.3–2.5 and §7).

// Upload statuses (OperationStatus of spec §2.5).
const (
	statusSuccess    = "Success"
	statusInProgress = "InProgress"
	statusFailed     = "Failed"
)

// uploadState is this node's last upload: one runs at a time, and its outcome is what
// upload/pending reports until the next one.
type uploadState struct {
	mu      sync.Mutex
	running bool
	failed  string // status_details of the last upload when it failed
}

func (u *uploadState) start() bool {
	u.mu.Lock()
	defer u.mu.Unlock()
	if u.running {
		return false
	}
	u.running, u.failed = true, ""
	return true
}

func (u *uploadState) finish(failed string) {
	u.mu.Lock()
	defer u.mu.Unlock()
	u.running, u.failed = false, failed
}

func (u *uploadState) get() (running bool, failed string) {
	u.mu.Lock()
	defer u.mu.Unlock()
	return u.running, u.failed
}

func errNotRecovery() error {
	return rpcerr.New(fault.BadParameter, "BadParameter",
		"This pool is not in recovery mode: it was made with its own security domain, which is downloaded, not uploaded. Only a pool created with \"hsmpoold init --recovery\" takes a restore blob.")
}

func errRecovered() error {
	return rpcerr.New(fault.Conflict, "Conflict",
		"This pool is already activated: its security domain was uploaded, and its exchange key is no longer offered.")
}

// GetTransferKey returns the exchange certificate of a pool in recovery mode that is not yet
// activated.
func (s *sdServer) GetTransferKey(context.Context, *pb.TransferKeyRequest) (*pb.TransferKey, error) {
	switch p := s.c.st.Pool(); {
	case p == nil:
		return nil, rpcerr.New(fault.Unavailable, "ServiceUnavailable", "the pool is not initialised yet")
	case !p.Recovery:
		return nil, errNotRecovery()
	case p.Activated:
		return nil, errRecovered()
	default:
		return &pb.TransferKey{Certificate: p.ExchangeCert}, nil
	}
}

// Upload opens a restore blob with the exchange key, installs its domain KEK and backup key in
// this node's token, and activates the pool. A blob that cannot be opened or lacks a datum
// fails with BadParameter and leaves the pool in recovery mode; upload/pending then says
// Failed with the reason until the next upload.
func (s *sdServer) Upload(ctx context.Context, r *pb.UploadRequest) (*pb.SecurityDomainStatus, error) {
	c := s.c
	switch p := c.st.Pool(); {
	case p == nil:
		return nil, rpcerr.New(fault.Unavailable, "ServiceUnavailable", "the pool is not initialised yet")
	case !p.Recovery:
		return nil, errNotRecovery()
	case p.Activated:
		return nil, errRecovered()
	}
	if !c.upload.start() {
		return nil, rpcerr.New(fault.Conflict, "Conflict", "A security-domain upload is already in progress; wait for it (GET /securitydomain/upload/pending).")
	}
	err := c.recoverDomain(ctx, r.Blob)
	if err != nil {
		c.upload.finish(rpcerr.ToHTTP(err).Message)
		c.log.Warn("security-domain upload failed", "err", err)
		return nil, err
	}
	c.upload.finish("")
	return &pb.SecurityDomainStatus{Activated: true, Status: statusSuccess, StatusDetails: "The security domain was restored: the pool is active."}, nil
}

func badBlob(format string, args ...any) error {
	return rpcerr.New(fault.BadParameter, "BadParameter", "The restore blob was refused: "+format, args...)
}

// recoverDomain is the upload algorithm of spec §7 over the pool's exchange key.
func (c *Core) recoverDomain(ctx context.Context, blob []byte) error {
	c.activate.Lock()
	defer c.activate.Unlock()
	p := c.st.Pool()
	if p.Activated { // activated by another node's upload while this one waited
		return errRecovered()
	}
	cert, err := x509.ParseCertificate(p.ExchangeCert)
	if err != nil {
		return fmt.Errorf("parse the pool's exchange certificate: %w", err)
	}
	ex, err := c.hsm.FindExchangeKey(ctx, p.ExchangeKeyLabel)
	if errors.Is(err, fault.NotFound) {
		return rpcerr.New(fault.Conflict, "Conflict",
			"This node's HSM does not hold the pool's exchange key %q: upload to the node on which the pool was initialised with --recovery.", p.ExchangeKeyLabel)
	}
	if err != nil {
		return fmt.Errorf("find the exchange key: %w", err)
	}
	if !ex.Public().Equal(cert.PublicKey) {
		return rpcerr.New(fault.Forbidden, "Forbidden", "The exchange key %q in this node's HSM is not the key of the pool's exchange certificate.", p.ExchangeKeyLabel)
	}
	datums, err := securitydomain.OpenRestoreBlob(blob, securitydomain.Exchange{Cert: cert, Key: ex.Decrypter(ctx)})
	defer func() {
		for _, d := range datums {
			d.Data.Wipe()
		}
	}()
	switch {
	case errors.Is(err, securitydomain.ErrWrongExchangeKey):
		return badBlob("it was made for another exchange key. Get this pool's exchange key (GET /securitydomain/upload) and make the blob again with it.")
	case errors.Is(err, securitydomain.ErrMalformed):
		return badBlob("it is not a well-formed restore blob: %v.", err)
	case errors.Is(err, securitydomain.ErrIntegrity), errors.Is(err, fault.BadParameter):
		return badBlob("it does not decrypt and authenticate with this pool's exchange key (it was altered, or made for another key).")
	case err != nil:
		return badBlob("%v.", err)
	}
	kek, err := datum(datums, TagKEK)
	if err != nil {
		return err
	}
	bk, err := datum(datums, TagBackupKey)
	if err != nil {
		return err
	}
	act, kekObj, err := c.installDomain(ctx, kek, bk)
	if err != nil {
		return err
	}
	act.Recovered = true
	if err := c.propose(ctx, c.now(), &pb.Command{Op: &pb.Command_Activate{Activate: act}}); err != nil {
		return err
	}
	c.kek.Store(kekObj)
	c.log.Info("pool activated by a security-domain upload", "kek_label", act.KekLabel)
	// The exchange key has done its work; a later upload is refused anyway.
	if err := c.hsm.DestroyExchangeKey(ctx, p.ExchangeKeyLabel); err != nil {
		c.log.Warn("destroy the exchange key after recovery", "label", p.ExchangeKeyLabel, "err", err)
	}
	return nil
}

// datum returns the one 32-byte datum tagged tag.
func datum(ds []securitydomain.Datum, tag string) (secret.Bytes, error) {
	var found []secret.Bytes
	for _, d := range ds {
		if d.Tag == tag {
			found = append(found, d.Data)
		}
	}
	switch {
	case len(found) == 0:
		return secret.Bytes{}, badBlob("it has no %q datum: it was not made from a security domain of an hsmpool pool.", tag)
	case len(found) > 1:
		return secret.Bytes{}, badBlob("it has %d %q datums.", len(found), tag)
	case found[0].Len() != 32:
		return secret.Bytes{}, badBlob("its %q datum is %d bytes, not 32.", tag, found[0].Len())
	}
	return found[0], nil
}

// GetUploadStatus is upload/pending. Besides the upload's own outcome it answers Success when
// no upload has run, as the Azure CLI 2.45 polls this URL after a download too (spec §2.2).
func (s *sdServer) GetUploadStatus(ctx context.Context, r *pb.SecurityDomainStatusRequest) (*pb.SecurityDomainStatus, error) {
	p := s.c.st.Pool()
	if p == nil || !p.Recovery || p.Activated {
		return s.GetStatus(ctx, r)
	}
	switch running, failed := s.c.upload.get(); {
	case running:
		return &pb.SecurityDomainStatus{Status: statusInProgress, StatusDetails: "The restore blob is being opened and installed."}, nil
	case failed != "":
		return &pb.SecurityDomainStatus{Status: statusFailed, StatusDetails: failed}, nil
	}
	return &pb.SecurityDomainStatus{Status: statusSuccess,
		StatusDetails: "No upload has run: the pool is in recovery mode, waiting for a restore blob made for its exchange key."}, nil
}
