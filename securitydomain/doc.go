// Package securitydomain reads and writes the Azure Managed HSM security domain: the file
// that POST /securitydomain/download returns, and the restore blob that
// `az keyvault security-domain restore-blob` makes for a recovering HSM. Files made here
// go through the real Azure CLI, and the CLI's blobs open here (test/azcli_test.go).
//
// A file holds a 32-byte master key split M-of-N with Shamir's scheme over GF(257), one
// share per security officer encrypted to the officer's certificate (JWE RSA-OAEP-256 +
// A256CBC-HS512), and named secrets ("datums") each encrypted under a key derived from the
// master key with SP 800-108 (JWE dir + A256CBC-HS512). shared/spec/security-domain-format.md
// gives the format byte for byte; the tests carry its known-answer vectors.
//
// The package is pure Go and does no I/O: callers pass bytes, certificates and
// crypto.Decrypters, so the daemon can keep its exchange key in the HSM and the officers'
// CLI can run offline.
//
// # Security
//
// Opening a file or blob authenticates every datum before any is returned, so wrong,
// too few, duplicated or tampered shares give an error, never a wrong secret. The master
// key, shares and datums are held in secret.Bytes and wiped when no longer needed; that is
// best effort (go-jose keeps its own copies of content keys while it works).
package securitydomain
