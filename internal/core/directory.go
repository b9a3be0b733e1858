package core

import (
	"context"
	"time"

	"github.com/hsmpool/hsmpool/internal/auth"
	"github.com/hsmpool/hsmpool/internal/fault"
	"github.com/hsmpool/hsmpool/internal/rpcerr"
	pb "github.com/hsmpool/hsmpool/proto/hsmpool/v1"
)

// NewDirectory is the identity provider's view of the pool's principals in the replicated state.
func NewDirectory(st PrincipalReader) auth.Directory { return directory{st} }

// PrincipalReader finds principals in the state.
type PrincipalReader interface {
	PrincipalByClientID(clientID string) (*pb.PrincipalRecord, bool)
}

type directory struct{ st PrincipalReader }

func (d directory) PrincipalByClientID(_ context.Context, clientID string) (auth.Principal, error) {
	p, ok := d.st.PrincipalByClientID(clientID)
	if !ok {
		return auth.Principal{}, rpcerr.New(fault.NotFound, "", "no principal has this client ID")
	}
	return principal(p), nil
}

func principal(p *pb.PrincipalRecord) auth.Principal {
	out := auth.Principal{ObjectID: p.ObjectId, ClientID: p.ClientId, DisplayName: p.DisplayName}
	for _, s := range p.Secrets {
		h := auth.SecretHash{ID: s.Id, Hash: s.Hash}
		if s.Expires != 0 {
			h.Expires = time.Unix(s.Expires, 0)
		}
		out.Secrets = append(out.Secrets, h)
	}
	for _, c := range p.Certificates {
		out.Certificates = append(out.Certificates, auth.Certificate{ID: c.Id, DER: c.Der})
	}
	return out
}

// PrincipalRecord is what the state stores of a new principal with one secret.
func PrincipalRecord(objectID, clientID, name string, h auth.SecretHash, now time.Time) *pb.PrincipalRecord {
	rec := &pb.PrincipalRecord{ObjectId: objectID, ClientId: clientID, DisplayName: name, Created: now.Unix(),
		Secrets: []*pb.SecretRecord{{Id: h.ID, Hash: h.Hash, Created: now.Unix()}}}
	if !h.Expires.IsZero() {
		rec.Secrets[0].Expires = h.Expires.Unix()
	}
	return rec
}
