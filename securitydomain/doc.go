// Package securitydomain implements the Azure Managed HSM security domain as the Azure CLI reads and writes it, byte
// for byte (spec/security-domain-format.md):
//
//   - Shamir secret sharing of the 32-byte master key, M of N, byte by byte over GF(257);
//   - the share JWEs (RSA-OAEP-256 with A256CBC-HS512), one per security officer certificate;
//   - the SP 800-108 counter-mode KDF with HMAC-SHA512 that derives each datum's key from the master key, and the
//     "dir" A256CBC-HS512 JWEs of the data (the domain secrets);
//   - the security-domain file returned by a download, and the restore blob an officer builds offline from that file
//     and M private keys, wrapped to the pool's exchange (transfer) key;
//   - the checks the ceremony makes: certificate count, quorum, key sizes.
//
// It is pure Go with no I/O besides what its caller passes in, so both hsmpoold and the hsmpool CLI use it; the CLI
// builds restore blobs offline with it.
//
// The package is empty until the security-domain issue.
package securitydomain
