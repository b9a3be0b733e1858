// Package test holds hsmpool's integration and end-to-end tests: the ones that need more than one package in one
// process. They use real SoftHSM2 tokens, Raft on disk, multi-process clusters on loopback, the real Azure SDK as the
// client and the real Azure CLI for security-domain files, with fault injection. The architecture test, which keeps
// the import rules of DESIGN.md, lives here too.
//
// The package has no non-test code besides this comment; shared helpers for these tests go here as they arrive.
package test
