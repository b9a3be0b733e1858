package core

import (
	"context"
	"crypto/x509"
	"strings"
	"unicode/utf8"

	"github.com/google/uuid"

	"github.com/hsmpool/hsmpool/internal/auth"
	"github.com/hsmpool/hsmpool/internal/fault"
	"github.com/hsmpool/hsmpool/internal/rpcerr"
	pb "github.com/hsmpool/hsmpool/proto/hsmpool/v1"
)

// principalsServer manages the service principals of the pool's identity provider. Secrets are
// made here and shown once; the state keeps only their hashes.
type principalsServer struct {
	pb.UnsafePrincipalsServer
	c *Core
}

// maxDisplayName bounds a principal's display name.
const maxDisplayName = 256

func errPrincipalNotFound(id string) error {
	return rpcerr.New(fault.NotFound, "PrincipalNotFound", "No principal has the object or client ID %s.", trunc(id))
}

// find returns the principal with object or client ID id.
func (s *principalsServer) find(id string) (*pb.PrincipalRecord, error) {
	id = strings.ToLower(id)
	if p, ok := s.c.st.Principal(id); ok {
		return p, nil
	}
	if p, ok := s.c.st.PrincipalByClientID(id); ok {
		return p, nil
	}
	return nil, errPrincipalNotFound(id)
}

// principalView is what the API shows of a principal: never a secret's hash.
func principalView(p *pb.PrincipalRecord) *pb.Principal {
	out := &pb.Principal{ObjectId: p.ObjectId, ClientId: p.ClientId, DisplayName: p.DisplayName, Created: p.Created}
	for _, sec := range p.Secrets {
		out.Credentials = append(out.Credentials, &pb.Credential{Id: sec.Id, Type: "secret", Expires: sec.Expires, Created: sec.Created})
	}
	for _, cr := range p.Certificates {
		v := &pb.Credential{Id: cr.Id, Type: "certificate", Thumbprint: auth.CertificateThumbprint(cr.Der), Created: cr.Created}
		if cert, err := x509.ParseCertificate(cr.Der); err == nil {
			v.Subject = cert.Subject.String()
			v.Expires = cert.NotAfter.Unix()
		}
		out.Credentials = append(out.Credentials, v)
	}
	return out
}

// newSecret makes a client secret expiring at expires (Unix seconds, 0: never) and the record
// the state keeps of it.
func (c *Core) newSecret(expires, now int64) (string, *pb.SecretRecord, error) {
	if expires != 0 && expires <= now {
		return "", nil, bad("The secret's expiry must be in the future.")
	}
	sec, h, err := auth.NewSecret()
	if err != nil {
		return "", nil, err
	}
	text := string(sec.Reveal())
	sec.Wipe()
	return text, &pb.SecretRecord{Id: h.ID, Hash: h.Hash, Expires: expires, Created: now}, nil
}

func (s *principalsServer) CreatePrincipal(ctx context.Context, r *pb.CreatePrincipalRequest) (*pb.PrincipalWithSecret, error) {
	if r.DisplayName == "" || len(r.DisplayName) > maxDisplayName || !utf8.ValidString(r.DisplayName) {
		return nil, bad("The displayName is required: 1 to %d characters.", maxDisplayName)
	}
	c := s.c
	now := c.now()
	rec := &pb.PrincipalRecord{ObjectId: uuid.NewString(), ClientId: uuid.NewString(), DisplayName: r.DisplayName, Created: now.Unix()}
	out := &pb.PrincipalWithSecret{}
	if !r.NoSecret {
		text, sec, err := c.newSecret(r.SecretExpires, now.Unix())
		if err != nil {
			return nil, err
		}
		rec.Secrets = []*pb.SecretRecord{sec}
		out.SecretId, out.Secret = sec.Id, text
	}
	if err := c.propose(ctx, now, &pb.Command{Op: &pb.Command_PutPrincipal{PutPrincipal: &pb.PutPrincipal{Principal: rec}}}); err != nil {
		return nil, err
	}
	p, err := s.find(rec.ObjectId)
	if err != nil {
		return nil, err
	}
	out.Principal = principalView(p)
	return out, nil
}

func (s *principalsServer) ListPrincipals(context.Context, *pb.ListPrincipalsRequest) (*pb.PrincipalList, error) {
	out := &pb.PrincipalList{}
	for _, p := range s.c.st.Principals() {
		out.Principals = append(out.Principals, principalView(p))
	}
	return out, nil
}

func (s *principalsServer) GetPrincipal(_ context.Context, r *pb.PrincipalRef) (*pb.Principal, error) {
	p, err := s.find(r.ObjectId)
	if err != nil {
		return nil, err
	}
	return principalView(p), nil
}

func (s *principalsServer) DeletePrincipal(ctx context.Context, r *pb.PrincipalRef) (*pb.Principal, error) {
	p, err := s.find(r.ObjectId)
	if err != nil {
		return nil, err
	}
	c := s.c
	if err := c.propose(ctx, c.now(), &pb.Command{Op: &pb.Command_DeletePrincipal{DeletePrincipal: &pb.DeletePrincipal{ObjectId: p.ObjectId}}}); err != nil {
		return nil, err
	}
	return principalView(p), nil
}

func (s *principalsServer) AddSecret(ctx context.Context, r *pb.AddSecretRequest) (*pb.PrincipalWithSecret, error) {
	p, err := s.find(r.ObjectId)
	if err != nil {
		return nil, err
	}
	c := s.c
	now := c.now()
	text, sec, err := c.newSecret(r.Expires, now.Unix())
	if err != nil {
		return nil, err
	}
	cmd := &pb.AddCredential{ObjectId: p.ObjectId, Credential: &pb.AddCredential_Secret{Secret: sec}}
	if err := c.propose(ctx, now, &pb.Command{Op: &pb.Command_AddCredential{AddCredential: cmd}}); err != nil {
		return nil, err
	}
	if p, err = s.find(p.ObjectId); err != nil {
		return nil, err
	}
	return &pb.PrincipalWithSecret{Principal: principalView(p), SecretId: sec.Id, Secret: text}, nil
}

func (s *principalsServer) AddCertificate(ctx context.Context, r *pb.AddCertificateRequest) (*pb.Principal, error) {
	p, err := s.find(r.ObjectId)
	if err != nil {
		return nil, err
	}
	cert, err := auth.ParseCertificate(r.Certificate)
	if err != nil {
		return nil, bad("The certificate cannot be a credential: %v.", err)
	}
	c := s.c
	now := c.now()
	if !now.Before(cert.NotAfter) {
		return nil, bad("The certificate expired on %s.", cert.NotAfter.UTC().Format("2006-01-02T15:04:05Z"))
	}
	// The thumbprint is the credential's ID, so that a certificate is added once.
	rec := &pb.CertificateRecord{Id: auth.CertificateThumbprint(r.Certificate), Der: r.Certificate, Created: now.Unix()}
	cmd := &pb.AddCredential{ObjectId: p.ObjectId, Credential: &pb.AddCredential_Certificate{Certificate: rec}}
	if err := c.propose(ctx, now, &pb.Command{Op: &pb.Command_AddCredential{AddCredential: cmd}}); err != nil {
		return nil, err
	}
	return s.GetPrincipal(ctx, &pb.PrincipalRef{ObjectId: p.ObjectId})
}

func (s *principalsServer) RemoveCredential(ctx context.Context, r *pb.RemoveCredentialRequest) (*pb.Principal, error) {
	p, err := s.find(r.ObjectId)
	if err != nil {
		return nil, err
	}
	c := s.c
	cmd := &pb.RemoveCredential{ObjectId: p.ObjectId, CredentialId: strings.ToLower(r.CredentialId)}
	if err := c.propose(ctx, c.now(), &pb.Command{Op: &pb.Command_RemoveCredential{RemoveCredential: cmd}}); err != nil {
		return nil, err
	}
	return s.GetPrincipal(ctx, &pb.PrincipalRef{ObjectId: p.ObjectId})
}
