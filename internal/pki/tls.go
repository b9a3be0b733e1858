package pki

import (
	"crypto/tls"
	"fmt"
	"log/slog"
	"os"
	"sync"
	"time"
)

// reloadInterval is how often, at most, [ServerTLS] looks at its files; tests shorten it.
var reloadInterval = 10 * time.Second

// modernCipherSuites are the TLS 1.2 suites offered: ECDHE with an AEAD only. TLS 1.3 suites
// are not configurable and all acceptable. The list includes the suite HTTP/2 requires.
var modernCipherSuites = []uint16{
	tls.TLS_ECDHE_ECDSA_WITH_AES_128_GCM_SHA256,
	tls.TLS_ECDHE_ECDSA_WITH_AES_256_GCM_SHA384,
	tls.TLS_ECDHE_ECDSA_WITH_CHACHA20_POLY1305_SHA256,
	tls.TLS_ECDHE_RSA_WITH_AES_128_GCM_SHA256,
	tls.TLS_ECDHE_RSA_WITH_AES_256_GCM_SHA384,
	tls.TLS_ECDHE_RSA_WITH_CHACHA20_POLY1305_SHA256,
}

// ServerTLS returns a listener configuration serving the PEM pair in certFile (the leaf,
// optionally followed by its chain) and keyFile: TLS 1.2 or later, ECDHE-AEAD suites only,
// ALPN "h2" then "http/1.1". The pair must load now. Afterwards a handshake re-reads it when
// either file has changed (looked at no more often than every 10 s), so certificates can be
// rotated without a restart: replace both files, preferably each by an atomic rename. A pair
// that fails to load, for example because only one file has been replaced so far, is logged
// and the previous pair served until a later look succeeds.
//
// Callers add ClientAuth and ClientCAs (see [CertPool]) for mutual TLS.
func ServerTLS(certFile, keyFile string) (*tls.Config, error) {
	p, err := NewKeyPair(certFile, keyFile, reloadInterval, nil)
	if err != nil {
		return nil, err
	}
	return &tls.Config{
		MinVersion:     tls.VersionTLS12,
		CipherSuites:   modernCipherSuites,
		NextProtos:     []string{"h2", "http/1.1"},
		GetCertificate: func(*tls.ClientHelloInfo) (*tls.Certificate, error) { return p.Certificate(), nil },
	}, nil
}

// NewKeyPair loads the PEM pair in certFile and keyFile now, and returns it as a source that
// reads the files again when either has changed, looking at them at most every interval (0:
// at every call). prepare, if not nil, checks and completes each pair read (it may set Leaf
// or extend the chain); a pair that fails to load or that prepare refuses is not taken when
// it was read again: it is logged and the previous pair stays in use.
func NewKeyPair(certFile, keyFile string, interval time.Duration, prepare func(*tls.Certificate) error) (*KeyPair, error) {
	p := &KeyPair{certFile: certFile, keyFile: keyFile, interval: interval, prepare: prepare}
	if err := p.load(); err != nil {
		return nil, err
	}
	return p, nil
}

// KeyPair is a certificate and key loaded from files and reloaded when they change.
type KeyPair struct {
	certFile, keyFile string
	interval          time.Duration
	prepare           func(*tls.Certificate) error

	mu      sync.Mutex
	cert    *tls.Certificate
	stamp   [2]os.FileInfo // of certFile and keyFile when cert was loaded
	checked time.Time      // when the files were last looked at
	warned  string         // the last reload error logged, not logged again
}

// load reads the pair if it has never been read or either file has changed. It holds p.mu
// or has p to itself.
func (p *KeyPair) load() error {
	var stamp [2]os.FileInfo
	for i, name := range []string{p.certFile, p.keyFile} {
		fi, err := os.Stat(name)
		if err != nil {
			return fmt.Errorf("load tls key pair: %w", err)
		}
		stamp[i] = fi
	}
	if p.cert != nil && sameFile(stamp[0], p.stamp[0]) && sameFile(stamp[1], p.stamp[1]) {
		return nil
	}
	c, err := tls.LoadX509KeyPair(p.certFile, p.keyFile)
	if err != nil {
		return fmt.Errorf("load tls key pair %s, %s: %w", p.certFile, p.keyFile, err)
	}
	if p.prepare != nil {
		if err := p.prepare(&c); err != nil {
			return err
		}
	}
	p.cert, p.stamp = &c, stamp
	return nil
}

// sameFile reports whether a and b describe the same, unmodified file.
func sameFile(a, b os.FileInfo) bool {
	return os.SameFile(a, b) && a.ModTime().Equal(b.ModTime()) && a.Size() == b.Size()
}

// Certificate is the pair as the files hold it now (read again if they changed), or the
// previous pair while they do not hold a usable one.
func (p *KeyPair) Certificate() *tls.Certificate {
	p.mu.Lock()
	defer p.mu.Unlock()
	if now := time.Now(); now.Sub(p.checked) >= p.interval {
		p.checked = now
		if err := p.load(); err != nil {
			if msg := err.Error(); msg != p.warned {
				slog.Warn("tls key pair reload failed; using the previous pair", "err", err)
				p.warned = msg
			}
		} else {
			p.warned = ""
		}
	}
	return p.cert
}
