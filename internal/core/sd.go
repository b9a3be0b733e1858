package core

import (
	"bytes"
	"context"
	"crypto/x509"
	"fmt"

	"github.com/hsmpool/hsmpool/internal/fault"
	"github.com/hsmpool/hsmpool/internal/hsm"
	"github.com/hsmpool/hsmpool/internal/rpcerr"
	"github.com/hsmpool/hsmpool/internal/secret"
	pb "github.com/hsmpool/hsmpool/proto/hsmpool/v1"
	"github.com/hsmpool/hsmpool/securitydomain"
)

// Datum tags of the pool's security domain. Recovery refuses a blob without all of them.
const (
	TagKEK       = "hsmpool.domain-kek.v1"
	TagBackupKey = "hsmpool.backup-key.v1"
)

type sdServer struct {
	pb.UnsafeSecurityDomainServer
	c *Core
}

// Download activates the pool on first use. Later downloads must name the same certificates and
// quorum and get the same file back: the domain secrets cannot be read out of the HSM again (the
// KEK is non-extractable), so a new split would need them; re-splitting for other officers is a
// recovery-style ceremony that is not offered yet.
func (s *sdServer) Download(ctx context.Context, r *pb.DownloadRequest) (*pb.DownloadResult, error) {
	c := s.c
	certs := make([]*x509.Certificate, len(r.Certificates))
	for i, der := range r.Certificates {
		cert, err := x509.ParseCertificate(der)
		if err != nil {
			return nil, bad("Certificate %d is not a valid X.509 certificate: %v", i+1, err)
		}
		certs[i] = cert
	}
	if err := securitydomain.CheckOfficerCerts(certs); err != nil {
		return nil, rpcerr.New(fault.BadParameter, "BadParameter", "%v", err)
	}
	if r.Quorum < securitydomain.MinQuorum || int(r.Quorum) > len(certs) {
		return nil, bad("The quorum (required) must be %d to the number of certificates (%d); got %d.", securitydomain.MinQuorum, len(certs), r.Quorum)
	}
	c.activate.Lock()
	defer c.activate.Unlock()
	switch p := c.st.Pool(); {
	case p == nil:
		return nil, rpcerr.New(fault.Unavailable, "ServiceUnavailable", "the pool is not initialised yet")
	case p.Recovery && !p.Activated:
		return nil, rpcerr.New(fault.Conflict, "Conflict",
			"This pool is in recovery mode: it receives an existing security domain and cannot make one. Upload a restore blob instead: get the exchange key (GET /securitydomain/upload), build the blob with the officers' keys, and POST it to /securitydomain/upload.")
	case p.Recovered:
		return nil, rpcerr.New(fault.Conflict, "Conflict",
			"This pool's security domain was restored by an upload: its security officers already hold the security-domain file, and a download cannot split it again.")
	case p.Activated:
		return sameDomain(p, r)
	}
	file, act, kek, err := c.makeDomain(ctx, certs, int(r.Quorum), r.Certificates)
	if err != nil {
		return nil, err
	}
	if err := c.propose(ctx, c.now(), &pb.Command{Op: &pb.Command_Activate{Activate: act}}); err != nil {
		return nil, err
	}
	c.kek.Store(kek)
	c.log.Info("pool activated", "officers", len(certs), "quorum", r.Quorum, "kek_label", act.KekLabel)
	return &pb.DownloadResult{File: file}, nil
}

func sameDomain(p *pb.PoolRecord, r *pb.DownloadRequest) (*pb.DownloadResult, error) {
	same := int(p.Quorum) == int(r.Quorum) && len(p.OfficerCerts) == len(r.Certificates)
	for i := 0; same && i < len(r.Certificates); i++ {
		same = bytes.Equal(p.OfficerCerts[i], r.Certificates[i])
	}
	if !same {
		return nil, rpcerr.New(fault.Conflict, "Conflict",
			"The pool is already activated: its security domain was downloaded with other certificates or another quorum. Download again with the same %d certificates and quorum %d to get the file again.", len(p.OfficerCerts), p.Quorum)
	}
	return &pb.DownloadResult{File: p.SecurityDomain}, nil
}

// makeDomain makes the domain secrets from the token's RNG, installs them (installDomain) and
// seals both in a security-domain file. Plaintext secrets live only in buffers wiped before
// return.
func (c *Core) makeDomain(ctx context.Context, certs []*x509.Certificate, quorum int, ders [][]byte) ([]byte, *pb.Activate, *hsm.KEK, error) {
	kekBytes, err := c.hsm.Random(ctx, 32)
	if err != nil {
		return nil, nil, nil, err
	}
	kekSecret := secret.New(kekBytes)
	defer kekSecret.Wipe()
	bkBytes, err := c.hsm.Random(ctx, 32)
	if err != nil {
		return nil, nil, nil, err
	}
	bkSecret := secret.New(bkBytes)
	defer bkSecret.Wipe()

	act, kek, err := c.installDomain(ctx, kekSecret, bkSecret)
	if err != nil {
		return nil, nil, nil, err
	}
	file, err := securitydomain.NewFile(certs, quorum, []securitydomain.Datum{
		{Tag: TagKEK, Data: kekSecret},
		{Tag: TagBackupKey, Data: bkSecret},
	})
	if err != nil {
		return nil, nil, nil, fmt.Errorf("make the security-domain file: %w", err)
	}
	act.SecurityDomain, act.OfficerCerts, act.Quorum = file, ders, int32(quorum)
	return file, act, kek, nil
}

// installDomain installs the domain secrets in this node's token, by download (makeDomain) or
// by upload (recovery): the KEK under a new label, a check record for it, and the backup key
// wrapped under it. It returns the Activate to propose, without the file and officers. The
// caller owns and wipes the secrets.
func (c *Core) installDomain(ctx context.Context, kekSecret, bkSecret secret.Bytes) (*pb.Activate, *hsm.KEK, error) {
	label := "hsmpool-kek-" + newID()[:16]
	kek, err := c.hsm.ImportKEK(ctx, label, kekSecret)
	if err != nil {
		return nil, nil, fmt.Errorf("install the domain KEK: %w", err)
	}
	check, err := c.hsm.NewKEKCheck(ctx, kek)
	if err != nil {
		return nil, nil, err
	}
	bk, err := c.hsm.Import(ctx, hsm.Spec{Type: hsm.AES, Bits: 256}, hsm.UseEncrypt|hsm.UseDecrypt, &hsm.Material{K: secret.Copy(bkSecret.Reveal())})
	if err != nil {
		return nil, nil, fmt.Errorf("import the backup key: %w", err)
	}
	defer bk.Destroy(context.WithoutCancel(ctx))
	bkWrapped, err := c.hsm.Wrap(ctx, kek, bk)
	if err != nil {
		return nil, nil, err
	}
	act := &pb.Activate{KekLabel: label, BackupKey: bkWrapped,
		KekCheck: &pb.KEKCheck{Blob: check.Blob, Iv: check.IV, Ciphertext: check.Ciphertext, Tag: check.Tag}}
	return act, kek, nil
}

func (s *sdServer) GetStatus(ctx context.Context, _ *pb.SecurityDomainStatusRequest) (*pb.SecurityDomainStatus, error) {
	if p := s.c.st.Pool(); p != nil && p.Activated {
		return &pb.SecurityDomainStatus{Activated: true, Status: "Success", StatusDetails: "The resource is active."}, nil
	}
	// No download or upload is ever in flight when this is read (both complete within their
	// call), and the Azure CLI 2.45 polls upload/pending after a download: "Success" is right.
	return &pb.SecurityDomainStatus{Status: "Success", StatusDetails: "The pool is not activated: no security domain has been downloaded yet."}, nil
}

type poolServer struct {
	pb.UnsafePoolServer
	c *Core
}

func (s *poolServer) GetStatus(ctx context.Context, _ *pb.PoolStatusRequest) (*pb.PoolStatus, error) {
	c := s.c
	st := &pb.PoolStatus{NodeId: c.clu.NodeID(), RaftState: c.clu.RaftState(), AppliedIndex: c.st.Index()}
	if p := c.st.Pool(); p != nil {
		st.Name, st.TenantId, st.Activated = p.Name, p.TenantId, p.Activated
	}
	live, _ := c.st.KeyCount()
	st.Keys = int32(live)
	return st, nil
}
