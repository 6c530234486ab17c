package auth

import (
	"errors"
	"os"
	"path/filepath"
	"testing"
)

func TestVerify(t *testing.T) {
	c, err := NewCredentials(map[string]string{"alice": "s3cret", "bob": "pa:ss"})
	if err != nil {
		t.Fatal(err)
	}
	cases := []struct {
		u, p string
		want bool
	}{
		{"alice", "s3cret", true},
		{"bob", "pa:ss", true},
		{"alice", "s3cre", false},
		{"alice", "s3cret ", false},
		{"Alice", "s3cret", false},
		{"carol", "s3cret", false},
		{"", "", false},
		{"alice", "pa:ss", false},
		// An unknown user is compared against a dummy digest; matching it must not log in.
		{"mallory", "relayd: no such user", false},
	}
	for _, tc := range cases {
		if got := c.Verify([]byte(tc.u), []byte(tc.p)); got != tc.want {
			t.Errorf("Verify(%q,%q) = %v, want %v", tc.u, tc.p, got, tc.want)
		}
	}
	var v Verifier = c.Verify
	if !v([]byte("alice"), []byte("s3cret")) {
		t.Fatal("method value as Verifier failed")
	}
}

func TestNewCredentialsRejects(t *testing.T) {
	long := string(make([]byte, 256))
	for _, tc := range []struct {
		m    map[string]string
		want error
	}{
		{map[string]string{"": "x"}, ErrBadUser},
		{map[string]string{"a:b": "x"}, ErrBadUser},
		{map[string]string{"a\n": "x"}, ErrBadUser},
		{map[string]string{"a": ""}, ErrBadPassword},
		{map[string]string{"a": "x\r"}, ErrBadPassword},
		{map[string]string{"a": long}, ErrBadPassword},
	} {
		if _, err := NewCredentials(tc.m); !errors.Is(err, tc.want) {
			t.Errorf("NewCredentials(%q) err = %v, want %v", tc.m, err, tc.want)
		}
	}
}

func TestLoadCredentials(t *testing.T) {
	dir := t.TempDir()
	write := func(name, body string) string {
		p := filepath.Join(dir, name)
		if err := os.WriteFile(p, []byte(body), 0o600); err != nil {
			t.Fatal(err)
		}
		return p
	}
	c, err := LoadCredentials(write("ok", "# users\nalice:s3cret\r\n\nbob:a:b:c\n"))
	if err != nil {
		t.Fatal(err)
	}
	if c.Len() != 2 || !c.Verify([]byte("alice"), []byte("s3cret")) || !c.Verify([]byte("bob"), []byte("a:b:c")) {
		t.Fatalf("loaded credentials wrong: len=%d", c.Len())
	}
	if _, err := LoadCredentials(write("dup", "a:1\na:2\n")); !errors.Is(err, ErrDuplicateUser) {
		t.Errorf("dup: %v", err)
	}
	if _, err := LoadCredentials(write("syn", "nocolon\n")); !errors.Is(err, ErrSyntax) {
		t.Errorf("syntax: %v", err)
	}
	if _, err := LoadCredentials(write("empty", "a:\n")); !errors.Is(err, ErrBadPassword) {
		t.Errorf("empty password: %v", err)
	}
	if _, err := LoadCredentials(filepath.Join(dir, "missing")); !errors.Is(err, os.ErrNotExist) {
		t.Errorf("missing: %v", err)
	}
}

func BenchmarkVerify(b *testing.B) {
	c, _ := NewCredentials(map[string]string{"alice": "s3cret"})
	u, p := []byte("alice"), []byte("s3cret")
	b.ReportAllocs()
	for b.Loop() {
		if !c.Verify(u, p) {
			b.Fatal("verify failed")
		}
	}
}
