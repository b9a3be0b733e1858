package softhsm

import (
	"os"
	"path/filepath"
	"strings"
	"testing"
)

func TestWriteConfig(t *testing.T) {
	dir := t.TempDir()
	conf, err := WriteConfig(dir)
	if err != nil {
		t.Fatal(err)
	}
	b, err := os.ReadFile(conf)
	if err != nil {
		t.Fatal(err)
	}
	if !strings.Contains(string(b), "directories.tokendir = "+filepath.Join(dir, "tokens")+"\n") {
		t.Errorf("config does not point at the token directory:\n%s", b)
	}
	for path, want := range map[string]os.FileMode{conf: 0o600, filepath.Join(dir, "tokens"): 0o700} {
		fi, err := os.Stat(path)
		if err != nil {
			t.Fatal(err)
		}
		if fi.Mode().Perm() != want {
			t.Errorf("%s has mode %v, want %v", path, fi.Mode().Perm(), want)
		}
	}
	// A second call keeps the file, so a restarted daemon finds its tokens.
	if err := os.WriteFile(conf, []byte("custom\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	if _, err := WriteConfig(dir); err != nil {
		t.Fatal(err)
	}
	if b, _ := os.ReadFile(conf); string(b) != "custom\n" {
		t.Errorf("WriteConfig overwrote an existing config: %q", b)
	}
}

func TestModuleOverride(t *testing.T) {
	t.Setenv(ModuleEnv, filepath.Join(t.TempDir(), "missing.so"))
	if _, err := Module(); err == nil || !strings.Contains(err.Error(), ModuleEnv) {
		t.Errorf("Module() with a missing override: err = %v, want one naming %s", err, ModuleEnv)
	}
	f := filepath.Join(t.TempDir(), "lib.so")
	if err := os.WriteFile(f, nil, 0o600); err != nil {
		t.Fatal(err)
	}
	t.Setenv(ModuleEnv, f)
	if got, err := Module(); err != nil || got != f {
		t.Errorf("Module() = %q, %v; want %q", got, err, f)
	}
}
