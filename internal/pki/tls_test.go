package pki

import (
	"crypto/tls"
	"crypto/x509"
	"errors"
	"net"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

// serveTLS accepts connections on a loopback listener and completes a TLS handshake on each
// with cfg. It returns the listener's address.
func serveTLS(t *testing.T, cfg *tls.Config) string {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	done := make(chan struct{})
	t.Cleanup(func() { ln.Close(); <-done })
	go func() {
		defer close(done)
		for {
			conn, err := ln.Accept()
			if err != nil {
				return
			}
			go func() {
				defer conn.Close()
				_ = conn.SetDeadline(time.Now().Add(5 * time.Second))
				_ = tls.Server(conn, cfg).Handshake()
			}()
		}
	}()
	return ln.Addr().String()
}

// issuePair issues a server certificate for localhost and 127.0.0.1 and writes it to
// certFile and keyFile, replacing them atomically by rename.
func issuePair(t *testing.T, ca *CA, certFile, keyFile string) *x509.Certificate {
	t.Helper()
	certPEM, keyPEM, err := ca.Issue(LeafOptions{Names: []string{"localhost", "127.0.0.1"}, Server: true, Validity: time.Hour})
	if err != nil {
		t.Fatal(err)
	}
	for file, data := range map[string][]byte{certFile: certPEM, keyFile: keyPEM} {
		tmp := file + ".tmp"
		if err := WriteFile(tmp, data, 0o600); err != nil {
			t.Fatal(err)
		}
		if err := os.Rename(tmp, file); err != nil {
			t.Fatal(err)
		}
	}
	return parseLeaf(t, certPEM)
}

func TestServerTLS(t *testing.T) {
	old := reloadInterval
	reloadInterval = 20 * time.Millisecond
	t.Cleanup(func() { reloadInterval = old })

	dir := t.TempDir()
	certFile, keyFile := filepath.Join(dir, "server.pem"), filepath.Join(dir, "server-key.pem")
	ca, err := NewCA("hsmpool test CA", time.Hour, time.Time{})
	if err != nil {
		t.Fatal(err)
	}
	first := issuePair(t, ca, certFile, keyFile)
	cfg, err := ServerTLS(certFile, keyFile)
	if err != nil {
		t.Fatal(err)
	}
	addr := serveTLS(t, cfg)
	roots := x509.NewCertPool()
	roots.AddCert(ca.Cert)

	dial := func(c *tls.Config) (tls.ConnectionState, error) {
		conn, err := tls.DialWithDialer(&net.Dialer{Timeout: 5 * time.Second}, "tcp", addr, c)
		if err != nil {
			return tls.ConnectionState{}, err
		}
		defer conn.Close()
		return conn.ConnectionState(), nil
	}
	client := func(maxVersion uint16, protos ...string) *tls.Config {
		return &tls.Config{RootCAs: roots, ServerName: "localhost", MaxVersion: maxVersion, NextProtos: protos}
	}

	t.Run("handshake", func(t *testing.T) {
		for _, tc := range []struct {
			name       string
			maxVersion uint16
			protos     []string
			wantProto  string
		}{
			{"TLS 1.3 h2", 0, []string{"h2", "http/1.1"}, "h2"},
			{"TLS 1.2 h2", tls.VersionTLS12, []string{"h2", "http/1.1"}, "h2"},
			{"HTTP/1.1 only", 0, []string{"http/1.1"}, "http/1.1"},
		} {
			t.Run(tc.name, func(t *testing.T) {
				st, err := dial(client(tc.maxVersion, tc.protos...))
				if err != nil {
					t.Fatal(err)
				}
				if st.NegotiatedProtocol != tc.wantProto {
					t.Errorf("protocol %q, want %q", st.NegotiatedProtocol, tc.wantProto)
				}
				if st.Version < tls.VersionTLS12 {
					t.Errorf("version %#x below TLS 1.2", st.Version)
				}
				if !st.PeerCertificates[0].Equal(first) {
					t.Error("served certificate is not the one on disk")
				}
			})
		}
	})

	t.Run("refuses TLS 1.1", func(t *testing.T) {
		c := client(tls.VersionTLS11)
		c.MinVersion = tls.VersionTLS10
		if _, err := dial(c); err == nil {
			t.Error("TLS 1.1 handshake succeeded")
		}
	})

	t.Run("refuses CBC suites", func(t *testing.T) {
		c := client(tls.VersionTLS12)
		c.CipherSuites = []uint16{tls.TLS_ECDHE_ECDSA_WITH_AES_128_CBC_SHA}
		if _, err := dial(c); err == nil {
			t.Error("CBC handshake succeeded")
		}
	})

	// waitFor dials until the server presents want, failing after five seconds.
	waitFor := func(t *testing.T, want *x509.Certificate) {
		t.Helper()
		deadline := time.Now().Add(5 * time.Second)
		for {
			st, err := dial(client(0))
			if err == nil && st.PeerCertificates[0].Equal(want) {
				return
			}
			if time.Now().After(deadline) {
				t.Fatalf("server did not pick up the new certificate (last error %v)", err)
			}
			time.Sleep(10 * time.Millisecond)
		}
	}

	t.Run("reloads a replaced pair", func(t *testing.T) {
		second := issuePair(t, ca, certFile, keyFile)
		waitFor(t, second)
	})

	t.Run("keeps serving through a broken pair", func(t *testing.T) {
		current := cfg.GetCertificate // the served pair is whatever the last subtest installed
		before, err := current(&tls.ClientHelloInfo{})
		if err != nil {
			t.Fatal(err)
		}
		if err := os.Remove(keyFile); err != nil {
			t.Fatal(err)
		}
		if err := WriteFile(keyFile, []byte("not a key"), 0o600); err != nil {
			t.Fatal(err)
		}
		for range 5 {
			time.Sleep(reloadInterval)
			st, err := dial(client(0))
			if err != nil {
				t.Fatalf("handshake with a broken pair on disk: %v", err)
			}
			if !st.PeerCertificates[0].Equal(before.Leaf) {
				t.Fatal("server changed certificate to a broken pair")
			}
		}
		third := issuePair(t, ca, certFile, keyFile)
		waitFor(t, third)
	})
}

func TestServerTLSRefusesBadPair(t *testing.T) {
	dir := t.TempDir()
	ca := newTestCA(t)
	certPEM, keyPEM, err := ca.Issue(LeafOptions{Names: []string{"localhost"}, Server: true, Validity: time.Hour, Now: testNow})
	if err != nil {
		t.Fatal(err)
	}
	_, otherKey, err := ca.Issue(LeafOptions{Names: []string{"localhost"}, Server: true, Validity: time.Hour, Now: testNow})
	if err != nil {
		t.Fatal(err)
	}
	certFile := filepath.Join(dir, "cert.pem")
	if err := WriteFile(certFile, certPEM, 0o644); err != nil {
		t.Fatal(err)
	}
	for _, tc := range []struct {
		name string
		key  []byte
	}{
		{"mismatched key", otherKey},
		{"garbage key", keyPEM[:len(keyPEM)/2]},
	} {
		t.Run(tc.name, func(t *testing.T) {
			keyFile := filepath.Join(t.TempDir(), "key.pem")
			if err := WriteFile(keyFile, tc.key, 0o600); err != nil {
				t.Fatal(err)
			}
			_, err := ServerTLS(certFile, keyFile)
			if err == nil {
				t.Fatal("ServerTLS succeeded")
			}
			assertNoKeyMaterial(t, err, keyPEM)
			assertNoKeyMaterial(t, err, otherKey)
		})
	}
	if _, err := ServerTLS(certFile, filepath.Join(dir, "missing.pem")); !errors.Is(err, os.ErrNotExist) {
		t.Errorf("missing key: %v", err)
	}
	if _, err := ServerTLS(certFile, certFile); err == nil || strings.Contains(err.Error(), "BEGIN") {
		t.Errorf("certificate as key: %v", err)
	}
}
