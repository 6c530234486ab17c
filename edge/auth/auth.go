package auth

import (
	"bufio"
	"bytes"
	"crypto/sha256"
	"crypto/subtle"
	"errors"
	"fmt"
	"os"
)

// Verifier reports whether user and pass are valid credentials. It must not
// retain the slices (they alias the caller's handshake buffer), must not
// block, and should run in constant time with respect to the password.
type Verifier func(user, pass []byte) bool

var (
	// ErrBadUser means a user name is empty, longer than MaxLen, or contains ':' or a control byte.
	ErrBadUser = errors.New("auth: invalid user name")
	// ErrBadPassword means a password is empty, longer than MaxLen, or contains a control byte.
	ErrBadPassword = errors.New("auth: invalid password")
	// ErrDuplicateUser means a credentials file names the same user twice.
	ErrDuplicateUser = errors.New("auth: duplicate user")
	// ErrSyntax means a credentials file line is not "user:password".
	ErrSyntax = errors.New("auth: bad credentials line")
)

// MaxLen is the longest user name or password: RFC 1929 carries each in a
// field with a one-byte length, so a longer one could never be sent over SOCKS5.
const MaxLen = 255

// Credentials is an immutable set of user/password pairs.
type Credentials struct {
	digests map[string][sha256.Size]byte
	dummy   [sha256.Size]byte // compared against for unknown users, so they cost the same
}

// NewCredentials builds a credential set from user → password.
func NewCredentials(m map[string]string) (*Credentials, error) {
	c := &Credentials{digests: make(map[string][sha256.Size]byte, len(m))}
	c.dummy = sha256.Sum256([]byte("relayd: no such user"))
	for u, p := range m {
		if err := validUser([]byte(u)); err != nil {
			return nil, fmt.Errorf("%w: %q", err, u)
		}
		if err := validPass([]byte(p)); err != nil {
			return nil, fmt.Errorf("%w (user %q)", err, u)
		}
		c.digests[u] = sha256.Sum256([]byte(p))
	}
	return c, nil
}

// LoadCredentials reads a file of "user:password" lines. The password is
// everything after the first ':' (so it may itself contain ':'); blank lines
// and lines starting with '#' are skipped; a trailing CR is ignored.
func LoadCredentials(path string) (*Credentials, error) {
	data, err := os.ReadFile(path)
	if err != nil {
		return nil, fmt.Errorf("auth: load credentials: %w", err)
	}
	m := make(map[string]string)
	sc := bufio.NewScanner(bytes.NewReader(data))
	for line := 1; sc.Scan(); line++ {
		l := bytes.TrimSuffix(sc.Bytes(), []byte("\r"))
		if len(l) == 0 || l[0] == '#' {
			continue
		}
		u, p, ok := bytes.Cut(l, []byte(":"))
		if !ok {
			return nil, fmt.Errorf("%w: %s line %d", ErrSyntax, path, line)
		}
		if _, dup := m[string(u)]; dup {
			return nil, fmt.Errorf("%w: %s line %d: %q", ErrDuplicateUser, path, line, u)
		}
		m[string(u)] = string(p)
	}
	if err := sc.Err(); err != nil {
		return nil, fmt.Errorf("auth: load credentials %s: %w", path, err)
	}
	c, err := NewCredentials(m)
	if err != nil {
		return nil, fmt.Errorf("%s: %w", path, err)
	}
	return c, nil
}

// Len returns the number of users.
func (c *Credentials) Len() int { return len(c.digests) }

// Verify reports whether pass is user's password. It has the Verifier
// signature and does not allocate.
func (c *Credentials) Verify(user, pass []byte) bool {
	got := sha256.Sum256(pass)
	want, known := c.digests[string(user)] // no allocation: the compiler special-cases m[string(b)]
	if !known {
		want = c.dummy
	}
	eq := subtle.ConstantTimeCompare(got[:], want[:]) == 1
	return eq && known
}

func validUser(u []byte) error {
	if len(u) == 0 || len(u) > MaxLen || bytes.IndexByte(u, ':') >= 0 || hasCtl(u) {
		return ErrBadUser
	}
	return nil
}

func validPass(p []byte) error {
	if len(p) == 0 || len(p) > MaxLen || hasCtl(p) {
		return ErrBadPassword
	}
	return nil
}

func hasCtl(b []byte) bool {
	for _, c := range b {
		if c < 0x20 || c == 0x7f {
			return true
		}
	}
	return false
}
