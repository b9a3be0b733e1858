// Package core holds the pool's use cases: the key lifecycle, the crypto operations and the
// security domain, served as the gRPC API of proto/hsmpool/v1. It owns authentication,
// authorization and validation, as interceptors in front of every call, so that the REST gateway,
// which reaches the core only through gRPC, cannot bypass them.
//
// Writes follow one pattern: the core does the HSM work first (generate, wrap), proposes a
// Command carrying the result through the Replicator, and answers from the replicated state once
// the command is applied on this node, so a caller reads its own write at once. The state never
// sees plaintext key material; the HSM never sees the state.
package core

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"log/slog"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/metadata"

	"github.com/hsmpool/hsmpool/internal/audit"
	"github.com/hsmpool/hsmpool/internal/auth"
	"github.com/hsmpool/hsmpool/internal/authz"
	"github.com/hsmpool/hsmpool/internal/fault"
	"github.com/hsmpool/hsmpool/internal/hsm"
	"github.com/hsmpool/hsmpool/internal/rpcerr"
	"github.com/hsmpool/hsmpool/internal/secret"
	pb "github.com/hsmpool/hsmpool/proto/hsmpool/v1"
)

// Replicator proposes a command to the pool's replicated log and returns once it is applied on
// this node, with the error the state returned for it (nil on success).
type Replicator interface {
	Propose(ctx context.Context, cmd *pb.Command) error
}

// Syncer is a Replicator whose node's state may lag behind the leader's (a follower's): Sync
// returns once it holds every write acknowledged before the call.
type Syncer interface {
	Sync(ctx context.Context) error
}

// StateReader is what the core reads of the replicated state. Records it returns are shared and
// must not be modified.
type StateReader interface {
	Pool() *pb.PoolRecord
	Key(name string) (*pb.KeyRecord, error)
	DeletedKey(name string) (*pb.KeyRecord, error)
	Version(name, version string) (*pb.KeyRecord, *pb.KeyVersion, error)
	List(deleted bool, after string, n int) ([]*pb.KeyRecord, bool)
	Principal(objectID string) (*pb.PrincipalRecord, bool)
	PrincipalByClientID(clientID string) (*pb.PrincipalRecord, bool)
	Principals() []*pb.PrincipalRecord
	RoleDefinition(name string) (*pb.RoleDefinition, bool)
	RoleDefinitions() []*pb.RoleDefinition
	RoleAssignment(name string) (*pb.RoleAssignment, bool)
	RoleAssignments() []*pb.RoleAssignment
	AssignmentsOf(principalID string) []*pb.RoleAssignment
	DueRotations(now time.Time) []string
	ExpiredDeletions(now time.Time) []string
	KeyCount() (live, deleted int)
	Index() uint64
	// MarshalSnapshot returns a consistent snapshot of the whole state (a pb.State).
	MarshalSnapshot() ([]byte, error)
}

// HSM is the crypto the core needs from its node's token.
type HSM interface {
	Generate(ctx context.Context, spec hsm.Spec, u hsm.Usage) (*hsm.Key, error)
	Import(ctx context.Context, spec hsm.Spec, u hsm.Usage, m *hsm.Material) (*hsm.Key, error)
	Wrap(ctx context.Context, kek *hsm.KEK, k *hsm.Key) ([]byte, error)
	Unwrap(ctx context.Context, kek *hsm.KEK, blob []byte, spec hsm.Spec, u hsm.Usage, pub any) (*hsm.Key, error)
	Sign(ctx context.Context, k *hsm.Key, alg hsm.Alg, value []byte) ([]byte, error)
	Verify(ctx context.Context, k *hsm.Key, alg hsm.Alg, digest, sig []byte) (bool, error)
	Encrypt(ctx context.Context, k *hsm.Key, alg hsm.Alg, plaintext, iv, aad []byte) (hsm.Ciphertext, error)
	Decrypt(ctx context.Context, k *hsm.Key, alg hsm.Alg, ct hsm.Ciphertext, aad []byte) ([]byte, error)
	WrapKey(ctx context.Context, k *hsm.Key, alg hsm.Alg, value []byte) ([]byte, error)
	UnwrapKey(ctx context.Context, k *hsm.Key, alg hsm.Alg, wrapped []byte) ([]byte, error)
	Random(ctx context.Context, n int) ([]byte, error)
	ImportKEK(ctx context.Context, label string, value secret.Bytes) (*hsm.KEK, error)
	FindKEK(ctx context.Context, label string) (*hsm.KEK, error)
	NewKEKCheck(ctx context.Context, kek *hsm.KEK) (hsm.KEKCheck, error)
	VerifyKEK(ctx context.Context, kek *hsm.KEK, c hsm.KEKCheck) error
	FindExchangeKey(ctx context.Context, label string) (*hsm.ExchangeKey, error)
	DestroyExchangeKey(ctx context.Context, label string) error
}

// TokenValidator checks access tokens (auth.Issuer).
type TokenValidator interface {
	Validate(ctx context.Context, token string, audiences ...string) (auth.Claims, error)
}

// ClusterInfo reports this node's place in the cluster, for the status call.
type ClusterInfo interface {
	NodeID() string
	RaftState() string
	IsLeader() bool
}

// Membership is the pool's node membership as the daemon runs it: the status of every node,
// gathered over the node API, and the removal of a node through the leader.
type Membership interface {
	Status(ctx context.Context) (*pb.ClusterStatus, error)
	RemoveNode(ctx context.Context, nodeID string) error
}

// Config wires a Core.
type Config struct {
	HSM        HSM
	Cache      *hsm.Cache
	Replicator Replicator
	State      StateReader
	Tokens     TokenValidator
	Cluster    ClusterInfo
	// Membership, when set, serves Cluster.GetStatus and RemoveNode; nil: a single node without
	// a node API, whose status is its own and which has no node to remove.
	Membership Membership
	// Audiences are the token audiences the data plane accepts: its resource(s).
	Audiences []string
	// Audit, when set, gets one entry per authenticated call.
	Audit Auditor
	// OpenBackupStore opens a full backup's location; nil: internal/blobstore.
	OpenBackupStore func(uri, token string) (BackupStore, error)
	// CAFingerprint is the SHA-256 of the pool CA's certificate (DER), which join tokens carry;
	// nil: this node makes no join tokens.
	CAFingerprint *[32]byte
	// Now is the clock; nil: time.Now.
	Now    func() time.Time
	Logger *slog.Logger
}

// Core implements the gRPC services. Create it with New and register it with Register.
type Core struct {
	hsm     HSM
	cache   *hsm.Cache
	repl    Replicator
	st      StateReader
	tokens  TokenValidator
	clu     ClusterInfo
	members Membership
	aud     []string
	now     func() time.Time
	log     *slog.Logger
	auditor Auditor

	caFingerprint *[32]byte

	openBackupStore func(uri, token string) (BackupStore, error)
	jobs            jobs // full backup and restore jobs of this node

	kek      atomic.Pointer[hsm.KEK]
	activate sync.Mutex // one activation at a time
	upload   uploadState
}

// New checks cfg and returns a Core. Call Resume before serving.
func New(cfg Config) (*Core, error) {
	if cfg.HSM == nil || cfg.Cache == nil || cfg.Replicator == nil || cfg.State == nil || cfg.Tokens == nil || cfg.Cluster == nil {
		return nil, errors.New("core: HSM, Cache, Replicator, State, Tokens and Cluster are required")
	}
	if len(cfg.Audiences) == 0 {
		return nil, errors.New("core: at least one audience is required")
	}
	c := &Core{hsm: cfg.HSM, cache: cfg.Cache, repl: cfg.Replicator, st: cfg.State, tokens: cfg.Tokens,
		clu: cfg.Cluster, members: cfg.Membership, aud: cfg.Audiences, now: cfg.Now, log: cfg.Logger, auditor: cfg.Audit, openBackupStore: cfg.OpenBackupStore,
		caFingerprint: cfg.CAFingerprint}
	if c.now == nil {
		c.now = time.Now
	}
	if c.log == nil {
		c.log = slog.New(slog.DiscardHandler)
	}
	return c, nil
}

// Register registers the core's services on s. The server must be built with Interceptor.
func (c *Core) Register(s grpc.ServiceRegistrar) {
	pb.RegisterKeysServer(s, &keysServer{c: c})
	pb.RegisterSecurityDomainServer(s, &sdServer{c: c})
	pb.RegisterPoolServer(s, &poolServer{c: c})
	pb.RegisterAccessServer(s, &accessServer{c: c})
	pb.RegisterPrincipalsServer(s, &principalsServer{c: c})
	pb.RegisterBackupServer(s, &backupServer{c: c})
	pb.RegisterClusterServer(s, &clusterServer{c: c})
}

// Resume finds the domain KEK of an activated pool in this node's token and checks it against
// the pool's KEK check record, so that a token whose KEK was replaced is refused at start-up
// rather than producing keys no other node can use. On a pool not yet activated it does nothing.
func (c *Core) Resume(ctx context.Context) error {
	p := c.st.Pool()
	if p == nil || !p.Activated {
		return nil
	}
	kek, err := c.hsm.FindKEK(ctx, p.KekLabel)
	if err != nil {
		return fmt.Errorf("find the domain KEK %q in this node's token: %w", p.KekLabel, err)
	}
	chk := p.KekCheck
	if err := c.hsm.VerifyKEK(ctx, kek, hsm.KEKCheck{Blob: chk.GetBlob(), IV: chk.GetIv(), Ciphertext: chk.GetCiphertext(), Tag: chk.GetTag()}); err != nil {
		return fmt.Errorf("the domain KEK in this node's token does not match the pool's security domain: %w", err)
	}
	c.kek.Store(kek)
	return nil
}

// caller is the authenticated principal of a call.
type caller struct {
	claims auth.Claims
	name   string // display name; empty for principals of external issuers
}

type callerKey struct{}

// Auditor records one entry per call (internal/audit.Log).
type Auditor interface {
	Record(e audit.Entry) error
}

// Interceptor authenticates and authorizes every call, validates its request, audits it, and
// turns errors into statuses with Azure codes. Authorization is the role assignments of the
// caller in the request's scope (internal/authz): the rule of each method names its data action.
func (c *Core) Interceptor(ctx context.Context, req any, info *grpc.UnaryServerInfo, handler grpc.UnaryHandler) (any, error) {
	start := c.now()
	reqID := firstMD(ctx, "x-ms-request-id")
	rule, known := authz.RuleFor(info.FullMethod)
	a := access{rule: rule}
	audited := known && !rule.Public()
	if audited {
		a.scope = rule.Scope(req)
	}
	resp, err := c.intercept(ctx, req, info, handler, known, &a)
	if audited {
		c.audit(ctx, start, reqID, info.FullMethod, &a, req, err)
	}
	if err != nil {
		k := fault.Of(err)
		lvl := slog.LevelDebug
		if k == fault.Internal || k == fault.HSMFailure {
			lvl = slog.LevelError
		}
		c.log.Log(ctx, lvl, "call failed", "method", info.FullMethod, "request_id", reqID, "kind", k.String(), "err", err, "duration", c.now().Sub(start))
		return nil, rpcerr.Status(err)
	}
	return resp, nil
}

// access is what the interceptor learns of a call: its rule, the scope it is checked at, and who
// the caller is once authenticated.
type access struct {
	rule  authz.Rule
	scope string
	who   caller
}

func (c *Core) intercept(ctx context.Context, req any, info *grpc.UnaryServerInfo, handler grpc.UnaryHandler, known bool, a *access) (any, error) {
	if !known {
		// A method without a rule is a bug caught by authz's tests; refuse rather than allow.
		return nil, fmt.Errorf("method %s has no authorization rule: %w", info.FullMethod, fault.Internal)
	}
	if a.rule.Public() {
		return handler(ctx, req)
	}
	var err error
	if a.who, err = c.authenticate(ctx); err != nil {
		return nil, err
	}
	if err := authz.Check(c.st, c.st.AssignmentsOf(a.who.claims.ObjectID), a.rule.Action, a.scope); err != nil {
		return nil, err
	}
	if err := validate(req); err != nil {
		return nil, err
	}
	ctx = context.WithValue(ctx, callerKey{}, a.who)
	if strings.HasPrefix(info.FullMethod, "/"+pb.Keys_ServiceDesc.ServiceName+"/") {
		ready, err := c.kekReady(ctx)
		if err != nil {
			return nil, err
		}
		if !ready {
			return nil, &rpcerr.Error{Kind: fault.Conflict, Code: "Conflict", Inner: "PoolNotActivated",
				Msg: "the pool is not activated: download its security domain first (hsmpool sd download, or az keyvault security-domain download)"}
		}
	}
	return handler(ctx, req)
}

// kekReady reports whether this node holds the domain KEK. When the state says the pool is
// activated but the KEK is not loaded, it runs Resume first: a follower restarted on its data
// directory replays its log, and Raft counts the entries applied once it has handed them to the
// state, so the daemon's Resume can run after the pool was made and before its activation was
// applied; the node then refused every key operation with PoolNotActivated until it was
// restarted (seen by TestCluster3 under load).
func (c *Core) kekReady(ctx context.Context) (bool, error) {
	if c.kek.Load() != nil {
		return true, nil
	}
	if p := c.st.Pool(); p == nil || !p.Activated {
		return false, nil
	}
	c.activate.Lock()
	defer c.activate.Unlock()
	if c.kek.Load() == nil {
		if err := c.Resume(ctx); err != nil {
			c.log.Error("the pool is activated, but this node cannot use its domain KEK", "err", err)
			return false, rpcerr.New(fault.Internal, "", "This node cannot use the pool's domain KEK: %v", err)
		}
	}
	return c.kek.Load() != nil, nil
}

// authenticate checks the call's bearer token. A token of the pool's own issuer must belong to a
// principal that still exists; a token of a trusted external issuer is its own proof, and its
// object ID is the principal of role assignments.
func (c *Core) authenticate(ctx context.Context) (caller, error) {
	h := firstMD(ctx, "authorization")
	scheme, token, ok := strings.Cut(h, " ")
	if !ok || !strings.EqualFold(scheme, "Bearer") || token == "" {
		return caller{}, rpcerr.New(fault.Unauthorized, "Unauthorized", "AKV10000: Request is missing a Bearer or PoP token.")
	}
	claims, err := c.tokens.Validate(ctx, strings.TrimSpace(token), c.aud...)
	if err != nil {
		return caller{}, rpcerr.New(fault.Unauthorized, "Unauthorized", "AKV10022: Invalid token: %v", err)
	}
	if claims.External {
		// An external issuer must not speak for the pool's own principals: it would inherit
		// their role assignments.
		if _, taken := c.st.Principal(claims.ObjectID); taken {
			return caller{}, rpcerr.New(fault.Unauthorized, "Unauthorized", "AKV10022: Invalid token: the oid of a token from %s is a principal of this pool's own directory", claims.Issuer)
		}
		return caller{claims: claims}, nil
	}
	p, ok := c.st.Principal(claims.ObjectID)
	if !ok {
		return caller{}, rpcerr.New(fault.Unauthorized, "Unauthorized", "AKV10032: the token's principal %s does not exist in this pool", claims.ObjectID)
	}
	return caller{claims: claims, name: p.DisplayName}, nil
}

// audit records one call. Key material and tokens never reach the entry: only names, IDs and
// outcomes.
func (c *Core) audit(ctx context.Context, start time.Time, reqID, method string, a *access, req any, err error) {
	if c.auditor == nil {
		return
	}
	e := audit.Entry{Time: start, RequestID: reqID, Principal: a.who.claims.ObjectID, PrincipalName: a.who.name, ClientIP: firstMD(ctx, "x-client-ip"),
		Operation: method[strings.LastIndexByte(method, '/')+1:], Action: a.rule.Action.String(), Scope: a.scope,
		Outcome: audit.OutcomeSuccess, Status: 200, Duration: c.now().Sub(start).Microseconds()}
	if n, ok := req.(interface{ GetName() string }); ok {
		e.Key = n.GetName()
	}
	if v, ok := req.(interface{ GetVersion() string }); ok {
		e.Version = v.GetVersion()
	}
	if err != nil {
		h := rpcerr.ToHTTP(rpcerr.Status(err))
		e.Status, e.ErrorCode, e.Outcome = h.Status, h.Code, audit.OutcomeFailed
		if h.Status == 401 || h.Status == 403 {
			e.Outcome = audit.OutcomeDenied
		}
	}
	if aerr := c.auditor.Record(e); aerr != nil {
		c.log.Log(ctx, slog.LevelError, "audit record failed", "request_id", reqID, "err", aerr)
	}
}

// firstMD returns the first value of the incoming metadata key, without the copy of the whole
// metadata that FromIncomingContext makes (twice a call, token included).
func firstMD(ctx context.Context, key string) string {
	if v := metadata.ValueFromIncomingContext(ctx, key); len(v) > 0 {
		return v[0]
	}
	return ""
}

// propose sends one command with a fresh ID and the current time.
func (c *Core) propose(ctx context.Context, now time.Time, cmd *pb.Command) error {
	cmd.Id = newID()
	cmd.Time = now.Unix()
	return c.repl.Propose(ctx, cmd)
}

// newID returns 32 lowercase hex digits: the form of Azure key versions.
func newID() string {
	var b [16]byte
	if _, err := rand.Read(b[:]); err != nil {
		panic(err) // crypto/rand never fails on supported platforms
	}
	return hex.EncodeToString(b[:])
}

// lookForWrite runs look, a lookup in the local state that a write needs, and when it finds
// nothing on a node whose state may lag (a follower: a key another node created a moment ago
// may not be here yet), catches up with the leader once and runs it again. The state that
// applies the write checks everything again; this keeps a follower from answering 404 for a
// key the pool has.
func (c *Core) lookForWrite(ctx context.Context, look func() error) error {
	err := look()
	s, ok := c.repl.(Syncer)
	if err == nil || !ok || !errors.Is(err, fault.NotFound) {
		return err
	}
	if serr := s.Sync(ctx); serr != nil {
		return serr
	}
	return look()
}
