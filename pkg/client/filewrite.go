package client

import (
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"runtime"
)

// ForPrincipal returns a copy of f, the client file of a pool, for another principal of the same pool: the same
// URL, name, tenant, authority and CA, with clientID and secret.
func (f *File) ForPrincipal(clientID string, secret Secret) *File {
	g := *f
	g.ClientID, g.ClientSecret = clientID, secret
	return &g
}

// WriteFile writes f as a client file at path, readable by [ReadFile]: mode 0600, never over an existing file, and
// synced to disk. A relative CAFile is made absolute first, as ReadFile would read it relative to path's
// directory. It checks f first ([File.Validate]). If writing fails, it removes what it wrote.
//
// This is the one place where a File's secret is marshalled in the clear.
func WriteFile(path string, f *File) (err error) {
	if err := f.Validate(); err != nil {
		return fmt.Errorf("client file %s: %w", path, err)
	}
	caFile := f.CAFile
	if caFile != "" && !filepath.IsAbs(caFile) {
		if caFile, err = filepath.Abs(caFile); err != nil {
			return fmt.Errorf("client file %s: %w", path, err)
		}
	}
	// fileJSON is File with the secret as a plain string; the field order and names are File's.
	type fileJSON struct {
		URL           string `json:"url"`
		Name          string `json:"name"`
		TenantID      string `json:"tenant_id"`
		AuthorityHost string `json:"authority_host"`
		ClientID      string `json:"client_id"`
		ClientSecret  string `json:"client_secret"`
		CAFile        string `json:"ca_file"`
	}
	b, err := json.MarshalIndent(fileJSON{URL: f.URL, Name: f.Name, TenantID: f.TenantID, AuthorityHost: f.AuthorityHost,
		ClientID: f.ClientID, ClientSecret: f.ClientSecret.Reveal(), CAFile: caFile}, "", "  ")
	if err != nil {
		return fmt.Errorf("client file %s: %w", path, err)
	}
	b = append(b, '\n')
	defer clear(b) // best effort: the secret's string itself stays until it is collected
	out, err := os.OpenFile(path, os.O_WRONLY|os.O_CREATE|os.O_EXCL, 0o600)
	if err != nil {
		return fmt.Errorf("client file: %w", err) // os errors name the path; "file exists" when it does
	}
	defer func() {
		if err != nil {
			_ = os.Remove(path)
			err = fmt.Errorf("client file %s: %w", path, err)
		}
	}()
	_, err = out.Write(b)
	if err = errors.Join(err, out.Chmod(0o600), out.Sync(), out.Close()); err != nil || runtime.GOOS == "windows" {
		return err
	}
	dir, err := os.Open(filepath.Dir(path)) // sync the new directory entry too; Windows cannot sync directories
	if err != nil {
		return err
	}
	return errors.Join(dir.Sync(), dir.Close())
}
