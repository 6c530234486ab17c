package policy

import (
	"strings"
	"testing"
)

func TestValidHostname(t *testing.T) {
	label63 := strings.Repeat("a", 63)
	name253 := strings.Repeat(label63+".", 3) + strings.Repeat("b", 61) // 4*... = 253 bytes
	if len(name253) != 253 {
		t.Fatalf("fixture length %d", len(name253))
	}
	for _, tc := range []struct {
		name string
		ok   bool
	}{
		{"example.com", true},
		{"example.com.", true},
		{"localhost", true},
		{"_sip._tcp.example.com", true},
		{"xn--bcher-kva.example", true},
		{"a-b.c0", true},
		{"3com.com", true},
		{label63 + ".com", true},
		{name253, true},
		{name253 + ".", true},
		{name253 + "c", false},
		{strings.Repeat("a", 64) + ".com", false},
		{strings.Repeat("a.", 5000), false}, // 10,000 bytes
		{"", false},
		{".", false},
		{"..", false},
		{"a..b", false},
		{".a", false},
		{"-a.com", false},
		{"a-.com", false},
		{"exa mple.com", false},
		{"example.com\r\nX-Injected: 1", false},
		{"example.com\n", false},
		{"exa\x00mple.com", false},
		{"example.com:80", false},
		{"[::1]", false},
		{"fe80::1%eth0", false},
		{"a/b", false},
		{"ex\xc3\xa4mple.com", false},
		{"127.0.0.1", false},
		{"127.1", false},
		{"2130706433", false},
		{"0x7f000001", false},
		{"0x7f.0x0.0x0.0x1", false},
		{"1.2.3.com", true},
		{"0xzz", true},
	} {
		if got := ValidHostname([]byte(tc.name)); got != tc.ok {
			t.Errorf("ValidHostname(%q) = %v, want %v", tc.name, got, tc.ok)
		}
	}
}
