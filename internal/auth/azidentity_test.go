package auth

import (
	"context"
	"strings"
	"testing"
	"time"

	"github.com/Azure/azure-sdk-for-go/sdk/azcore"
	"github.com/Azure/azure-sdk-for-go/sdk/azcore/cloud"
	"github.com/Azure/azure-sdk-for-go/sdk/azcore/policy"
	"github.com/Azure/azure-sdk-for-go/sdk/azidentity"
)

// credential is a stock azidentity.ClientSecretCredential pointed at the fixture.
func (f *fixture) credential(t *testing.T, tenant, clientID, secret string) *azidentity.ClientSecretCredential {
	t.Helper()
	cred, err := azidentity.NewClientSecretCredential(tenant, clientID, secret, &azidentity.ClientSecretCredentialOptions{
		ClientOptions: azcore.ClientOptions{
			Cloud:     cloud.Configuration{ActiveDirectoryAuthorityHost: f.srv.URL + "/"},
			Transport: f.srv.Client(),
		},
		DisableInstanceDiscovery: true,
	})
	if err != nil {
		t.Fatal(err)
	}
	return cred
}

// getToken asks as the Key Vault challenge policy does after the pool's challenge (client-compat §2).
func getToken(ctx context.Context, cred azcore.TokenCredential, tenant string) (azcore.AccessToken, error) {
	return cred.GetToken(ctx, policy.TokenRequestOptions{Scopes: []string{testScope}, TenantID: tenant, EnableCAE: true})
}

// TestAzidentityClientSecret runs the real azidentity ClientSecretCredential (MSAL Go) against
// the handler over TLS and checks the token it gets with Validate.
func TestAzidentityClientSecret(t *testing.T) {
	f := newFixture(t)
	ctx, cancel := context.WithTimeout(t.Context(), 30*time.Second)
	defer cancel()

	cred := f.credential(t, testTenant, appClientID, f.appSecret)
	tok, err := getToken(ctx, cred, testTenant)
	if err != nil {
		t.Fatalf("GetToken: %v", err)
	}
	claims, err := f.iss.Validate(ctx, tok.Token, testResource)
	if err != nil {
		t.Fatalf("Validate: %v", err)
	}
	want := Claims{Issuer: f.iss.Issuer(), ObjectID: appObjectID, ClientID: appClientID, TenantID: testTenant, Audience: testResource,
		Expiry: f.clock.now().Truncate(time.Second).Add(DefaultLifetime)}
	if !claims.Expiry.Equal(want.Expiry) {
		t.Errorf("Expiry = %v, want %v", claims.Expiry, want.Expiry)
	}
	claims.Expiry = want.Expiry
	want.NotBefore = claims.Expiry.Add(-DefaultLifetime)
	if !claims.NotBefore.Equal(want.NotBefore) {
		t.Errorf("NotBefore = %v, want %v", claims.NotBefore, want.NotBefore)
	}
	claims.NotBefore = want.NotBefore
	if claims != want {
		t.Errorf("Validate = %+v, want %+v", claims, want)
	}
	// azidentity computes ExpiresOn from expires_in with the real clock.
	if d := time.Until(tok.ExpiresOn); d < DefaultLifetime-time.Minute || d > DefaultLifetime+time.Minute {
		t.Errorf("ExpiresOn is %v from now, want about %v", d, DefaultLifetime)
	}
	// A one-hour token is served from MSAL's cache: one token request, not one per call.
	for range 3 {
		again, err := getToken(ctx, cred, testTenant)
		if err != nil {
			t.Fatalf("GetToken again: %v", err)
		}
		if again.Token != tok.Token {
			t.Error("a second GetToken did not return the cached token")
		}
	}
	if n := f.tokenHits.Load(); n != 1 {
		t.Errorf("the credential made %d token requests, want 1", n)
	}
	// Without CAE the same credential still works (azidentity before 1.6 sends no claims).
	if _, err := cred.GetToken(ctx, policy.TokenRequestOptions{Scopes: []string{testScope}}); err != nil {
		t.Errorf("GetToken without CAE: %v", err)
	}
	f.checkNoLeak(t, tok.Token)
}

// TestAzidentityRefused checks what the real credential reports when the pool refuses it.
func TestAzidentityRefused(t *testing.T) {
	f := newFixture(t)
	tests := []struct {
		name                     string
		credTenant, askTenant    string
		clientID, secret         string
		wantInError, wantNotLeak []string
	}{
		{
			name:       "wrong secret",
			credTenant: testTenant, askTenant: testTenant, clientID: appClientID, secret: "not-the-secret-0123456789",
			wantInError: []string{"401", "invalid_client", "AADSTS7000215"},
		},
		{
			name:       "expired secret",
			credTenant: testTenant, askTenant: testTenant, clientID: oldClientID, secret: "old", // replaced below
			wantInError: []string{"401", "invalid_client", "AADSTS7000222"},
		},
		{
			name:       "unknown client",
			credTenant: testTenant, askTenant: testTenant, clientID: "33333333-2222-3333-4444-555555555555", secret: "app", // replaced below
			wantInError: []string{"401", "invalid_client", "AADSTS700016"},
		},
		{
			name:       "another tenant",
			credTenant: otherTenant, askTenant: otherTenant, clientID: appClientID, secret: "app",
			wantInError: []string{"400", "AADSTS90002", otherTenant},
		},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			ctx, cancel := context.WithTimeout(t.Context(), 30*time.Second)
			defer cancel()
			secret := tc.secret
			switch secret {
			case "app":
				secret = f.appSecret
			case "old":
				secret = f.oldSecret
			}
			tok, err := getToken(ctx, f.credential(t, tc.credTenant, tc.clientID, secret), tc.askTenant)
			if err == nil {
				t.Fatalf("GetToken succeeded with token of %d bytes, want an error", len(tok.Token))
			}
			msg := err.Error()
			t.Logf("azidentity said: %s", msg)
			for _, w := range tc.wantInError {
				if !strings.Contains(msg, w) {
					t.Errorf("error does not mention %q:\n%s", w, msg)
				}
			}
			if strings.Contains(msg, secret) {
				t.Error("the error contains the secret")
			}
		})
	}
	f.checkNoLeak(t)
}
