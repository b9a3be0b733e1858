package auth

import (
	"bytes"
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"fmt"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/hsmpool/hsmpool/internal/fault"
)

const (
	testTenant   = "72f988bf-86f1-41af-91ab-2d7cd011db47"
	otherTenant  = "99999999-86f1-41af-91ab-2d7cd011db47"
	testResource = "https://managedhsm.localhost:8443"
	testScope    = testResource + "/.default"

	appClientID = "11111111-2222-3333-4444-555555555555"
	appObjectID = "aaaaaaaa-bbbb-cccc-dddd-eeeeeeeeeeee"
	oldClientID = "22222222-2222-3333-4444-555555555555" // has only an expired secret
	oldObjectID = "bbbbbbbb-bbbb-cccc-dddd-eeeeeeeeeeee"
)

// directory is a hand-written Directory over a map.
type directory map[string]Principal

func (d directory) PrincipalByClientID(_ context.Context, clientID string) (Principal, error) {
	p, ok := d[clientID]
	if !ok {
		return Principal{}, fmt.Errorf("principal %q: %w", clientID, fault.NotFound)
	}
	return p, nil
}

// clock is a settable clock for Now.
type clock struct{ t atomic.Pointer[time.Time] }

func newClock(t time.Time) *clock {
	c := &clock{}
	c.set(t)
	return c
}
func (c *clock) now() time.Time            { return *c.t.Load() }
func (c *clock) set(t time.Time)           { c.t.Store(&t) }
func (c *clock) advance(d time.Duration)   { c.set(c.now().Add(d)) }
func (c *clock) nowFunc() func() time.Time { return c.now }

// lockedBuffer collects log output from concurrent handlers.
type lockedBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (l *lockedBuffer) Write(p []byte) (int, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.b.Write(p)
}

func (l *lockedBuffer) String() string {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.b.String()
}

// fixture is an issuer served over real TLS (HTTP/2 enabled) on loopback.
type fixture struct {
	key       *ecdsa.PrivateKey
	clock     *clock
	iss       *Issuer
	srv       *httptest.Server
	log       *lockedBuffer
	appSecret string // valid secret of appClientID
	oldSecret string // expired secret of oldClientID
	tokenHits atomic.Int64
}

// newFixture makes the fixture with the app and old principals, and extra ones.
func newFixture(t *testing.T, extra ...Principal) *fixture {
	t.Helper()
	f := &fixture{clock: newClock(time.Now()), log: &lockedBuffer{}}
	var err error
	if f.key, err = ecdsa.GenerateKey(elliptic.P256(), rand.Reader); err != nil {
		t.Fatal(err)
	}
	app, appHash := mustSecret(t)
	_, spareHash := mustSecret(t) // an expired secret besides the valid one
	old, oldHash := mustSecret(t)
	spareHash.Expires = f.clock.now().Add(-time.Hour)
	oldHash.Expires = f.clock.now().Add(-time.Minute)
	f.appSecret, f.oldSecret = app, old
	dir := directory{
		appClientID: {ObjectID: appObjectID, ClientID: appClientID, DisplayName: "app", Secrets: []SecretHash{spareHash, appHash}},
		oldClientID: {ObjectID: oldObjectID, ClientID: oldClientID, DisplayName: "old", Secrets: []SecretHash{oldHash}},
	}
	for _, p := range extra {
		dir[p.ClientID] = p
	}

	f.srv = httptest.NewUnstartedServer(nil)
	f.srv.EnableHTTP2 = true
	f.iss, err = NewIssuer(IssuerConfig{
		AuthorityHost: "https://" + f.srv.Listener.Addr().String(),
		TenantID:      testTenant,
		Signer:        f.key,
		KeyID:         "test-key-1",
		Now:           f.clock.nowFunc(),
		Logger:        slog.New(slog.NewJSONHandler(f.log, &slog.HandlerOptions{Level: slog.LevelDebug})),
	}, dir)
	if err != nil {
		t.Fatal(err)
	}
	h := f.iss.Handler()
	f.srv.Config.Handler = http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if strings.HasSuffix(r.URL.Path, "/oauth2/v2.0/token") {
			f.tokenHits.Add(1)
		}
		h.ServeHTTP(w, r)
	})
	f.srv.StartTLS()
	t.Cleanup(f.srv.Close)
	return f
}

func mustSecret(t *testing.T) (string, SecretHash) {
	t.Helper()
	s, h, err := NewSecret()
	if err != nil {
		t.Fatal(err)
	}
	return string(s.Reveal()), h
}

// checkNoLeak fails if any of the credentials appears in the log.
func (f *fixture) checkNoLeak(t *testing.T, extra ...string) {
	t.Helper()
	logs := f.log.String()
	for _, s := range append([]string{f.appSecret, f.oldSecret}, extra...) {
		if s != "" && strings.Contains(logs, s) {
			t.Errorf("the log contains a secret or token")
		}
	}
}
