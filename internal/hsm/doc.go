// Package hsm is the only package that talks PKCS#11. It binds the pool to one token:
// it loads the module once per process, logs in once, keeps a bounded pool of sessions,
// makes and finds the domain KEK, generates, imports, wraps and unwraps keys, and runs
// every operation of the Azure Key Vault data plane under its Azure algorithm name.
//
// Key life cycle: [Pool.Generate] or [Pool.Import] makes an extractable session object,
// [Pool.Wrap] wraps it under the [KEK] with CKM_AES_KEY_WRAP_PAD, and the caller stores
// the blob and destroys the object. To use the key, [Pool.Unwrap] makes a sensitive,
// non-extractable session object from the blob; a [Cache] keeps those by key version.
//
// Where SoftHSM2 2.6.1 lacks a mechanism the operation takes another route that keeps
// the key inside the token; docs/hsm.md lists each route and why.
//
// Errors carry a [fault.Kind]: CKR_* codes are mapped in one table (errors.go), and
// the layer checks algorithm, key type, sizes and lengths before calling the token so
// that an error names what was wrong.
//
// # Concurrency
//
// A [Pool] and its [Key]s are safe for concurrent use. Every operation borrows one
// session with withSession for the whole of its PKCS#11 call sequence, so at most
// Config.Sessions calls are in flight; a caller waits for a free session at most until
// its context ends, and gets ctx.Err() unchanged. A PKCS#11 call, once made, is not
// interrupted. Session objects (keys) are visible to every session of the process, so a
// key made in one session is used from any. [Pool.Close] refuses new operations, waits for
// borrowed sessions to come back, then closes every session, which destroys all session
// objects; using a Key after Close fails with fault.Unavailable.
//
// # Security
//
// The domain KEK is a token object that can only wrap and unwrap (kekTemplate lists each
// attribute and the attack it stops); keys unwrapped under it are forced sensitive and
// non-extractable by its CKA_UNWRAP_TEMPLATE. Plaintext key material enters the token
// wrapped to a transport key ([Pool.Import], [Pool.ImportKEK]), never as an attribute value
// that the PKCS#11 binding would copy into C memory; its Go buffers are wiped. The results
// of Azure's decrypt and unwrapkey belong to the client. The KEK moves to a joining node
// only as RSA-OAEP ciphertext from C_WrapKey to a key its security officer trusted
// ([Pool.SendKEK], [TrustJoinKey], [Pool.ReceiveKEK]); the daemon never holds the SO PIN. PINs are read from a file or the environment,
// never from flags, and wiped after login. docs/hsm.md says what the token enforces and
// what an attacker with the host but not the token can do.
package hsm
